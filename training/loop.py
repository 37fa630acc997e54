"""Trained models back in the loop: a process reward model labels the steps of a steps project next to people's
labels, and a trained policy meets its base model on held-out prompts before a judge of the platform."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace

from django.core.exceptions import ValidationError
from django.db import transaction

from annotate.models import Project, StepItem, StepLabel
from annotate.services import step_labels_store
from judges.models import Judge
from judges.services import items_evaluate, judge_source_name
from synth.backends.base import Sampling
from synth.models import ModelEndpoint
from synth.services import endpoint_backend, endpoint_model_dir

# -- step labels from a step scorer -------------------------------------------------------------------------

STEP_SCORE_BATCH = 32  # solutions scored, then stored, at a time


def step_scorer_source_name(*, endpoint: ModelEndpoint) -> str:
    """The ``source_name`` of the labels an endpoint writes: the model is recorded with them."""
    return f"step-scorer:{endpoint.name}"[:200]


def step_rating(score: float, *, threshold: float = 0.5) -> int:
    """A step's rating on the +1 / 0 / -1 scale from the scorer's P(step is right).

    +1 when ``score >= threshold``, -1 when ``score < 1 - threshold``, else 0: a scorer that is unsure says
    "reasonable" (PRM800K's neutral), neither right nor wrong. At 0.5 (the default) every step is +1 or -1,
    as a PRM's two classes are; at 0.8 a step the scorer gives between 0.2 and 0.8 is neutral."""
    return 1 if score >= threshold else -1 if score < 1 - threshold else 0


def step_labels_threshold_check(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.5 <= threshold <= 1:
        raise ValidationError({"threshold": f"expected a number from 0.5 to 1, got {threshold!r}"})
    return float(threshold)


def step_labels_from_scorer(*, project: Project, endpoint: ModelEndpoint, threshold: float = 0.5,
                            items: Iterable[StepItem] | None = None,
                            progress: Callable[[int], None] | None = None) -> int:
    """Score every step of each solution of a steps project with a step-scorer endpoint (a PRM) and store the
    ratings (``step_rating``) as one AI StepLabel per solution, named after the endpoint, next to people's
    labels (as ``judges.services.step_items_judge`` stores a judge's). Returns how many solutions were
    labelled.

    Idempotent: a solution that already has this endpoint's label for its current steps is skipped, so a run
    after new solutions were added labels those only; a solution re-split since (another number of steps) is
    labelled again. ``items`` limits the run to some of the project's solutions."""
    if project.task_kind != Project.TaskKind.STEPS:
        raise ValidationError({"project": f"Project {project.name!r} has no steps to label (it is a "
                                          f"{project.get_task_kind_display().lower()} project)."})
    if endpoint.kind != ModelEndpoint.Kind.STEP_SCORER:
        raise ValidationError({"endpoint": f"The endpoint {endpoint.name!r} is a {endpoint.get_kind_display()}, "
                                           f"not a step scorer (a process reward model)."})
    threshold = step_labels_threshold_check(threshold)
    source_name = step_scorer_source_name(endpoint=endpoint)
    queryset = StepItem.objects.filter(project=project).select_related("prompt").order_by("id")
    if items is not None:
        queryset = queryset.filter(pk__in=[item.pk for item in items])
    done = {item_id: len(ratings) for item_id, ratings in StepLabel.objects.filter(
        item__project=project, annotator=None, source=StepLabel.Source.AI, source_name=source_name,
    ).values_list("item_id", "ratings")}
    todo = [item for item in queryset if item.steps and done.get(item.pk) != len(item.steps)]
    if not todo:
        return 0
    backend = endpoint_backend(endpoint=endpoint)
    labelled = 0
    for start in range(0, len(todo), STEP_SCORE_BATCH):
        chunk = todo[start:start + STEP_SCORE_BATCH]
        scores = backend.score_steps([item.prompt.messages for item in chunk], [list(item.steps) for item in chunk])
        with transaction.atomic():
            for item, row in zip(chunk, scores, strict=True):
                if len(row) != len(item.steps):  # steps past the model's length: left unrated
                    row = [*row, *[None] * (len(item.steps) - len(row))]
                ratings = [None if s is None else step_rating(s, threshold=threshold) for s in row]
                step_labels_store(item=item, source=StepLabel.Source.AI, source_name=source_name, ratings=ratings)
        labelled += len(chunk)
        if progress is not None:
            progress(labelled)
    return labelled


# -- win rate against the base model ------------------------------------------------------------------------

# How long each model's answer to a held-out prompt may be (tokens); greedy decoding, so the comparison is
# of the models and not of the draw.
WIN_RATE_MAX_NEW_TOKENS = 256
WIN_RATE_BATCH = 8
# Held-out prompts of a snapshot without a test split: its last tenth of rows.
HELD_OUT_SHARE = 0.1


def win_rate_judge_check(*, judge: Judge | None, method_kind: str) -> None:
    """ValidationError unless ``judge`` (if any) can judge a policy's answers against its base model's in both
    orders: the job must train a policy (``method_kind`` is the endpoint kind the method registers) and the
    judge must compare the two orders (its debiasing)."""
    if judge is None:
        return
    if method_kind != ModelEndpoint.Kind.TRANSFORMERS:
        raise ValidationError({"win_rate_judge": "A win rate is measured for a policy (SFT, the DPO family): "
                                                 "this method trains a scorer."})
    if judge.debiasing == Judge.Debiasing.NONE:
        raise ValidationError({"win_rate_judge": f"The judge {judge.name!r} sees each pair in one order only: "
                                                 f"pick a judge with debiasing (both orders)."})
    if judge.endpoint.kind in (ModelEndpoint.Kind.SCORER, ModelEndpoint.Kind.STEP_SCORER):
        raise ValidationError({"win_rate_judge": f"The judge {judge.name!r} runs on a scorer endpoint, which "
                                                 f"cannot judge."})


def row_prompt(row: dict) -> list[dict] | None:
    """The conversation a row of any training kind answers: its ``prompt`` (a conversation, or text as one
    user turn), or its ``messages`` up to the last assistant turn."""
    prompt = row.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt:
        return prompt
    messages = row.get("messages")
    if isinstance(messages, list) and messages:
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))
        return messages[:last] or None
    return None


def held_out_prompts(*, dataset: Path, test_split: bool, limit: int) -> list[list[dict]]:
    """Up to ``limit`` distinct prompts: every row of ``dataset`` when it is the snapshot's test split (never
    trained on), else of its last tenth of rows (at least one)."""
    rows = [json.loads(line) for line in dataset.read_text().splitlines() if line.strip()]
    if not test_split:
        rows = rows[len(rows) - max(1, math.ceil(len(rows) * HELD_OUT_SHARE)):]
    prompts, seen = [], set()
    for row in rows:
        prompt = row_prompt(row) if isinstance(row, dict) else None
        key = json.dumps(prompt, sort_keys=True)
        if prompt is None or key in seen:
            continue
        seen.add(key)
        prompts.append(prompt)
        if len(prompts) >= limit:
            break
    return prompts


def _answers(model_dir: Path | str, endpoint: ModelEndpoint, prompts: Sequence[list[dict]],
             check: Callable[[], None]) -> list[str]:
    """Greedy answers of a local model, loaded for this once (not kept in the worker's backend cache: a
    training worker sees a new model each job)."""
    from synth.backends.local import TransformersBackend

    backend = TransformersBackend(str(model_dir), dtype=endpoint.dtype, device=endpoint.device)
    sampling = Sampling(max_new_tokens=WIN_RATE_MAX_NEW_TOKENS, temperature=0.0, n=1, batch_size=WIN_RATE_BATCH)
    answers: list[str] = []
    for start in range(0, len(prompts), WIN_RATE_BATCH):
        check()
        answers += [str(group[0]) for group in backend.generate(list(prompts[start:start + WIN_RATE_BATCH]),
                                                                sampling)]
    return answers


def win_rate_measure(*, judge: Judge, base: ModelEndpoint, trained: ModelEndpoint, prompts: Sequence[list[dict]],
                     check: Callable[[], None] = lambda: None) -> dict:
    """The trained model against its base on ``prompts``: each answers every prompt (greedy), ``judge``
    compares the two answers in both orders and combines them with its debiasing
    (``judges.services.items_evaluate``, as a judge run does). A win is a verdict for the trained model; the
    rate counts a tie as half a win (AlpacaEval's convention). ``check`` is called between batches (a
    cancelled job stops there)."""
    base_answers = _answers(endpoint_model_dir(endpoint=base), base, prompts, check)
    trained_answers = _answers(trained.path, trained, prompts, check)
    counts = {"A": 0, "B": 0, "tie": 0}
    backend = endpoint_backend(endpoint=judge.endpoint)
    for start in range(0, len(prompts), WIN_RATE_BATCH):
        check()
        # A is the trained model, B the base; the judge sees both orders (the debiasing swaps them).
        pairs = [SimpleNamespace(pk=i, prompt=SimpleNamespace(messages=prompts[i]),
                                 completion_a=SimpleNamespace(text=trained_answers[i]),
                                 completion_b=SimpleNamespace(text=base_answers[i]))
                 for i in range(start, min(start + WIN_RATE_BATCH, len(prompts)))]
        for fields in items_evaluate(judge=judge, items=pairs, backend=backend):
            counts[fields["verdict"] if fields["verdict"] in counts else "tie"] += 1
    n = len(prompts)
    return {"wins": counts["A"], "losses": counts["B"], "ties": counts["tie"], "n": n,
            "rate": round((counts["A"] + 0.5 * counts["tie"]) / n, 4) if n else None,
            "judge": judge_source_name(judge=judge)}
