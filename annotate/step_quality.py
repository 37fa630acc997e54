"""Quality of step labels: agreement on ratings and on the first error, gold accuracy, disputes,
and how the label sources (people, AI judges, automatic methods) agree with each other."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from annotate.models import Project, StepItem, StepLabel
from prefdata.stats import agreement_with_majority, krippendorff_alpha
from prefdata.steps import first_error, step_majority


def _round(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, 4)


def first_error_position(ratings: list, n_steps: int) -> int:
    """The first -1 step, or ``n_steps`` when there is none (a solution with no error)."""
    error = first_error(ratings)
    return n_steps if error is None else error


def step_project_quality(*, project: Project) -> dict:
    labels = list(StepLabel.objects.filter(item__project=project, source=StepLabel.Source.HUMAN)
                  .select_related("item").order_by("id"))
    regular = [lb for lb in labels if not lb.item.is_gold]
    # 1. Agreement on each step's rating (ordinal: -1 < 0 < +1) and on where the first error is.
    by_step: dict[tuple, dict] = defaultdict(dict)
    by_item: dict[int, dict] = defaultdict(dict)
    for lb in regular:
        for i, r in enumerate(lb.ratings):
            if r is not None:
                by_step[(lb.item_id, i)][lb.annotator_id] = r
        by_item[lb.item_id][lb.annotator_id] = first_error_position(lb.ratings, len(lb.item.steps))
    majority = agreement_with_majority(labels=[(unit, a, r) for unit, votes in by_step.items()
                                               for a, r in votes.items()])
    users = dict(get_user_model().objects.filter(pk__in={lb.annotator_id for lb in labels})
                 .values_list("pk", "username"))
    per = defaultdict(list)
    for lb in labels:
        per[lb.annotator_id].append(lb)
    annotators = []
    for annotator, own in sorted(per.items(), key=lambda kv: users.get(kv[0], "")):
        gold_hits = gold_steps = 0
        for lb in own:
            if lb.item.is_gold and lb.item.gold_ratings:
                for mine, truth in zip(lb.ratings, lb.item.gold_ratings, strict=False):
                    if mine is not None and truth is not None:
                        gold_steps += 1
                        gold_hits += mine == truth
        times = [lb.time_spent_ms / 1000 for lb in own if lb.time_spent_ms is not None]
        annotators.append({"username": users.get(annotator, "?"), "labels": len(own),
                           "median_seconds": round(statistics.median(times), 1) if times else None,
                           "gold_steps": gold_steps,
                           "gold_accuracy": _round(gold_hits / gold_steps) if gold_steps else None,
                           "agreement_with_majority": _round(majority.get(annotator))})
    return {"labels": len(labels), "solutions_labeled": len(by_item),
            "alpha_steps": _round(krippendorff_alpha(ratings=by_step, level="ordinal")),
            "alpha_first_error": _round(krippendorff_alpha(ratings=by_item, level="interval")),
            "annotators": annotators}


def _step_disputed(project: Project, include_adjudicated: bool) -> tuple[QuerySet[StepItem], dict[int, list]]:
    labels: dict[int, list[StepLabel]] = defaultdict(list)
    for lb in StepLabel.objects.filter(item__project=project, item__is_gold=False).select_related("annotator"):
        labels[lb.item_id].append(lb)
    disputed = [item_id for item_id, ls in labels.items()
                if len({tuple(lb.ratings) for lb in ls if lb.source == StepLabel.Source.HUMAN}) > 1]
    items = StepItem.objects.filter(pk__in=disputed).select_related("prompt", "adjudicated_by").order_by("id")
    if not include_adjudicated:
        items = items.filter(final_ratings__isnull=True)
    return items, labels


def step_disputes(*, project: Project, include_adjudicated: bool = False, limit: int = 100) -> list[dict]:
    """Solutions whose people disagree on some step, with every source's ratings side by side."""
    items, labels = _step_disputed(project, include_adjudicated)
    return [step_sources(item=item, labels=labels[item.pk]) for item in items[:limit]]


def step_disputes_page(*, project: Project, include_adjudicated: bool = False, number: object = 1,
                       per_page: int = 25) -> Page:
    """One page of ``step_disputes`` (a number past the last gives the last page)."""
    items, labels = _step_disputed(project, include_adjudicated)
    page = Paginator(items, per_page).get_page(number)
    page.object_list = [step_sources(item=item, labels=labels[item.pk]) for item in page.object_list]
    return page


def step_sources(*, item: StepItem, labels: list[StepLabel] | None = None) -> dict:
    """Every label of a solution as a column (people, AI judges, methods), step by step, with the
    share of rated steps on which each source agrees with the people's majority."""
    labels = labels if labels is not None else list(StepLabel.objects.filter(item=item).select_related("annotator"))
    columns = [{"name": lb.annotator.username if lb.annotator else lb.source_name, "source": lb.source,
                "ratings": lb.ratings, "first_error": lb.first_error} for lb in labels]
    human = [lb.ratings for lb in labels if lb.source == StepLabel.Source.HUMAN]
    majority = step_majority(human) if human else [None] * len(item.steps)
    for column in columns:
        both = [(r, m) for r, m in zip(column["ratings"], majority, strict=True) if r is not None and m is not None]
        column["agreement"] = _round(sum(r == m for r, m in both) / len(both)) if both else None
    rows = [{"index": i, "text": text, "ratings": [c["ratings"][i] for c in columns], "majority": majority[i],
             "final": (item.final_ratings or [None] * len(item.steps))[i]} for i, text in enumerate(item.steps)]
    return {"item": item, "columns": columns, "rows": rows, "majority": majority}
