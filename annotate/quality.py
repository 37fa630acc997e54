"""Quality control reads: agreement, per-annotator figures, disputes and final verdicts.

Selectors that gather labels with one query each and hand plain tuples to ``prefdata.stats``.
Gold items are kept out of agreement and aggregation: they measure annotators, not the data.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from annotate.models import PairItem, PairLabel, Project, Verdict
from prefdata.stats import (
    Aggregate,
    aggregate_verdicts,
    agreement_with_majority,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    plurality,
    position_bias,
    signed_strength,
)

LabelRow = tuple[int, int, str, int | None, str, int | None, bool, str]


def _label_rows(project: Project) -> list[LabelRow]:
    """(item, annotator, verdict, strength, shown_order, time_spent_ms, is_gold, gold_verdict) per label."""
    return list(PairLabel.objects.filter(item__project=project).values_list(
        "item_id", "annotator_id", "verdict", "strength", "shown_order", "time_spent_ms", "item__is_gold",
        "item__gold_verdict"))


def _nan_or_none(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _nan_to_none(value: float) -> float | None:
    value = _nan_or_none(value)
    return None if value is None else round(value, 4)


@dataclass
class AnnotatorQuality:
    annotator_id: int
    username: str
    labels: int
    median_seconds: float | None
    gold_labels: int
    gold_accuracy: float | None
    agreement_with_majority: float | None
    kappa_with_majority: float | None
    left_share: float | None
    position_p_value: float | None


def project_quality(*, project: Project) -> dict:
    """Agreement for the project and figures for each annotator (the researcher's dashboard)."""
    rows = _label_rows(project)
    regular = [r for r in rows if not r[6]]
    # 1. Project agreement: Krippendorff's alpha on the signed strength scale (-4 .. 4), ordinal, and
    #    Fleiss' kappa on the verdicts of the items that have exactly k labels.
    ratings: dict[int, dict[int, float]] = defaultdict(dict)
    verdicts_by_item: dict[int, list[str]] = defaultdict(list)
    for item, annotator, verdict, strength, *_ in regular:
        value = signed_strength(verdict=verdict, strength=strength)
        if value is not None:
            ratings[item][annotator] = value
        verdicts_by_item[item].append(verdict)
    full = [v for v in verdicts_by_item.values() if len(v) == project.overlap and project.overlap >= 2]
    alpha = krippendorff_alpha(ratings=ratings, level="ordinal")
    fleiss = fleiss_kappa(ratings=full) if full else math.nan
    # 2. Per annotator, against the majority of the others on the same items.
    majority_share = agreement_with_majority(labels=[(r[0], r[1], r[2]) for r in regular])
    by_item: dict[int, dict[int, str]] = defaultdict(dict)
    for item, annotator, verdict, *_ in regular:
        by_item[item][annotator] = verdict
    users = dict(get_user_model().objects.filter(pk__in={r[1] for r in rows}).values_list("pk", "username"))
    per: dict[int, list[LabelRow]] = defaultdict(list)
    for r in rows:
        per[r[1]].append(r)
    annotators = []
    for annotator, own in sorted(per.items(), key=lambda kv: users.get(kv[0], "")):
        mine, others = [], []
        for item, _, verdict, *_ in (r for r in own if not r[6]):
            majority = plurality(v for a, v in by_item[item].items() if a != annotator)
            if majority is not None:
                mine.append(verdict)
                others.append(majority)
        gold = [r for r in own if r[6]]
        times = [r[5] / 1000 for r in own if r[5] is not None]
        bias = position_bias(labels=[(r[4], r[2]) for r in own])
        annotators.append(AnnotatorQuality(
            annotator_id=annotator, username=users.get(annotator, "?"), labels=len(own),
            median_seconds=round(statistics.median(times), 1) if times else None,
            gold_labels=len(gold),
            gold_accuracy=_nan_to_none(sum(r[2] == r[7] for r in gold) / len(gold)) if gold else None,
            agreement_with_majority=_nan_to_none(majority_share.get(annotator, math.nan)),
            kappa_with_majority=_nan_to_none(cohen_kappa(a=mine, b=others)) if mine else None,
            left_share=_nan_to_none(bias["left_share"]), position_p_value=_nan_or_none(bias["p_value"]),
        ))
    return {"labels": len(rows), "items_labeled": len(verdicts_by_item),
            "alpha_ordinal": _nan_to_none(alpha), "fleiss_kappa": _nan_to_none(fleiss),
            "items_with_k_labels": len(full), "annotators": annotators}


def pair_item_verdicts(*, project: Project, weighted: bool = False) -> dict[int, Aggregate]:
    """One verdict per item: a reviewer's adjudication when there is one, else the (strength-weighted)
    majority of its labels, with a margin derived from strength."""
    rows = PairLabel.objects.filter(item__project=project, item__is_gold=False).values_list(
        "item_id", "verdict", "strength")
    aggregates = aggregate_verdicts(labels=list(rows), weighted=weighted)
    for item_id, verdict, strength in PairItem.objects.filter(project=project, is_gold=False).exclude(
            final_verdict="").values_list("id", "final_verdict", "final_strength"):
        previous = aggregates.get(item_id)
        aggregates[item_id] = Aggregate(
            verdict=verdict, margin=float(strength) if strength and verdict in (Verdict.A, Verdict.B) else None,
            support=previous.support if previous else 0, total=previous.total if previous else 0)
    return aggregates


def _disputed(project: Project, include_adjudicated: bool) -> tuple[QuerySet[PairItem], dict[int, list[PairLabel]]]:
    labels: dict[int, list[PairLabel]] = defaultdict(list)
    for label in PairLabel.objects.filter(item__project=project, item__is_gold=False).select_related("annotator"):
        labels[label.item_id].append(label)
    disputed = [item_id for item_id, ls in labels.items() if len({label.verdict for label in ls}) > 1]
    items = PairItem.objects.filter(pk__in=disputed).select_related(
        "prompt", "completion_a", "completion_b", "adjudicated_by").order_by("id")
    if not include_adjudicated:
        items = items.filter(final_verdict="")
    return items, labels


def disputed_items(*, project: Project, include_adjudicated: bool = False, limit: int = 200) -> list[dict]:
    """Items whose labels disagree, for the review page, with every label."""
    items, labels = _disputed(project, include_adjudicated)
    return [{"item": item, "labels": labels[item.pk]} for item in items[:limit]]


def disputed_page(*, project: Project, include_adjudicated: bool = False, number: object = 1,
                  per_page: int = 50) -> Page:
    """One page of ``disputed_items`` (a number past the last gives the last page)."""
    items, labels = _disputed(project, include_adjudicated)
    page = Paginator(items, per_page).get_page(number)
    page.object_list = [{"item": item, "labels": labels[item.pk]} for item in page.object_list]
    return page
