"""Exports of step-level (PRM) labels: pure reads over a project's step items, no writes.

The snapshot service turns the rows into files; every function returns ``(rows, lineage)``, with one
lineage entry per row naming the item, its prompt and the labels (or adjudication) behind it.

Gold (honeypot) items are left out, as in the preference export. A label whose ``ratings`` do not have
one rating per step of its item (the item was re-split after it was given) is ignored everywhere.

Each export takes an optional ``dropped`` counter and adds to it what it left out and why (the keys of
``training.services.DROP_REASONS``), so a snapshot can say "9 rows (2 ties dropped)"; the rows are the
same with or without it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from annotate.models import Project, StepItem, StepLabel
from prefdata.records import StepwiseRow, UnpairedRow
from prefdata.stats import plurality
from prefdata.steps import NEUTRAL_CHOICES, finish_reason_for, first_error, step_majority, stepwise_labels
from prefdata.writers import prm800k_row


@dataclass(frozen=True, slots=True)
class StepAggregate:
    """The combined ratings of one step item by one label source.

    ``ratings[i]`` is +1 / 0 / -1, or None where the step has no majority or no rating. ``labels`` are the
    ids of the labels combined (in id order); ``adjudicated`` is True when a reviewer's ``final_ratings``
    were used instead.
    """

    ratings: tuple[int | None, ...]
    outcome: str
    finish_reason: str
    labels: tuple[int, ...]
    adjudicated: bool


def _source_check(source: str) -> None:
    if source not in StepLabel.Source.values:
        raise ValueError(f"source {source!r} is not one of {StepLabel.Source.values}")


def _valid(ratings: object, n_steps: int) -> bool:
    return isinstance(ratings, list) and len(ratings) == n_steps


def _combine(project: Project, items: Iterable[StepItem], source: str,
             dropped: Counter | None = None) -> dict[int, StepAggregate]:
    items = list(items)
    by_id = {item.pk: item for item in items}
    labels: dict[int, list[tuple[int, list, str, str]]] = defaultdict(list)
    stale: set[int] = set()
    rows = (StepLabel.objects.filter(item__project=project, item__is_gold=False, source=source).order_by("id")
            .values_list("id", "item_id", "ratings", "outcome", "finish_reason"))
    for label_id, item_id, ratings, outcome, finish_reason in rows.iterator(chunk_size=2000):
        if item_id in by_id and _valid(ratings, len(by_id[item_id].steps)):
            labels[item_id].append((label_id, ratings, outcome, finish_reason))
        elif item_id in by_id:
            stale.add(item_id)

    result: dict[int, StepAggregate] = {}
    for item in items:
        mine = labels.get(item.pk, [])
        adjudicated = source == StepLabel.Source.HUMAN and _valid(item.final_ratings, len(item.steps))
        if not mine and not adjudicated:
            if dropped is not None:
                dropped["stale" if item.pk in stale else "unlabeled"] += 1
            continue
        # 1. Ratings: the reviewer's, else per step the plurality of the ratings given (None does not vote).
        if adjudicated:
            ratings = tuple(r if r in (1, 0, -1) else None for r in item.final_ratings)
        else:
            ratings = tuple(step_majority([r for _, r, _, _ in mine]))
        # 2. Outcome: the reviewer's, else the plurality of the labels that judged it.
        outcome = (item.final_outcome if adjudicated and item.final_outcome else
                   plurality(o for _, _, o, _ in mine if o) or "")
        # 3. Finish reason: found_error when a combined rating is -1; else the plurality of the other reasons.
        if first_error(ratings) is not None:
            finish_reason = StepLabel.FinishReason.FOUND_ERROR
        else:
            finish_reason = (plurality(f for _, _, _, f in mine if f != StepLabel.FinishReason.FOUND_ERROR)
                             or StepLabel.FinishReason.SOLUTION)
        result[item.pk] = StepAggregate(ratings=ratings, outcome=str(outcome), finish_reason=str(finish_reason),
                                        labels=tuple(label[0] for label in mine), adjudicated=adjudicated)
    return result


def _items(project: Project):
    return StepItem.objects.filter(project=project, is_gold=False).select_related("prompt").order_by("id")


def _gold_count(project: Project, source: str | None, dropped: Counter | None, *, per_label: bool = False) -> None:
    """Count in ``dropped["gold"]`` the gold items (or, ``per_label``, their labels) that have labels of
    ``source`` (of any source when None): the exports leave them out."""
    if dropped is None:
        return
    labels = StepLabel.objects.filter(item__project=project, item__is_gold=True)
    if source is not None:
        labels = labels.filter(source=source)
    gold = labels.count() if per_label else labels.values("item_id").distinct().count()
    if gold:
        dropped["gold"] += gold


def _aggregated(project: Project, source: str, dropped: Counter | None = None
                ) -> Iterator[tuple[StepItem, StepAggregate]]:
    """The project's items that have ratings from ``source``, each with them, in id order."""
    _source_check(source)
    _gold_count(project, source, dropped)
    items = list(_items(project))
    aggregates = _combine(project, items, source, dropped)
    for item in items:
        aggregate = aggregates.get(item.pk)
        if aggregate is not None:
            yield item, aggregate


def step_item_ratings(*, project: Project, source: str = StepLabel.Source.HUMAN) -> dict[int, StepAggregate]:
    """One set of step ratings per item from the labels of ``source`` ("human", "ai" or "auto").

    For people, a reviewer's ``final_ratings`` (and ``final_outcome``) win. Otherwise, for every step, the
    rating most of the labels of that source gave it, where an unlabeled step (None) casts no vote; a step
    whose top two ratings are level, or that nobody rated, gets None. For "ai" and "auto" only the labels
    of that source count (adjudications are people's, and belong to the "human" export). The outcome is
    the plurality of the labels that judged it ("" if none or level); the finish reason is found_error when
    a combined rating is -1, else the most common other reason of the labels (solution by default).
    Items with no label of that source (and no adjudication) are absent.
    """
    _source_check(source)
    return _combine(project, StepItem.objects.filter(project=project, is_gold=False).order_by("id")
                    .only("id", "steps", "final_ratings", "final_outcome"), source)


def stepwise_rows(*, project: Project, source: str = StepLabel.Source.HUMAN, neutral: str = "positive",
                  dropped: Counter | None = None) -> tuple[list[dict], list[dict]]:
    """TRL stepwise-supervision rows ``{"prompt", "completions", "labels"}`` and their lineage.

    From the combined ratings (``step_item_ratings``), step by step (``prefdata.steps.stepwise_labels``):
    1. +1 is True and -1 is False; 0 (a reasonable step that makes no progress) is True with
       ``neutral="positive"`` and False with ``"negative"``.
    2. The first -1 step is kept (False) and the steps after it are dropped: what follows a wrong step is
       not evidence about good reasoning (PRM800K stops labeling there; Math-Shepherd's labels after it are
       conditioned on the error).
    3. An unlabeled step (None) ends the row: the labels must be a prefix of the solution.
    4. A row with no labeled step is left out.
    ``prompt`` is the problem text (the last user message); ``completions`` are the steps kept.
    """
    _source_check(source)
    if neutral not in NEUTRAL_CHOICES:
        raise ValueError(f"neutral must be one of {NEUTRAL_CHOICES}, not {neutral!r}")
    rows, lineage = [], []
    for item, aggregate in _aggregated(project, source, dropped):
        labels = stepwise_labels(aggregate.ratings, neutral=neutral)
        if not labels:
            if dropped is not None:
                dropped["no_rated_step"] += 1
            continue
        rows.append(StepwiseRow(prompt=item.prompt.last_user_text, completions=list(item.steps[:len(labels)]),
                                labels=labels).to_dict())
        lineage.append({"item": item.pk, "prompt": item.prompt_id, "by": source, "labels": list(aggregate.labels),
                        "adjudicated": aggregate.adjudicated})
    return rows, lineage


def _prm800k_row(item: StepItem, ratings: list, *, labeler: object, source: str, source_name: str,
                 finish_reason: str, outcome: str, flags: Iterable[int] = (), total_time: int | None = None) -> dict:
    return prm800k_row(problem=item.prompt.last_user_text, steps=item.steps, ratings=ratings, labeler=labeler,
                       source=source, source_name=source_name, finish_reason=finish_reason, outcome=outcome,
                       reference_answer=item.reference_answer, ground_truth_solution=item.ground_truth_solution,
                       flags=flags, total_time=total_time)


def prm800k_rows(*, project: Project, source: str | None = None,
                 dropped: Counter | None = None) -> tuple[list[dict], list[dict]]:
    """PRM800K-like rows, one per label (of ``source``, or of every source), keeping every rating.

    Each step is one completion ``{text, rating (+1/0/-1/null), flagged}``; ``label.steps`` runs to the
    last rated step (as PRM800K's stop at the first error in first-error mode), ``question.pre_generated_steps``
    holds all of them. ``finish_reason`` uses PRM800K's words (``give_up``). ``labeler`` is the annotator's
    id, or the judge's or method's ``source_name``; ``label_source`` is human / ai / auto. A reviewer's
    adjudication is one more row with ``label_source`` "adjudication" (when ``source`` is None or "human").
    """
    if source is not None:
        _source_check(source)
    _gold_count(project, source, dropped, per_label=True)
    items = {item.pk: item for item in _items(project)}
    labels = StepLabel.objects.filter(item__project=project, item__is_gold=False).order_by("item_id", "id")
    if source is not None:
        labels = labels.filter(source=source)
    by_item: dict[int, list[StepLabel]] = defaultdict(list)
    for label in labels.iterator(chunk_size=2000):
        by_item[label.item_id].append(label)
    rows, lineage = [], []
    for item in items.values():
        if dropped is not None and not by_item.get(item.pk) and not (
                source in (None, StepLabel.Source.HUMAN) and _valid(item.final_ratings, len(item.steps))):
            dropped["unlabeled"] += 1
        for label in by_item.get(item.pk, []):
            if not _valid(label.ratings, len(item.steps)):
                if dropped is not None:
                    dropped["stale"] += 1
                continue
            rows.append(_prm800k_row(item, label.ratings, labeler=label.annotator_id or label.source_name,
                                     source=label.source, source_name=label.source_name,
                                     finish_reason=label.finish_reason, outcome=label.outcome, flags=label.flags,
                                     total_time=label.time_spent_ms))
            lineage.append({"item": item.pk, "prompt": item.prompt_id, "label": label.pk, "by": label.source})
        if source in (None, StepLabel.Source.HUMAN) and _valid(item.final_ratings, len(item.steps)):
            rows.append(_prm800k_row(item, item.final_ratings, labeler=item.adjudicated_by_id,
                                     source="adjudication", source_name="",
                                     finish_reason=finish_reason_for(item.final_ratings), outcome=item.final_outcome))
            lineage.append({"item": item.pk, "prompt": item.prompt_id, "label": None, "by": "adjudication"})
    return rows, lineage


def outcome_rows(*, project: Project, source: str = StepLabel.Source.HUMAN,
                 dropped: Counter | None = None) -> tuple[list[dict], list[dict]]:
    """Outcome-supervision rows ``{"prompt", "completion", "label"}`` (TRL's unpaired preference form).

    ``completion`` is the whole solution (``solution_text``, else the steps joined by blank lines). ``label``
    is the combined outcome verdict (``step_item_ratings``): correct is True, incorrect False. Without a
    verdict it comes from the steps: False when a combined step rating is -1, True when every step is
    rated and none is -1; an item with neither a verdict nor that evidence (an unrated step, no -1) is left
    out, since an unrated step may hide the error.
    """
    rows, lineage = [], []
    for item, aggregate in _aggregated(project, source, dropped):
        if aggregate.outcome in (StepLabel.Outcome.CORRECT, StepLabel.Outcome.INCORRECT):
            label, basis = aggregate.outcome == StepLabel.Outcome.CORRECT, "outcome"
        elif first_error(aggregate.ratings) is not None:
            label, basis = False, "steps"
        elif None not in aggregate.ratings:
            label, basis = True, "steps"
        else:
            if dropped is not None:
                dropped["no_outcome"] += 1
            continue
        rows.append(UnpairedRow(prompt=item.prompt.last_user_text,
                                completion=item.solution_text or "\n\n".join(item.steps), label=label).to_dict())
        lineage.append({"item": item.pk, "prompt": item.prompt_id, "by": source, "from": basis,
                        "labels": list(aggregate.labels), "adjudicated": aggregate.adjudicated})
    return rows, lineage
