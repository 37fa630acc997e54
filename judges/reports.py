"""What a judge is worth on a project: agreement with people, position bias, self-consistency,
calibration and cost, from its stored judgments (the run page), and its verdicts item by item.

Every figure comes with the number it is computed over (``*_n``). A tie is a verdict of its own: it is
counted (``ties``), it is a miss in the accuracy over all pairs, and it is left out of the accuracy over
decided pairs and of the calibration table, whose confidence is that of a chosen side."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import Count
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from annotate.models import PairLabel, Project
from annotate.quality import pair_item_verdicts
from judges.models import AIJudgment, Judge
from prefdata.stats import cohen_kappa, position_bias

SIDES = ("A", "B")


def _share(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _judgments(*, judge: Judge, project: Project):
    return AIJudgment.objects.filter(judge=judge, template_version=judge.template_version, item__project=project)


def judge_report(*, judge: Judge, project: Project, bins: int = 5) -> dict:
    """The judge's figures on the project at its current version; each figure has its ``*_n``."""
    judgments = list(_judgments(judge=judge, project=project).order_by("id"))
    n = len(judgments)
    both = [j for j in judgments if j.verdict_ba]
    decided = [j for j in judgments if j.verdict in SIDES]
    ties = sum(j.verdict == "tie" for j in judgments)
    # 1. Position bias. Before debiasing: how often a single order's verdict picked the response shown
    #    first (A in the AB order, B in the BA order), over every single-order verdict (ties included), and a
    #    two-sided binomial test of the decided ones against 0.5 (prefdata.stats.position_bias; full
    #    precision: a strong bias over a few hundred pairs has p far below 1e-4).
    first_picks = sum(j.verdict_ab == "A" for j in judgments) + sum(j.verdict_ba == "B" for j in both)
    single_orders = n + len(both)
    bias = position_bias(labels=[("AB", j.verdict_ab) for j in judgments if j.verdict_ab in SIDES]
                         + [("BA", j.verdict_ba) for j in both if j.verdict_ba in SIDES])
    votes = [j.vote_share for j in judgments if j.vote_share is not None]
    report = {
        "judgments": n,
        "decided": len(decided),
        "ties_count": ties,
        "ties": _share(ties, n),
        "first_position_before": _share(first_picks, single_orders),
        "first_position_before_n": single_orders,
        "first_position_p_value": bias["p_value"] if bias["decisive"] else None,
        "first_position_p_value_n": bias["decisive"],
        # After debiasing the position is gone: the share of final verdicts for A (shown first in the
        # AB order) should sit near the share of pairs where A really is better.
        "first_position_after": _share(sum(j.verdict == "A" for j in decided), len(decided)),
        "first_position_after_n": len(decided),
        "flip_rate": _share(sum(j.flipped for j in both), len(both)),
        "flip_rate_n": len(both),
        "self_consistency": round(statistics.mean(votes), 4) if votes else None,
        "self_consistency_n": len(votes),
    }
    # 2. Agreement with people on the pairs that have a human verdict (A or B): over all of them (a tie of
    #    the judge is a miss) and over those the judge decided.
    human = {item: agg.verdict for item, agg in pair_item_verdicts(project=project).items()
             if agg.verdict in SIDES}
    paired = [(human[j.item_id], j.verdict) for j in judgments if j.item_id in human]
    paired_decided = [(h, a) for h, a in paired if a in SIDES]
    report["with_humans"] = len(paired)
    report["accuracy"] = _share(sum(h == a for h, a in paired), len(paired))
    report["accuracy_n"] = len(paired)
    report["accuracy_decided"] = _share(sum(h == a for h, a in paired_decided), len(paired_decided))
    report["accuracy_decided_n"] = len(paired_decided)
    report["ties_with_humans"] = len(paired) - len(paired_decided)
    kappa = cohen_kappa(a=[h for h, _ in paired], b=[a for _, a in paired]) if paired else math.nan
    report["kappa"] = None if math.isnan(kappa) else round(kappa, 4)
    report["kappa_n"] = len(paired)
    report["agreement_text"] = _agreement_text(n=n, ties=ties, paired=len(paired), decided=len(paired_decided),
                                               accuracy_decided=report["accuracy_decided"])
    # 3. Calibration over the decided judgments with a human verdict: confidence of the chosen side,
    #    max(p, 1 - p), against how often people chose it too. A tie chose no side (its p is 0.5): scoring
    #    it as B would make a judge of ties "agree" as often as people said B.
    table = []
    for b in range(bins):
        low, high = 0.5 + b * 0.5 / bins, 0.5 + (b + 1) * 0.5 / bins
        last = b == bins - 1
        inside = [(j, h) for j in decided for h in [human.get(j.item_id)] if h
                  and low <= max(j.probability, 1 - j.probability) < high + (1e-9 if last else 0)]
        if inside:
            confidence = statistics.mean(max(j.probability, 1 - j.probability) for j, _ in inside)
            accuracy = sum(j.verdict == h for j, h in inside) / len(inside)
            table.append({"low": round(low, 4), "high": round(high, 4), "count": len(inside),
                          "confidence": round(confidence, 4), "accuracy": round(accuracy, 4)})
    report["calibration"] = table
    report["calibration_ties"] = report["ties_with_humans"]
    report["calibration_svg"] = reliability_svg(table, ties=report["ties_with_humans"])
    # 4. Cost: per judgment (paid tokens) next to a human label (hourly rate x median time).
    report["cost_per_judgment"] = round(statistics.mean(j.cost for j in judgments), 6) if judgments else None
    times = list(PairLabel.objects.filter(item__project=project, time_spent_ms__isnull=False)
                 .values_list("time_spent_ms", flat=True)[:5000])
    report["human_cost_per_label"] = (round(project.annotator_hourly_rate * statistics.median(times) / 3.6e6, 4)
                                      if times else None)
    report["human_cost_per_label_n"] = len(times)
    return report


def _agreement_text(*, n: int, ties: int, paired: int, decided: int, accuracy_decided: float | None) -> str:
    """One line that reads sensibly whatever the counts: "20 of 20 ties; no decided pairs"."""
    if not n:
        return "no judgment yet"
    if not paired:
        return f"{ties} of {n} ties; no pair with a human verdict yet" if ties else "no pair with a human verdict yet"
    if not decided:
        return f"{paired - decided} of {paired} ties; no decided pairs"
    agree = round((accuracy_decided or 0) * decided)
    text = f"agrees on {agree} of {decided} decided pairs"
    return f"{text}; {paired - decided} of {paired} ties" if paired > decided else text


def reliability_svg(table: list[dict], *, ties: int = 0, width: int = 420, height: int = 320) -> SafeString:
    """A reliability diagram as inline SVG: a bar per confidence bin (height: how often people agree,
    its count above it), the dashed diagonal is a perfectly calibrated judge; labelled axes and ticks.

    Presentation attributes only (no style attribute: the CSP allows no inline style). Built from numbers
    we computed and fixed strings only (no user or model text), each escaped anyway, hence safe HTML."""
    left, right, top, bottom = 56, 16, 28, 52
    inner_w, inner_h = width - left - right, height - top - bottom

    def x(v: float) -> float:
        return left + (v - 0.5) / 0.5 * inner_w

    def y(v: float) -> float:
        return top + inner_h - v * inner_h

    total = sum(row["count"] for row in table)
    label = f"Reliability diagram: {total} decided judgments in {len(table)} bins" + (
        f", {ties} ties left out" if ties else "")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="reliability" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}">',
             f"<title>{escape(label)}</title>",
             f'<rect x="{left}" y="{top}" width="{inner_w}" height="{inner_h}" fill="#f8fafc" stroke="#d0d5dd"/>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):  # y: agreement with people
        parts.append(f'<line x1="{left - 4}" y1="{y(tick):.1f}" x2="{left + inner_w}" y2="{y(tick):.1f}" '
                     f'stroke="#e4e7ec"/>')
        parts.append(f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" font-size="12" text-anchor="end" '
                     f'fill="#475467">{tick:g}</text>')
    for tick in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0):  # x: confidence
        parts.append(f'<line x1="{x(tick):.1f}" y1="{top + inner_h}" x2="{x(tick):.1f}" y2="{top + inner_h + 4}" '
                     f'stroke="#98a2b3"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{top + inner_h + 18}" font-size="12" text-anchor="middle" '
                     f'fill="#475467">{tick:g}</text>')
    parts.append(f'<line x1="{x(0.5):.1f}" y1="{y(0.5):.1f}" x2="{x(1.0):.1f}" y2="{y(1.0):.1f}" stroke="#667085" '
                 f'stroke-dasharray="5 4"/>')
    for row in table:
        x0, x1 = x(row["low"]) + 2, x(row["high"]) - 2
        top_y = y(row["accuracy"])
        parts.append(f'<rect x="{x0:.1f}" y="{top_y:.1f}" width="{x1 - x0:.1f}" height="{y(0) - top_y:.1f}" '
                     f'fill="#3056d3" fill-opacity="0.8"><title>{row["count"]} judgments, mean confidence '
                     f'{row["confidence"]:.2f}, people agree {row["accuracy"]:.2f}</title></rect>')
        inside = top_y - 5 < top + 12  # no room above a bar near 1: the count goes inside it, in white
        parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{top_y + 16 if inside else top_y - 5:.1f}" font-size="12" '
                     f'text-anchor="middle" fill="{"#ffffff" if inside else "#101828"}">n={row["count"]}</text>')
    if not table:
        parts.append(f'<text x="{left + inner_w / 2:.1f}" y="{top + inner_h / 2:.1f}" font-size="13" '
                     f'text-anchor="middle" fill="#475467">no decided judgment with a human verdict</text>')
    parts.append(f'<text x="{left + inner_w / 2:.1f}" y="{height - 10}" font-size="13" text-anchor="middle" '
                 f'fill="#101828">judge confidence in its chosen side</text>')
    parts.append(f'<text x="16" y="{top + inner_h / 2:.1f}" font-size="13" text-anchor="middle" fill="#101828" '
                 f'transform="rotate(-90 16 {top + inner_h / 2:.1f})">people agree (share)</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (numbers and constant text only, escaped)


@dataclass(frozen=True)
class ItemVerdict:
    """One judged pair: the judge's verdicts (each order, final, P(A)) next to the people's."""

    item_id: int
    verdict: str
    verdict_ab: str
    verdict_ba: str
    probability: float
    human: str | None  # the people's verdict (majority or a reviewer's), None when there is none
    labels: int  # human labels on the item
    disputed: bool  # its labels disagree: it is on the review page

    @property
    def agrees(self) -> bool | None:
        if self.human not in SIDES or self.verdict not in SIDES:
            return None  # no side to agree on: people have no verdict, or the judge tied
        return self.verdict == self.human


ITEM_FILTERS = ("all", "disagree", "ties")


def judge_item_verdicts(*, judge: Judge, project: Project, page: int | str = 1, per_page: int = 25,
                        show: str = "all") -> Page:
    """The judge's judgments on the project (current version), a page of ``ItemVerdict`` rows: ``show``
    "disagree" keeps the decided ones people decided otherwise, "ties" the judge's ties."""
    human_all = pair_item_verdicts(project=project)
    human = {item: agg.verdict for item, agg in human_all.items()}
    rows = _judgments(judge=judge, project=project).order_by("item_id").values_list(
        "item_id", "verdict", "verdict_ab", "verdict_ba", "probability")
    if show == "ties":
        rows = rows.filter(verdict="tie")
    elif show == "disagree":
        rows = [r for r in rows if r[1] in SIDES and human.get(r[0]) in SIDES and human[r[0]] != r[1]]
    paginator = Paginator(rows, per_page)
    current = paginator.get_page(page)
    ids = [r[0] for r in current.object_list]
    counts = dict(PairLabel.objects.filter(item_id__in=ids).values("item_id").annotate(n=Count("id"))
                  .values_list("item_id", "n"))
    verdicts = dict(PairLabel.objects.filter(item_id__in=ids).values("item_id")
                    .annotate(k=Count("verdict", distinct=True)).values_list("item_id", "k"))
    current.object_list = [ItemVerdict(item_id=i, verdict=v, verdict_ab=ab, verdict_ba=ba, probability=p,
                                       human=human.get(i), labels=counts.get(i, 0), disputed=verdicts.get(i, 0) > 1)
                           for i, v, ab, ba, p in current.object_list]
    return current


def item_judge_verdicts(*, item_id: int) -> list[AIJudgment]:
    """Each judge's judgment of one pair at the judge's current version (the review page); the caller has
    scoped the item to the user."""
    return [j for j in AIJudgment.objects.filter(item_id=item_id).select_related("judge").order_by("judge__name")
            if j.template_version == j.judge.template_version]
