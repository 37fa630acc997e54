"""Training jobs: checked before they are queued, run by a worker as the method's script in a subprocess
under the job's lease (annotate.job_lifecycle), and their model registered as an endpoint."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone

from annotate.job_lifecycle import JobContext, JobFailed, JobStopped, job_queue, job_run
from annotate.models import Membership
from annotate.selectors import project_get_for_user
from judges.models import Judge
from prefdata.writers import EXPORT_FORMATS
from synth.models import ModelEndpoint
from synth.services import endpoint_model_dir
from training.loop import held_out_prompts, win_rate_judge_check, win_rate_measure
from training.ml import registry
from training.ml.registry import Method, method_get
from training.models import DatasetSnapshot, TrainingJob, file_sha256
from training.services import snapshot_path

log = logging.getLogger(__name__)


# What a finished model of a method is used as (``synth.ModelEndpoint.Kind``): a reward model scores whole
# responses (best-of-N, pair building), a process reward model each step; every other method trains a policy.
ENDPOINT_KINDS: dict[str, str] = {"reward": ModelEndpoint.Kind.SCORER, "prm": ModelEndpoint.Kind.STEP_SCORER}
# The most processes one job may ask accelerate for (a node's GPUs, several nodes' at most).
MAX_PROCESSES = 64
ACCELERATE_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
# The most held-out prompts a win rate is measured on (each: two generations and two judgments).
MAX_WIN_RATE_PROMPTS = 1000


def training_job_check(*, method: str, snapshot: DatasetSnapshot, hyperparameters: object,
                       accelerate_config: str = "", num_processes: int = 1, win_rate_judge: Judge | None = None,
                       win_rate_prompts: int = 50) -> dict:
    """The job's hyper-parameters if the method exists, trains on the kind of rows the snapshot holds and
    knows every hyper-parameter given (with a value of its type), the launch is one a worker can run and the
    win-rate judge (if any) can judge the policy it trains; else ValidationError naming the field."""
    try:
        spec = method_get(method)
    except ValueError as exc:
        raise ValidationError({"method": str(exc)}) from None
    holds = EXPORT_FORMATS[snapshot.format].record if snapshot.format in EXPORT_FORMATS else None
    if holds != spec.consumes:
        raise ValidationError({"snapshot": f"{spec.label} trains on {spec.consumes} rows; snapshot {snapshot.name!r} "
                                           f"holds {snapshot.get_format_display().lower()} rows"})
    _launch_check(accelerate_config=accelerate_config, num_processes=num_processes)
    win_rate_judge_check(judge=win_rate_judge, method_kind=training_endpoint_kind(method=method))
    if isinstance(win_rate_prompts, bool) or not isinstance(win_rate_prompts, int) or not 1 <= win_rate_prompts \
            <= MAX_WIN_RATE_PROMPTS:
        raise ValidationError({"win_rate_prompts": f"expected a whole number from 1 to {MAX_WIN_RATE_PROMPTS}, "
                                                   f"got {win_rate_prompts!r}"})
    if isinstance(hyperparameters, dict) and "eval_dataset" in hyperparameters:
        raise ValidationError({"hyperparameters": "eval_dataset: set by the platform (the snapshot's test split)"})
    try:
        checked = spec.hyperparameters_check(hyperparameters or {})
    except ValueError as exc:
        raise ValidationError({"hyperparameters": str(exc)}) from None
    if checked.get("reward_model"):
        reward_model_endpoint(name=checked["reward_model"])
    return checked


def reward_model_endpoint(*, name: str) -> ModelEndpoint:
    """The scorer endpoint an online job's ``reward_model`` names (a name, never a path: a job reads no file
    of the worker's it was not given); ValidationError naming the field otherwise."""
    endpoint = ModelEndpoint.objects.filter(name=name).first()
    if endpoint is None or endpoint.kind != ModelEndpoint.Kind.SCORER:
        scorers = ", ".join(ModelEndpoint.objects.filter(kind=ModelEndpoint.Kind.SCORER)
                            .values_list("name", flat=True)[:10]) or "none yet: train a reward model"
        raise ValidationError({"hyperparameters": f"reward_model: {name!r} is not a scorer endpoint "
                                                  f"(scorers: {scorers})"})
    return endpoint


def _launch_check(*, accelerate_config: str, num_processes: int) -> None:
    """The file is looked for on the worker that runs the job (a GPU machine), not here: only its name is
    checked now. Several processes are started by accelerate, so they need its config."""
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or not 1 <= num_processes <= MAX_PROCESSES:
        raise ValidationError({"num_processes": f"expected a whole number from 1 to {MAX_PROCESSES}, "
                                               f"got {num_processes!r}"})
    if not isinstance(accelerate_config, str):
        raise ValidationError({"accelerate_config": "expected the path of a file on the worker, or blank"})
    if accelerate_config and (not accelerate_config.strip() or any(c in accelerate_config for c in "\0\n\r")
                              or not accelerate_config.lower().endswith(ACCELERATE_CONFIG_SUFFIXES)):
        raise ValidationError({"accelerate_config": "expected the path of an accelerate config (.yaml) or a "
                                                    "DeepSpeed config (.json) on the training worker"})
    if num_processes > 1 and not accelerate_config:
        raise ValidationError({"num_processes": "more than one process runs through accelerate: give the path "
                                               "of an accelerate config too"})


def training_job_create(*, base_endpoint: ModelEndpoint, snapshot: DatasetSnapshot, method: str = "dpo",
                        hyperparameters: dict | None = None, accelerate_config: str = "", num_processes: int = 1,
                        win_rate_judge: Judge | None = None, win_rate_prompts: int = 50,
                        start: bool = True) -> TrainingJob:
    """A training job of ``method`` on ``snapshot``, queued unless ``start`` is False. Only the given
    hyper-parameters are stored; the method's config supplies the rest. With ``win_rate_judge`` a trained
    policy is compared with its base model on up to ``win_rate_prompts`` held-out prompts (training.loop)."""
    hyperparameters = training_job_check(method=method, snapshot=snapshot, hyperparameters=hyperparameters,
                                         accelerate_config=accelerate_config, num_processes=num_processes,
                                         win_rate_judge=win_rate_judge, win_rate_prompts=win_rate_prompts)
    job = TrainingJob.objects.create(method=method, base_endpoint=base_endpoint, snapshot=snapshot,
                                     hyperparameters=hyperparameters, accelerate_config=accelerate_config,
                                     num_processes=num_processes, win_rate_judge=win_rate_judge,
                                     win_rate_prompts=win_rate_prompts)
    if start:
        training_job_start(job=job)
    return job


def training_job_start(*, job: TrainingJob) -> None:
    """Queue the job on the training queue once the current transaction commits."""
    job_queue(job)


def _job_dir(job: TrainingJob) -> Path:
    return settings.MODELS_ROOT / "training" / f"job-{job.pk}"


def training_job_run(*, job_id: int) -> TrainingJob | None:
    """Run the training script as a subprocess under the job's lease, record its log, progress and
    metrics, and register the trained model as an endpoint.

    The script checkpoints as it goes: a job resumed after its worker stopped (or retried) continues from
    its last checkpoint, unless its configuration changed since. The subprocess runs in its own process
    group and dies with its worker; cancelling the job stops it.
    """
    return job_run(model=TrainingJob, job_id=job_id, work=_training_work,
                   related=("base_endpoint", "snapshot", "win_rate_judge__endpoint"))


def _training_work(job: TrainingJob, ctx: JobContext) -> None:
    spec = method_get(job.method)
    job_dir = _job_dir(job)
    out = job_dir / "model"
    dataset, eval_dataset = training_job_datasets(snapshot=job.snapshot)
    config = {**job.hyperparameters, "dataset": str(dataset),
              "model": str(endpoint_model_dir(endpoint=job.base_endpoint)), "output_dir": str(out)}
    if "eval_dataset" in _config_fields(spec):  # the platform's to set, never the job's
        config["eval_dataset"] = str(eval_dataset) if eval_dataset is not None else ""
    if config.get("reward_model"):  # a scorer endpoint's name: the script reads its model directory
        config["reward_model"] = str(endpoint_model_dir(endpoint=reward_model_endpoint(name=config["reward_model"])))
    config_path = job_dir / "config.json"
    text = json.dumps(config, indent=2)
    if config_path.exists() and config_path.read_text() != text:
        # Checkpoints of another configuration must not be resumed.
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    config_path.write_text(text)
    (out / "evaluation.json").unlink(missing_ok=True)  # an earlier attempt's must not pass for this one's
    if job.accelerate_config and not Path(job.accelerate_config).is_file():
        raise JobFailed(f"The accelerate config {job.accelerate_config} is not a file on this worker "
                        f"({job.worker or 'unknown'}): put it there, or clear it and retry.")
    note = f"--- attempt {job.attempt} on {job.worker} ---\n"
    job.log = (job.log + note) if job.log else note
    ctx.progress(0, int(spec.effective(job.hyperparameters).get("max_steps") or 0))
    _subprocess_run(job, ctx, training_command(job=job, config_path=config_path), name=spec.script,
                    metrics_file=out / "metrics.jsonl", parent_watch=not _launched_by_accelerate(job))
    ctx.check()  # cancelled as the trainer finished: no model is registered
    job.metrics = _metrics_read(out / "metrics.jsonl")
    job.evaluation = _evaluation_read(out / "evaluation.json")
    endpoint, _ = ModelEndpoint.objects.update_or_create(
        name=f"{job.base_endpoint.name}-{job.method}-job{job.pk}",
        defaults={"kind": training_endpoint_kind(method=job.method), "path": str(out), "created_by_job_id": job.pk},
    )
    job.artifact_path, job.result_endpoint = str(out), endpoint
    TrainingJob.objects.filter(pk=job.pk).update(metrics=job.metrics, evaluation=job.evaluation,
                                                 artifact_path=job.artifact_path, result_endpoint=endpoint,
                                                 log=job.log)
    if job.win_rate_judge_id is not None and endpoint.kind == ModelEndpoint.Kind.TRANSFORMERS:
        _win_rate_work(job, ctx, eval_dataset=eval_dataset, dataset=snapshot_path(snapshot=job.snapshot))


def _win_rate_work(job: TrainingJob, ctx: JobContext, *, eval_dataset: Path | None, dataset: Path) -> None:
    """The trained policy against its base model (training.loop.win_rate_measure), stored in the job's
    evaluation as ``win_rate``. The model is trained and registered by now: a failure here (the judge's server
    down) is recorded there and in the log, and the job still succeeds; a cancel still stops it."""
    assert job.win_rate_judge is not None and job.result_endpoint is not None
    test_split = eval_dataset is not None
    prompts = held_out_prompts(dataset=eval_dataset if test_split else dataset, test_split=test_split,
                               limit=job.win_rate_prompts)
    try:
        result = win_rate_measure(judge=job.win_rate_judge, base=job.base_endpoint, trained=job.result_endpoint,
                                  prompts=prompts, check=ctx.check)
        result["prompts_from"] = "the test split" if test_split else "the last 10% of the snapshot's rows"
    except (JobStopped, JobFailed):
        raise
    except Exception as exc:  # noqa: BLE001 (the model stands; only its comparison failed)
        log.exception("win rate of training job %s", job.pk)
        result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    ctx.check()
    job.evaluation = {**job.evaluation, "win_rate": result}
    job.log += (f"--- win rate against {job.base_endpoint.name} judged by {job.win_rate_judge.name}: "
                f"{json.dumps(result)} ---\n")
    TrainingJob.objects.filter(pk=job.pk).update(evaluation=job.evaluation, log=job.log)


def training_endpoint_kind(*, method: str) -> str:
    """The kind of endpoint a finished job of ``method`` is registered as."""
    return ENDPOINT_KINDS.get(method, ModelEndpoint.Kind.TRANSFORMERS)


def _config_fields(spec: Method) -> set[str]:
    return {f.name for f in dataclasses.fields(spec.config)}


def training_job_datasets(*, snapshot: DatasetSnapshot) -> tuple[Path, Path | None]:
    """The file to train on and the one to evaluate on (None: no evaluation). A snapshot split into train
    and test (``manifest["splits"]``, TRL's JSON Lines) trains on its train split only, so that the test
    rows stay unseen; a split's file must still have the sha256 it was written with. Otherwise the whole
    file, and no test."""
    manifest = snapshot.manifest if isinstance(snapshot.manifest, dict) else {}
    splits, layout = manifest.get("splits"), manifest.get("layout") or {}
    if (not isinstance(splits, dict) or not isinstance(splits.get("train"), dict)
            or (layout.get("target", "trl"), layout.get("file_format", "jsonl")) != ("trl", "jsonl")):
        # Unsplit, or split for another trainer (OpenRLHF's or verl's rows, Parquet): the scripts read TRL's
        # JSON Lines, the snapshot's own file.
        return snapshot_path(snapshot=snapshot), None
    paths = []
    for name in ("train", "test"):
        split = splits.get(name)
        if not isinstance(split, dict) or not split.get("file") or not split.get("rows", 1):
            paths.append(None)
            continue
        path = Path(settings.MEDIA_ROOT) / split["file"]
        try:
            sha256 = file_sha256(path)
        except OSError:
            raise JobFailed(f"The {name} split of snapshot {snapshot.name!r} ({split['file']}) cannot be "
                            f"read.") from None
        if split.get("sha256") and sha256 != split["sha256"]:
            raise JobFailed(f"The {name} split of snapshot {snapshot.name!r} was altered after it was made (sha256 "
                            f"{sha256[:12]}, not {split['sha256'][:12]}): make a new snapshot.")
        paths.append(path)
    return paths[0] or snapshot_path(snapshot=snapshot), paths[1]


# -- the command --------------------------------------------------------------------------------------------

# The parent of a launcher (``accelerate launch``), which starts the trainer as its own child: the trainer
# cannot watch the worker (its parent is the launcher), so this does, as ``training.ml.common.parent_watch``
# does for a trainer run directly. ``python -c <this> <worker pid> <command...>`` runs the command and
# kills the whole process group (launcher, trainers and their workers) when the worker dies (at once on
# Linux through PR_SET_PDEATHSIG, else within a second) or when it gets SIGTERM (a cancelled job).
WATCH_WORKER = """\
import os, signal, subprocess, sys, threading, time

worker = int(sys.argv[1])


def kill_group(*_):
    os.killpg(os.getpgrp(), signal.SIGKILL)


signal.signal(signal.SIGTERM, kill_group)
if sys.platform.startswith("linux"):
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
if os.getppid() != worker:
    kill_group()


def watch():
    while True:
        time.sleep(1.0)
        if os.getppid() != worker:
            kill_group()


threading.Thread(target=watch, daemon=True).start()
sys.exit(subprocess.call(sys.argv[2:]))
"""


def _launched_by_accelerate(job: TrainingJob) -> bool:
    return bool(job.accelerate_config)


def training_command(*, job: TrainingJob, config_path: Path) -> list[str]:
    """The command that runs the job's training script: ``python -m <script> --config <file>``, or, with an
    accelerate config, the same under ``accelerate launch`` on ``num_processes`` processes, under a watcher
    of this worker (``WATCH_WORKER``). Built by the method registry's ``launch_command`` where it has one."""
    build = getattr(registry, "launch_command", None) or _launch_command
    command = list(build(job.method, str(config_path), accelerate_config=job.accelerate_config,
                         num_processes=job.num_processes))
    if _launched_by_accelerate(job):
        command = [sys.executable, "-c", WATCH_WORKER, str(os.getpid()), *command]
    return command


def _launch_command(method: str, config_path: str, *, accelerate_config: str = "", num_processes: int = 1) -> list[str]:
    """The command of a method's script, for a registry without ``launch_command`` (the same command)."""
    command = [sys.executable, "-m", method_get(method).script, "--config", str(config_path)]
    if not accelerate_config:
        return command
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
            "--num_processes", str(num_processes), *command[1:]]


# -- the subprocess -----------------------------------------------------------------------------------------

# How often the log and the metrics of a running trainer are written to its row (seconds).
FLUSH_SECONDS = 1.0
METRICS_PER_FLUSH = 1000
LOG_LINES_KEPT = 2000


def _process_group_kill(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop the trainer and anything it started: SIGTERM to its process group, SIGKILL after ``grace``."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _lines_read(stream, lines: queue.Queue) -> None:
    try:
        for line in stream:
            lines.put(line)
    finally:
        lines.put(None)


def _event(line: str) -> dict | None:
    """The trainer's machine-readable line (``training.ml.common.say`` and the metrics callback), if it is one."""
    if not line.startswith('{"event"'):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("step"), int) else None


def _subprocess_run(job: TrainingJob, ctx: JobContext, command: list[str], *, name: str = "the trainer",
                    metrics_file: Path | None = None, parent_watch: bool = True) -> None:
    """Run the trainer in its own process group. Its output goes to the job's log, its logged steps to the
    job's progress and metrics (so that the job's page draws its curves while it runs); log and metrics are
    written at most once a second (``FLUSH_SECONDS``), and whatever is pending at least that often. The
    trainer exits when this process dies (it watches its parent, ``training.ml.common.parent_watch``; a
    launcher is watched by ``WATCH_WORKER``); a cancelled job kills its process group.

    A resumed trainer says from which step (``{"event": "resume", "step": n}``): the metrics it logged up to
    there are read back from ``metrics_file`` (which it trimmed to that step), and the new ones follow."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if parent_watch:
        env["TRAINER_PARENT_PID"] = str(os.getpid())
    else:
        env.pop("TRAINER_PARENT_PID", None)  # its parent is the launcher: watching the worker would kill it
    process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    ctx.on_stop(lambda: _process_group_kill(process))
    head = job.log
    lines: deque[str] = deque(maxlen=LOG_LINES_KEPT)
    metrics: list[dict] = []
    pending: queue.Queue[str | None] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=_lines_read, args=(process.stdout, pending), name=f"trainer-output-{job.pk}",
                     daemon=True).start()
    log_new = metrics_new = False
    last = metrics_last = 0.0

    def flush(*, final: bool = False) -> None:
        nonlocal log_new, metrics_new, last, metrics_last
        fields: dict = {}
        now = time.monotonic()
        if log_new:
            job.log = fields["log"] = head + "".join(lines)
        # The whole series is rewritten each time: a long one less often (every 10 s at 10,000 entries).
        if metrics_new and (final or now - metrics_last >= FLUSH_SECONDS * max(1, len(metrics) // METRICS_PER_FLUSH)):
            job.metrics = fields["metrics"] = list(metrics)
            fields["progress"] = ctx.done  # the step they reached, which the heartbeat would write only later
            metrics_new, metrics_last = False, now
        if fields:
            TrainingJob.objects.filter(pk=job.pk).update(**fields)
        log_new, last = False, now

    try:
        while True:
            try:
                line = pending.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                line = ""  # nothing new: what waits is written below
            if line is None:
                break
            if line:
                lines.append(line)
                log_new = True
                event = _event(line)
                if event is not None and event.get("event") in ("log", "resume"):
                    ctx.progress(event["step"])
                    if event["event"] == "resume":
                        metrics = _metrics_read(metrics_file, until=event["step"]) if metrics_file else []
                    else:
                        metrics.append({k: v for k, v in event.items() if k != "event"})
                    metrics_new = True
            if (log_new or metrics_new) and time.monotonic() - last >= FLUSH_SECONDS:
                flush()
        code = process.wait()
    finally:
        _process_group_kill(process)  # an exception here (a time limit) must not leave the trainer behind
    log_new = True
    flush(final=True)
    if ctx.stop_reason is not None:
        raise JobStopped(ctx.stop_reason)
    if code != 0:
        tail = "".join(list(lines)[-15:])
        raise JobFailed(f"{name} exited with status {code}:\n{tail}")


def _metrics_read(path: Path, *, until: int | None = None) -> list[dict]:
    """The entries of a metrics.jsonl file (up to step ``until``), skipping a line cut short by a kill."""
    entries = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and (until is None or entry.get("step", 0) <= until):
            entries.append(entry)
    return entries


def _evaluation_read(path: Path) -> dict:
    """The script's evaluation.json (written when the config had an ``eval_dataset``); {} when there is none."""
    try:
        evaluation = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        log.warning("%s is not JSON: no evaluation stored", path)
        return {}
    return evaluation if isinstance(evaluation, dict) else {"result": evaluation}


# -- what the job page and the API show ---------------------------------------------------------------------


@dataclass(frozen=True)
class JobTiming:
    """How long a job has run and, while it runs, how long it has left at the pace of its steps so far."""

    elapsed_s: float | None
    steps_per_s: float | None
    eta_s: float | None


def training_job_timing(*, job: TrainingJob, now: datetime | None = None) -> JobTiming:
    """Elapsed time since its (first) start, to its end once it ended; steps per second over that time; the
    ETA of the steps left at that pace (running jobs with at least one step done only)."""
    if job.started_at is None:
        return JobTiming(None, None, None)
    end = job.finished_at if job.finished_at and not job.is_active else (now or timezone.now())
    elapsed = max((end - job.started_at).total_seconds(), 0.0)
    rate = job.progress / elapsed if elapsed > 0 and job.progress else None
    eta = None
    if job.status == TrainingJob.Status.RUNNING and rate and job.total >= job.progress:
        eta = (job.total - job.progress) / rate
    return JobTiming(elapsed, rate, eta)


def training_job_log_tail(*, job: TrainingJob, lines: int = 60) -> str:
    """The last ``lines`` lines of the job's log."""
    return "\n".join(job.log.rstrip("\n").splitlines()[-lines:])


def training_job_hyperparameters(*, job: TrainingJob) -> list[tuple[str, object, bool, str]]:
    """The hyper-parameters the script runs with: (name, value, set by the job, help), in the config's order."""
    try:
        spec = method_get(job.method)
    except ValueError:
        return [(name, value, True, "") for name, value in job.hyperparameters.items()]
    effective = spec.effective(job.hyperparameters)
    return [(name, effective.get(name), name in job.hyperparameters, f.metadata.get("help", ""))
            for name, f in spec.fields().items() if name in effective and name != "eval_dataset"]


def training_job_get_for_user(*, user: AbstractBaseUser | AnonymousUser, project_id: int, job_id: int) -> TrainingJob:
    """A training job of a project the user is a researcher of, with what its page shows; a stranger to the
    project gets 404, a member who is not a researcher 403 (``project_get_for_user``), a job of another
    project 404."""
    project = project_get_for_user(user=user, project_id=project_id, role=Membership.Role.RESEARCHER)
    job = (TrainingJob.objects.select_related("base_endpoint", "snapshot__project", "result_endpoint",
                                              "win_rate_judge")
           .filter(pk=job_id, snapshot__project=project).first())
    if job is None:
        raise Http404("No such training job.")
    return job
