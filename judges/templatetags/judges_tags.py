"""Template helpers of the judges' pages: shares with their n, and each
judge's verdict on a pair (the review page)."""

from __future__ import annotations

from django import template

from judges.reports import item_judge_verdicts

register = template.Library()


@register.filter
def percent(value: float | None) -> str:
    """A share as a percentage, "n/a" when there is none."""
    if value is None:
        return "n/a"
    return f"{value * 100:.0f}%"


@register.inclusion_tag("judges/partials/item_verdicts.html")
def judge_verdicts(item) -> dict:
    """Each judge's verdict on ``item`` (already scoped to the user by the page)."""
    return {"judgments": item_judge_verdicts(item_id=item.pk)}
