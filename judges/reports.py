"""What a judge is worth on a project: agreement with people, position bias, self-consistency,
calibration and cost, from its stored judgments (the run page)."""

from __future__ import annotations

import math
import statistics

from django.utils.safestring import SafeString, mark_safe

from annotate.models import PairLabel, Project
from annotate.quality import pair_item_verdicts
from judges.models import AIJudgment, Judge
from prefdata.stats import cohen_kappa


def _share(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def judge_report(*, judge: Judge, project: Project, bins: int = 5) -> dict:
    judgments = list(AIJudgment.objects.filter(judge=judge, template_version=judge.template_version,
                                               item__project=project))
    n = len(judgments)
    both = [j for j in judgments if j.verdict_ba]
    # 1. Position bias. Before debiasing: how often a single order's verdict picked the response shown
    #    first (A in the AB order, B in the BA order), and how often the verdict flips with the order.
    first_picks = sum(j.verdict_ab == "A" for j in judgments) + sum(j.verdict_ba == "B" for j in both)
    single_orders = n + len(both)
    decided = [j for j in judgments if j.verdict in ("A", "B")]
    report = {
        "judgments": n,
        "first_position_before": _share(first_picks, single_orders),
        # After debiasing the position is gone: the share of final verdicts for A (shown first in the
        # AB order) should sit near the share of pairs where A really is better.
        "first_position_after": _share(sum(j.verdict == "A" for j in decided), len(decided)),
        "flip_rate": _share(sum(j.flipped for j in both), len(both)),
        "ties": _share(sum(j.verdict == "tie" for j in judgments), n),
        "self_consistency": (round(statistics.mean(j.vote_share for j in judgments if j.vote_share is not None), 4)
                             if any(j.vote_share is not None for j in judgments) else None),
    }
    # 2. Agreement with people on the pairs that have a human verdict (A or B).
    human = {item: agg.verdict for item, agg in pair_item_verdicts(project=project).items()
             if agg.verdict in ("A", "B")}
    paired = [(human[j.item_id], j.verdict) for j in judgments if j.item_id in human]
    report["with_humans"] = len(paired)
    report["accuracy"] = _share(sum(h == a for h, a in paired), len(paired))
    kappa = cohen_kappa(a=[h for h, _ in paired], b=[a for _, a in paired]) if paired else math.nan
    report["kappa"] = None if math.isnan(kappa) else round(kappa, 4)
    # 3. Calibration: confidence of the chosen answer, max(p, 1 - p), against how often people agree.
    table = []
    for b in range(bins):
        low, high = 0.5 + b * 0.5 / bins, 0.5 + (b + 1) * 0.5 / bins
        inside = [(j, h) for j in judgments for h in [human.get(j.item_id)] if h
                  and low <= max(j.probability, 1 - j.probability) < high + (1e-9 if b == bins - 1 else 0)]
        if inside:
            confidence = statistics.mean(max(j.probability, 1 - j.probability) for j, _ in inside)
            accuracy = sum(("A" if j.probability > 0.5 else "B") == h for j, h in inside) / len(inside)
            table.append({"low": low, "high": high, "count": len(inside), "confidence": round(confidence, 4),
                          "accuracy": round(accuracy, 4)})
    report["calibration"] = table
    report["calibration_svg"] = reliability_svg(table)
    # 4. Cost: per judgment (paid tokens) next to a human label (hourly rate x median time).
    report["cost_per_judgment"] = round(statistics.mean(j.cost for j in judgments), 6) if judgments else None
    times = list(PairLabel.objects.filter(item__project=project, time_spent_ms__isnull=False)
                 .values_list("time_spent_ms", flat=True)[:5000])
    report["human_cost_per_label"] = (round(project.annotator_hourly_rate * statistics.median(times) / 3.6e6, 4)
                                      if times else None)
    return report


def reliability_svg(table: list[dict], size: int = 220) -> SafeString:
    """A reliability diagram as inline SVG: bars of accuracy per confidence bin, the diagonal is perfect.

    Built from numbers we computed and fixed strings only (no user or model text), hence safe HTML."""
    pad, inner = 30, size - 40

    def x(v: float) -> float:
        return pad + (v - 0.5) / 0.5 * inner

    def y(v: float) -> float:
        return pad + inner - v * inner

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
             f'aria-label="Reliability diagram">',
             f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="#f8fafc" stroke="#d0d5dd"/>',
             f'<line x1="{x(0.5)}" y1="{y(0.5)}" x2="{x(1.0)}" y2="{y(1.0)}" stroke="#98a2b3" stroke-dasharray="4"/>']
    for row in table:
        left, right = x(row["low"]) + 1, x(row["high"]) - 1
        parts.append(f'<rect x="{left:.1f}" y="{y(row["accuracy"]):.1f}" width="{right - left:.1f}" '
                     f'height="{y(0) - y(row["accuracy"]):.1f}" fill="#3056d3" opacity="0.75">'
                     f'<title>{row["count"]} judgments, confidence {row["confidence"]:.2f}, '
                     f'people agree {row["accuracy"]:.2f}</title></rect>')
    parts.append(f'<text x="{pad}" y="{size - 8}" font-size="10">confidence 0.5 → 1</text>')
    parts.append(f'<text x="4" y="{pad - 8}" font-size="10">agreement with people</text></svg>')
    return mark_safe("".join(parts))  # noqa: S308 (numbers and constant text only)
