"""The page of one training job: its setup, progress and ETA, live curves of its metrics (inline SVG drawn
here, no chart library), its log tail, evaluation and the endpoint it registered; cancel and retry."""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotate.job_lifecycle import job_cancel, job_queue_position, job_retry
from annotate.roles import job_start_permission
from training.jobs import (
    training_job_get_for_user,
    training_job_hyperparameters,
    training_job_log_tail,
    training_job_timing,
)
from training.models import TrainingJob

# -- charts -------------------------------------------------------------------------------------------------

# The curves drawn, in this order, each from the first of its keys the metrics hold (TRL's names and those
# of the platform's scripts): one chart per group, a line per key.
CHART_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("loss", "Loss", ("loss", "eval_loss")),
    ("accuracy", "Reward accuracy", ("rewards/accuracies", "accuracy", "eval_rewards/accuracies", "eval_accuracy")),
    ("margin", "Reward margin", ("rewards/margins", "margin", "eval_rewards/margins", "eval_margin")),
    ("rewards", "Rewards: chosen and rejected", ("rewards/chosen", "rewards/rejected")),
    ("logps", "Log-probabilities: chosen and rejected", ("logps/chosen", "logps/rejected")),
    ("logits", "Mean logits: chosen and rejected", ("logits/chosen", "logits/rejected")),
    ("kl", "KL divergence", ("kl", "objective/kl")),
    ("learning_rate", "Learning rate", ("learning_rate",)),
    ("tokens", "Tokens per second", ("tokens_per_s", "tokens_per_second", "train_tokens_per_second")),
    ("grad_norm", "Gradient norm", ("grad_norm",)),
)
# Keys that are no curve: the x axis, counts that only grow, and the run's summary logged once at its end.
NOT_CHARTED = {"step", "epoch", "train_runtime", "train_samples_per_second", "train_steps_per_second",
               "total_flos", "train_loss", "num_input_tokens_seen", "num_tokens"}
COLORS = ("#3056d3", "#c02d2d", "#18794e", "#b54708", "#7a5af8", "#0e7090")
# The drawing's box (SVG user units; it scales with the page's width) and its plot area inside.
WIDTH, HEIGHT = 360, 170
LEFT, RIGHT, TOP, BOTTOM = 52, WIDTH - 10, 10, HEIGHT - 22
MAX_POINTS = 500  # a longer series is thinned to about this many points (its last one kept)
LOG_LINES_SHOWN = 18  # as many as the log's box shows without scrolling (no script scrolls it to its end)


@dataclass(frozen=True)
class Series:
    key: str
    color: str
    path: str  # the SVG path: "M x,y L x,y ..."
    points: int
    last_x: float
    last_y: float
    last: float

    @property
    def last_text(self) -> str:
        return number_text(self.last)


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    series: list[Series]
    y_ticks: list[tuple[float, str]]  # (y, label)
    x_ticks: list[tuple[float, str, str]]  # (x, label, text-anchor)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = RIGHT
    top: int = TOP
    bottom: int = BOTTOM


def number_text(value: float) -> str:
    """A value as short as it stays readable: 0.693, 5e-06, 1.2e+04, 12."""
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:.3g}"


def _points(metrics: list[dict], key: str) -> list[tuple[int, float]]:
    points = [(m["step"], float(m[key])) for m in metrics if isinstance(m.get("step"), int)
              and isinstance(m.get(key), int | float) and not isinstance(m[key], bool)]
    return [(step, value) for step, value in points if math.isfinite(value)]


def _thin(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    if len(points) <= MAX_POINTS:
        return points
    every = math.ceil(len(points) / MAX_POINTS)
    return points[::every] + ([points[-1]] if (len(points) - 1) % every else [])


def _chart(key: str, title: str, lines: dict[str, list[tuple[int, float]]]) -> Chart:
    steps = [step for points in lines.values() for step, _ in points]
    values = [value for points in lines.values() for _, value in points]
    s0, s1 = min(steps), max(steps)
    lo, hi = min(values), max(values)
    if hi == lo:  # a flat line in the middle
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad

    def x(step: int) -> float:
        return round(LEFT + (RIGHT - LEFT) * ((step - s0) / (s1 - s0) if s1 > s0 else 0.5), 1)

    def y(value: float) -> float:
        return round(BOTTOM - (BOTTOM - TOP) * (value - lo) / (hi - lo), 1)

    series = []
    for (name, points), color in zip(lines.items(), COLORS * 3, strict=False):
        drawn = _thin(points)
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(step)},{y(value)}" for i, (step, value) in enumerate(drawn))
        step, value = points[-1]
        series.append(Series(key=name, color=color, path=path, points=len(drawn), last_x=x(step), last_y=y(value),
                             last=value))
    y_ticks = [(y(v), number_text(v)) for v in (hi, (lo + hi) / 2, lo)]
    x_ticks = ([(x(s0), f"step {s0}", "start"), (x(s1), f"{s1}", "end")] if s1 > s0
               else [(x(s0), f"step {s0}", "middle")])
    return Chart(key=key, title=title, series=series, y_ticks=y_ticks, x_ticks=x_ticks)


def training_job_charts(*, metrics: list[dict]) -> list[Chart]:
    """A chart per group of ``CHART_GROUPS`` the metrics hold, then one per other numeric key logged at two
    steps or more (a method's own metrics), each line a key's values by step."""
    charts, drawn = [], set(NOT_CHARTED)
    for key, title, keys in CHART_GROUPS:
        lines = {name: points for name in keys if (points := _points(metrics, name))}
        drawn.update(keys)
        if lines:
            charts.append(_chart(key, title, lines))
    others = sorted({name for m in metrics for name in m} - drawn)
    for name in others:
        points = _points(metrics, name)
        if len(points) >= 2:
            charts.append(_chart(name.replace("/", "-"), name, {name: points}))
    return charts


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _evaluation_rows(evaluation: dict) -> list[tuple[str, str]]:
    rows = []
    for name, value in evaluation.items():
        if name == "win_rate":  # shown on its own (win_rate_text)
            continue
        if isinstance(value, float):
            rows.append((name, number_text(value)))
        elif isinstance(value, dict | list):
            rows.append((name, ", ".join(f"{k}: {number_text(v) if isinstance(v, float) else v}"
                                         for k, v in (value.items() if isinstance(value, dict)
                                                      else enumerate(value)))))
        else:
            rows.append((name, str(value)))
    return rows


def win_rate_text(evaluation: dict) -> dict | None:
    """The win rate against the base model as the page shows it, or None when the job measured none."""
    result = evaluation.get("win_rate") if isinstance(evaluation, dict) else None
    if not isinstance(result, dict):
        return None
    if "error" in result:
        return {"error": str(result["error"])}
    rate = result.get("rate")
    return {"rate": f"{rate:.0%}" if isinstance(rate, int | float) else "—",
            **{k: result.get(k, 0) for k in ("wins", "losses", "ties", "n")},
            "judge": result.get("judge", ""), "prompts_from": result.get("prompts_from", "")}


# -- views --------------------------------------------------------------------------------------------------


@login_required
def job_page(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """Researchers of the project: one training job. While it is queued or running, the live part polls
    itself every 2 s (htmx) and stops once the job has ended."""
    job = training_job_get_for_user(user=request.user, project_id=project_id, job_id=job_id)
    if job.status == TrainingJob.Status.QUEUED:
        job.queue = job_queue_position(job, project_id=project_id)
    timing = training_job_timing(job=job)
    context = {
        "project": job.snapshot.project, "job": job, "charts": training_job_charts(metrics=job.metrics),
        "hyperparameters": [(name, number_text(value) if isinstance(value, float) else value, own, help_)
                            for name, value, own, help_ in training_job_hyperparameters(job=job)],
        "log_tail": training_job_log_tail(job=job, lines=LOG_LINES_SHOWN),
        "elapsed": _duration_text(timing.elapsed_s), "eta": _duration_text(timing.eta_s),
        "steps_per_s": number_text(timing.steps_per_s) if timing.steps_per_s else "—",
        "evaluation": _evaluation_rows(job.evaluation), "win_rate": win_rate_text(job.evaluation),
        "final_loss": job.final_loss,
        "can_start": request.user.has_perm(job_start_permission(TrainingJob)),
    }
    return render(request, "training/job.html#live" if request.htmx else "training/job.html", context)


@login_required
@require_POST
def job_action(request: HttpRequest, project_id: int, job_id: int, action: str) -> HttpResponse:
    """Cancel or retry the job (researchers of the project; retrying needs the permission to start
    training); back to its page."""
    job = training_job_get_for_user(user=request.user, project_id=project_id, job_id=job_id)
    if action == "cancel":
        if job.can_cancel:
            job = job_cancel(job=job)
            messages.info(request, f"Cancelled training job #{job.pk}; its log and metrics so far are kept.")
        else:
            messages.error(request, f"Training job #{job.pk} is {job.get_status_display().lower()}: there is "
                                    f"nothing to cancel.")
    elif job.can_retry:
        job = job_retry(job=job, user=request.user)
        messages.success(request, f"Queued training job #{job.pk} again: it resumes from its last checkpoint "
                                  f"when its configuration is unchanged.")
    else:
        messages.error(request, f"Training job #{job.pk} is {job.get_status_display().lower()}: only a failed or "
                                f"cancelled job can be retried.")
    return redirect("training:job", project_id=project_id, job_id=job.pk)
