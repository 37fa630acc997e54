"""A leaderboard of the models that produced the completions (Chatbot Arena style).

Every human label and every AI judgment of a pair whose two completions name different models is a
battle; Bradley-Terry ratings are fitted on them, with bootstrap confidence intervals.
"""

from __future__ import annotations

from annotate.models import PairLabel, Project
from judges.models import AIJudgment
from prefdata.stats import bradley_terry_bootstrap

SOURCES = ("human", "ai", "both")
_SCORE = {"A": 1.0, "B": 0.0, "tie": 0.5, "both_bad": 0.5}


def project_battles(*, project: Project, source: str = "human") -> list[tuple[str, str, float]]:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}")
    rows: list[tuple[str, str, str]] = []
    if source in ("human", "both"):
        rows += PairLabel.objects.filter(item__project=project, item__is_gold=False).values_list(
            "item__completion_a__model_name", "item__completion_b__model_name", "verdict")
    if source in ("ai", "both"):
        rows += AIJudgment.objects.filter(item__project=project).values_list(
            "item__completion_a__model_name", "item__completion_b__model_name", "verdict")
    return [(a, b, _SCORE[v]) for a, b, v in rows if a and b and a != b and v in _SCORE]


def project_leaderboard(*, project: Project, source: str = "human", rounds: int = 200) -> list[dict]:
    battles = project_battles(project=project, source=source)
    if not battles:
        return []
    ratings = bradley_terry_bootstrap(battles=battles, rounds=rounds, seed=0)
    table = [{"model": model, "rating": round(r.rating, 1), "lower": round(r.lower, 1), "upper": round(r.upper, 1),
              "battles": r.battles} for model, r in ratings.items()]
    table.sort(key=lambda row: -row["rating"])
    for rank, row in enumerate(table, start=1):
        row["rank"] = rank
    return table
