"""Which sampled responses to a prompt become preference pairs.

A candidate is a response with the model that wrote it and, when a scorer rated it, its score. Each
strategy returns pairs of candidate indices ``(first, second)``; when both are scored the better one is
first (the "chosen" side), otherwise the order is the sampling order.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

STRATEGIES = ("all", "random", "across_models", "best_vs_worst", "best_vs_random", "margin")
SCORED = ("best_vs_worst", "best_vs_random", "margin")


@dataclass(frozen=True)
class Candidate:
    text: str
    model: str = ""
    score: float | None = None


def _ordered(candidates: Sequence[Candidate], i: int, j: int) -> tuple[int, int]:
    a, b = candidates[i].score, candidates[j].score
    return (j, i) if a is not None and b is not None and b > a else (i, j)


def pairs_build(candidates: Sequence[Candidate], strategy: str, *, rng: random.Random | None = None,
                max_pairs: int = 1, margin: float = 0.0) -> list[tuple[int, int]]:
    """Pairs of ``candidates`` by ``strategy``:

    - ``all``: every two responses;
    - ``random``: ``max_pairs`` pairs drawn from all;
    - ``across_models``: every two responses by different models;
    - ``best_vs_worst``: the best-scored against the worst-scored (none when all scores tie);
    - ``best_vs_random``: the best against another drawn at random (one that scores lower);
    - ``margin``: every two whose scores differ by at least ``margin`` (best first).
    ``max_pairs`` caps the pairs of ``random`` and ``across_models`` (drawn at random; 0: no cap). Texts
    that are equal make no pair: there is nothing to prefer.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {', '.join(STRATEGIES)}, not {strategy!r}")
    rng = rng or random.Random(0)
    indices = range(len(candidates))
    distinct = [(i, j) for i, j in itertools.combinations(indices, 2)
                if candidates[i].text.strip() != candidates[j].text.strip()]
    if strategy in SCORED and any(c.score is None for c in candidates):
        raise ValueError(f"strategy: {strategy} needs a score for every response (choose a scorer)")
    if strategy == "all":
        chosen = distinct
    elif strategy == "random":
        chosen = rng.sample(distinct, min(max_pairs or len(distinct), len(distinct)))
    elif strategy == "across_models":
        chosen = [(i, j) for i, j in distinct if candidates[i].model != candidates[j].model]
        if max_pairs > 0 and len(chosen) > max_pairs:
            chosen = rng.sample(chosen, max_pairs)
    elif strategy == "margin":
        chosen = [(i, j) for i, j in distinct if abs(candidates[i].score - candidates[j].score) >= margin
                  and candidates[i].score != candidates[j].score]
    else:
        best = max(indices, key=lambda i: candidates[i].score) if candidates else None
        lower = [i for i in indices if candidates[i].score < candidates[best].score
                 and candidates[i].text.strip() != candidates[best].text.strip()] if candidates else []
        if not lower:
            return []
        if strategy == "best_vs_worst":
            chosen = [(best, min(lower, key=lambda i: candidates[i].score))]
        else:
            chosen = [(best, rng.choice(lower))]
    return [_ordered(candidates, i, j) for i, j in chosen]
