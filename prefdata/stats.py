"""Agreement and rating statistics for pairwise preference labels.

Pure Python and numpy: no Django (callers pass plain tuples and mappings read by the selectors), and no scipy,
which is only a development dependency. Every function is keyword-only. A statistic that is undefined for the data
(too few labels, no variation) is ``nan`` rather than an error, so that a dashboard can show "n/a" for a young
project; ``ValueError`` is kept for malformed input (unknown verdicts, strengths outside 1..4, and the like).

The platform's verdicts are ``"A"``, ``"B"``, ``"tie"`` and ``"both_bad"``; a strength of 1..4 (negligibly,
slightly, plainly "better", significantly better) may come with ``"A"`` or ``"B"`` (``prefdata.records``).

Every majority vote of the platform (verdicts of people and AI judges, step ratings, outcomes, finish
reasons) is ``plurality``: the value given most often, none when the top two are level.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

import numpy as np
import numpy.typing as npt

from prefdata.records import STRENGTHS, VERDICTS

__all__ = [
    "ELO_PER_NAT",
    "Aggregate",
    "PositionBias",
    "Rating",
    "UNGRADED_STRENGTH",
    "VERDICTS",
    "agreement_with_majority",
    "aggregate_verdicts",
    "bradley_terry",
    "bradley_terry_bootstrap",
    "cohen_kappa",
    "fleiss_kappa",
    "krippendorff_alpha",
    "plurality",
    "position_bias",
    "signed_strength",
]

Level = Literal["nominal", "ordinal", "interval"]


# A decisive verdict without a strength sits at 3 on the signed scale: 3 is the label "Better", i.e. exactly the
# unqualified claim "A is better" that the annotator made. Putting it at 1 ("Negligibly better") would move it
# next to a tie and make an ungraded rater look as if they disagreed with a rater who graded "Better". When no
# label in a project is graded the choice does not matter: interval alpha is invariant under rescaling and ordinal
# alpha only sees ranks, so {-3, 0, 3} and {-1, 0, 1} give the same alpha.
UNGRADED_STRENGTH = 3

# Ratings are reported on the Elo scale of Chatbot Arena (Chiang et al. 2024, arXiv:2403.04132): a difference of
# 400 points means 10:1 odds, so one natural-log unit of Bradley-Terry strength is 400 / ln 10 ~ 173.7 points.
ELO_PER_NAT = 400.0 / math.log(10.0)


# ---------------------------------------------------------------------------------------------------------------
# Krippendorff's alpha
# ---------------------------------------------------------------------------------------------------------------


def signed_strength(*, verdict: str, strength: int | None) -> int | None:
    """A pairwise label as one number on the signed scale -4..4 used for Krippendorff's alpha.

    ``"A"`` with strength s is -s, ``"B"`` with strength s is +s and ``"tie"`` is 0, so the scale runs from
    "A significantly better" to "B significantly better". ``"both_bad"`` is ``None`` (leave it out): it says
    nothing about which response is better, and putting it at 0 would count it as agreement with a tie.
    A decisive verdict without a strength counts as ``UNGRADED_STRENGTH`` (3, "Better"; see there for why).
    The strength of a tie or both_bad label, if any, is ignored.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"Unknown verdict {verdict!r}; expected one of {VERDICTS}.")
    if verdict == "both_bad":
        return None
    if verdict == "tie":
        return 0
    if strength is None:
        strength = UNGRADED_STRENGTH
    elif strength not in STRENGTHS:
        raise ValueError(f"Strength must be 1..4 or None, got {strength!r}.")
    return -strength if verdict == "A" else strength


def _alpha_distance(*, values: npt.NDArray[np.float64], n_c: npt.NDArray[np.float64], level: Level) -> np.ndarray:
    """The squared difference function delta^2(c, k) of Krippendorff (2011), section C, for sorted ``values``."""
    if level == "nominal":
        return 1.0 - np.eye(len(values))
    if level == "interval":
        return np.subtract.outer(values, values) ** 2
    if level == "ordinal":
        # delta^2(c, k) = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2: the distance between two ranks is the number of
        # pairable values that lie between them, so it depends on how the values are used, not on their spacing.
        idx = np.arange(len(values))
        lo, hi = np.minimum.outer(idx, idx), np.maximum.outer(idx, idx)
        cum = np.cumsum(n_c)
        between = cum[hi] - cum[lo] + n_c[lo]
        return (between - (n_c[lo] + n_c[hi]) / 2.0) ** 2
    raise ValueError(f"Unknown level {level!r}; expected 'nominal', 'ordinal' or 'interval'.")


def krippendorff_alpha(
    *, ratings: Mapping[Hashable, Mapping[Hashable, float | None]], level: Level = "interval"
) -> float:
    """Krippendorff's alpha for a reliability data matrix with missing values.

    ``ratings`` maps a unit (an item) to ``{coder: value}``; a coder who did not rate a unit is simply absent
    (``None`` and ``nan`` are treated as absent too). Units with fewer than two values cannot be paired and are
    ignored, as in Krippendorff's definition. Returns ``nan`` when no unit has two values or when all pairable
    values are equal (no variation, so the expected disagreement is zero).

    Follows Krippendorff, "Computing Krippendorff's Alpha-Reliability" (2011), via the coincidence matrix.
    """
    # 1. Keep the pairable values: units with at least two non-missing values.
    units: list[list[float]] = []
    for by_coder in ratings.values():
        values = [float(v) for v in by_coder.values() if v is not None and not math.isnan(v)]
        if len(values) >= 2:
            units.append(values)
    if not units:
        return math.nan

    # 2. Count how often each value occurs in each unit: n_uv, with m_u = sum_v n_uv values in unit u.
    flat = np.fromiter((v for unit in units for v in unit), dtype=np.float64)
    unit_of = np.repeat(np.arange(len(units)), [len(unit) for unit in units])
    values, codes = np.unique(flat, return_inverse=True)
    counts = np.zeros((len(units), len(values)))
    np.add.at(counts, (unit_of, codes), 1.0)
    m = counts.sum(axis=1)

    # 3. Coincidence matrix o_ck = sum_u n_uc (n_uk - [c == k]) / (m_u - 1): every ordered pair of values from
    #    different coders in a unit, each unit weighted so that it contributes m_u pairable values in total.
    scaled = counts / (m - 1.0)[:, None]
    o = counts.T @ scaled - np.diag(scaled.sum(axis=0))
    n_c = o.sum(axis=1)
    n = n_c.sum()

    # 4. alpha = 1 - D_o / D_e = 1 - (n - 1) sum_ck o_ck delta_ck / sum_ck n_c n_k delta_ck.
    delta = _alpha_distance(values=values, n_c=n_c, level=level)
    expected = float((np.outer(n_c, n_c) * delta).sum())
    if expected <= 0.0:
        return math.nan
    observed = float((o * delta).sum())
    return 1.0 - (n - 1.0) * observed / expected


# ---------------------------------------------------------------------------------------------------------------
# Kappas
# ---------------------------------------------------------------------------------------------------------------


def cohen_kappa(*, a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa (Cohen 1960) of two raters who labeled the same items, ``a[i]`` and ``b[i]`` for item i.

    Unweighted (nominal categories). ``nan`` when there are no items or when chance agreement is already 1 (both
    raters used one and the same category throughout). Raises ``ValueError`` when the lengths differ.
    """
    if len(a) != len(b):
        raise ValueError(f"Both raters must label the same items: got {len(a)} and {len(b)} labels.")
    n = len(a)
    if n == 0:
        return math.nan
    # Integer arithmetic so that "chance agreement is 1" is detected exactly:
    # kappa = (p_o - p_e) / (1 - p_e) with p_o = agree / n and p_e = sum_c n_ac n_bc / n^2.
    agree = sum(1 for x, y in zip(a, b, strict=True) if x == y)
    count_a, count_b = Counter(a), Counter(b)
    chance = sum(count * count_b[category] for category, count in count_a.items())
    if chance == n * n:
        return math.nan
    return (n * agree - chance) / (n * n - chance)


def fleiss_kappa(*, ratings: Sequence[Sequence[Hashable]]) -> float:
    """Fleiss' kappa (Fleiss 1971) for items that each received the same number of ratings.

    ``ratings[i]`` lists the category labels that item i received (from any raters; who gave them does not
    matter). Every item must have the same number of ratings, at least two: ``ValueError`` otherwise, rather
    than silently dropping items, because the formula's chance correction assumes a fixed count and a dropped
    item would hide a data problem; callers should choose which items to keep. ``nan`` when there are no items or
    only one category was ever used.
    """
    if not ratings:
        return math.nan
    per_item = {len(item) for item in ratings}
    if len(per_item) != 1:
        raise ValueError(f"Fleiss' kappa needs the same number of ratings per item; got counts {sorted(per_item)}.")
    (k,) = per_item
    if k < 2:
        raise ValueError("Fleiss' kappa needs at least two ratings per item.")

    # 1. n_ij: how many of item i's ratings fell in category j.
    categories = {label: j for j, label in enumerate(dict.fromkeys(label for item in ratings for label in item))}
    if len(categories) < 2:
        return math.nan
    table = np.zeros((len(ratings), len(categories)))
    for i, item in enumerate(ratings):
        for label in item:
            table[i, categories[label]] += 1.0
    # 2. P_i: the share of agreeing rater pairs on item i; P_bar its mean.
    p_bar = float(((table**2).sum(axis=1) - k).mean() / (k * (k - 1)))
    # 3. P_e: chance agreement from the overall category shares p_j.
    p_j = table.sum(axis=0) / table.sum()
    p_e = float((p_j**2).sum())
    return (p_bar - p_e) / (1.0 - p_e)


# ---------------------------------------------------------------------------------------------------------------
# Per-annotator agreement and aggregation
# ---------------------------------------------------------------------------------------------------------------


def plurality(values: Iterable[Hashable], *, weights: Iterable[float] | None = None) -> Hashable | None:
    """The value given most often; None when there is none or when the top two are level.

    With ``weights`` (one per value) the value of the largest total weight wins instead; a value whose total
    weight is not positive was not given. A plurality, not a majority: with four verdicts, a strict majority
    of the votes is often out of reach (callers may require one from the support they count).
    """
    if weights is None:
        ranked = Counter(values).most_common(2)
    else:
        tally: Counter[Hashable] = Counter()
        for value, weight in zip(values, weights, strict=True):
            tally[value] += weight
        ranked = [(v, w) for v, w in tally.most_common() if w > 0][:2]
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def agreement_with_majority(*, labels: Iterable[tuple[Hashable, Hashable, Hashable]]) -> dict[Hashable, float]:
    """For each annotator, the share of their labels that match the majority of the *other* annotators.

    ``labels`` are ``(item_id, annotator_id, verdict)``. Leaving the annotator out of the majority avoids
    crediting them for agreeing with themselves (on an item with two labels, each would otherwise "agree" half the
    time by construction). An item is skipped for an annotator when nobody else labeled it or when the others'
    top verdict is tied. Annotators with no item left are absent from the result. Every verdict, both_bad
    included, is its own category. Raises ``ValueError`` if an annotator labeled an item twice.
    """
    by_item: dict[Hashable, dict[Hashable, Hashable]] = defaultdict(dict)
    for item, annotator, verdict in labels:
        if annotator in by_item[item]:
            raise ValueError(f"Annotator {annotator!r} labeled item {item!r} more than once.")
        by_item[item][annotator] = verdict

    hits: Counter[Hashable] = Counter()
    scored: Counter[Hashable] = Counter()
    for votes in by_item.values():
        for annotator, verdict in votes.items():
            # Skip when there is nothing to compare with, or no single majority among the others.
            majority = plurality(v for a, v in votes.items() if a != annotator)
            if majority is None:
                continue
            scored[annotator] += 1
            hits[annotator] += majority == verdict
    return {annotator: hits[annotator] / count for annotator, count in scored.items()}


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The aggregated verdict on one item.

    ``verdict`` is ``None`` when the top verdicts are tied (no majority). ``margin`` is the mean strength (1..4)
    of the graded labels that agree with a decisive winning verdict; ``None`` when the winner is a tie, both_bad
    or ``None``, or when none of the agreeing labels has a strength. ``support`` counts the labels that agree
    with the winning verdict (0 when there is none); ``total`` counts all labels on the item.
    """

    verdict: str | None
    margin: float | None
    support: int
    total: int


def aggregate_verdicts(
    *, labels: Iterable[tuple[Hashable, str, int | None]], weighted: bool = False
) -> dict[Hashable, Aggregate]:
    """Plurality vote per item over ``(item_id, verdict, strength)`` labels.

    The winner is the verdict with the most votes (a plurality: with four possible verdicts a strict majority of
    the labels is often out of reach, and callers can require one through ``support / total``). When the top two
    are level the verdict is ``None``.

    With ``weighted`` each A/B vote weighs its strength and an ungraded A/B vote weighs 1, so a project that never
    grades strength gets exactly the unweighted result. Tie and both_bad votes weigh 1, like the weakest graded
    preference: they carry no strength, and a weight of 0 would let a single "negligibly better" outvote any number
    of ties. Raises ``ValueError`` for an unknown verdict or a strength outside 1..4.
    """
    weights: dict[Hashable, Counter[str]] = defaultdict(Counter)
    counts: dict[Hashable, Counter[str]] = defaultdict(Counter)
    graded: dict[Hashable, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for item, verdict, strength in labels:
        if verdict not in VERDICTS:
            raise ValueError(f"Unknown verdict {verdict!r}; expected one of {VERDICTS}.")
        if strength is not None and strength not in STRENGTHS:
            raise ValueError(f"Strength must be 1..4 or None, got {strength!r}.")
        decisive = verdict in ("A", "B")
        weights[item][verdict] += (strength or 1) if weighted and decisive else 1
        counts[item][verdict] += 1
        if decisive and strength is not None:
            graded[item][verdict].append(strength)

    result: dict[Hashable, Aggregate] = {}
    for item, tally in weights.items():
        winner = plurality(tally, weights=tally.values())  # the weights rank the verdicts, not the counts
        total = sum(counts[item].values())
        if winner is None:
            result[item] = Aggregate(verdict=None, margin=None, support=0, total=total)
            continue
        strengths = graded[item].get(winner, [])
        margin = sum(strengths) / len(strengths) if strengths else None
        result[item] = Aggregate(verdict=winner, margin=margin, support=counts[item][winner], total=total)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Bradley-Terry ratings
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rating:
    """A Bradley-Terry rating on the Elo scale with a bootstrap percentile interval.

    ``rating`` is the fit on all battles; ``lower`` and ``upper`` bound the central ``ci`` share of the bootstrap
    fits; ``battles`` counts the battles the model took part in.
    """

    rating: float
    lower: float
    upper: float
    battles: int


@dataclass(frozen=True, slots=True)
class _Battles:
    """Battles grouped into distinct (pair, score) cells, so a bootstrap draws cell counts, not battle indices."""

    models: list[str]
    first: np.ndarray  # per pair: index of the lower-numbered model
    second: np.ndarray  # per pair: index of the higher-numbered model
    cell_pair: np.ndarray  # per cell: its pair
    cell_score: np.ndarray  # per cell: the score of the pair's ``first`` model in each battle of the cell
    cell_count: np.ndarray  # per cell: how many battles
    appearances: dict[str, int]


def _group_battles(*, battles: Sequence[tuple[str, str, float]]) -> _Battles:
    models = sorted({m for a, b, _ in battles for m in (a, b)})
    index = {m: i for i, m in enumerate(models)}
    pairs: dict[tuple[int, int], int] = {}
    cells: Counter[tuple[int, float]] = Counter()
    appearances: Counter[str] = Counter()
    for a, b, score in battles:
        score = float(score)
        if a == b:
            raise ValueError(f"A model cannot battle itself: {a!r}.")
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"The first model's score must lie in [0, 1], got {score!r}.")
        i, j = index[a], index[b]
        # Orient every battle from the lower-numbered model's side so that A-vs-B and B-vs-A share one pair.
        if i > j:
            i, j, score = j, i, 1.0 - score
        pair = pairs.setdefault((i, j), len(pairs))
        cells[(pair, score)] += 1
        appearances[a] += 1
        appearances[b] += 1
    pair_ids = np.array(list(pairs.keys()), dtype=np.int64).reshape(-1, 2)
    cell_keys = list(cells.keys())
    return _Battles(
        models=models,
        first=pair_ids[:, 0],
        second=pair_ids[:, 1],
        cell_pair=np.array([p for p, _ in cell_keys], dtype=np.int64),
        cell_score=np.array([s for _, s in cell_keys], dtype=np.float64),
        cell_count=np.array([cells[key] for key in cell_keys], dtype=np.float64),
        appearances=dict(appearances),
    )


def _bt_objective(
    *, theta: np.ndarray, first: np.ndarray, second: np.ndarray, n: np.ndarray, s: np.ndarray, ridge: float
) -> np.ndarray:
    """Negative penalized log-likelihood per round; ``theta`` is (rounds, models), ``n`` and ``s`` (rounds, pairs)."""
    d = theta[:, first] - theta[:, second]
    # log sigma(x) = -log(1 + e^-x), computed stably with logaddexp.
    nll = s * np.logaddexp(0.0, -d) + (n - s) * np.logaddexp(0.0, d)
    return nll.sum(axis=1) + 0.5 * ridge * (theta**2).sum(axis=1)


def _bt_fit(
    *, first: np.ndarray, second: np.ndarray, n: np.ndarray, s: np.ndarray, n_models: int, ridge: float,
    max_iter: int = 100, tol: float = 1e-10,
) -> np.ndarray:
    """Ridge-penalized Bradley-Terry strengths (natural-log units) for a batch of rounds at once.

    ``n[r, p]`` battles of pair p in round r, in which the pair's first model scored ``s[r, p]`` in total (a tie
    is half a win, as in Chatbot Arena). Maximizes sum_p s log sigma(d_p) + (n - s) log sigma(-d_p) - ridge/2 |theta|^2
    with d_p = theta_first - theta_second.

    Newton's method rather than Hunter's (2004) MM iteration: MM converges linearly and its update
    W_i / sum_j n_ij / (p_i + p_j) drives a model without a win to 0 and an unbeaten one to infinity, while the
    ridge term (a Gaussian prior on theta) keeps the problem strictly convex, so Newton converges quadratically
    to a finite optimum for any data, including unbeaten models and disconnected comparison graphs.
    Since the likelihood's gradient sums to zero over the models, the optimum has sum theta = 0.
    """
    rounds = n.shape[0]
    m2 = n_models * n_models
    theta = np.zeros((rounds, n_models))
    steps = 0.5 ** np.arange(12)  # backtracking line search factors 1, 1/2, ..., 1/2048
    row = np.arange(rounds)[:, None]
    diag = np.arange(n_models) * (n_models + 1)
    f = _bt_objective(theta=theta, first=first, second=second, n=n, s=s, ridge=ridge)
    for _ in range(max_iter):
        # 1. Gradient of the objective: -(s - n sigma(d)) on the first model, + on the second, + ridge theta.
        d = theta[:, first] - theta[:, second]
        p = np.exp(-np.logaddexp(0.0, -d))  # sigma(d) without overflow for large |d|
        resid = s - n * p
        flat_first, flat_second = (row * n_models + first).ravel(), (row * n_models + second).ravel()
        grad = ridge * theta
        grad -= np.bincount(flat_first, weights=resid.ravel(), minlength=rounds * n_models).reshape(rounds, -1)
        grad += np.bincount(flat_second, weights=resid.ravel(), minlength=rounds * n_models).reshape(rounds, -1)
        # 2. Hessian: the weighted graph Laplacian sum_p n p (1 - p) (e_i - e_j)(e_i - e_j)^T plus ridge I,
        #    scattered with one bincount over the flattened (round, row, column) index.
        w = (n * p * (1.0 - p)).ravel()
        base = np.broadcast_to(row * m2, n.shape).ravel()
        fi, se = np.broadcast_to(first, n.shape).ravel(), np.broadcast_to(second, n.shape).ravel()
        index = np.concatenate([base + fi * (n_models + 1), base + se * (n_models + 1),
                                base + fi * n_models + se, base + se * n_models + fi])
        hess = np.bincount(index, weights=np.concatenate([w, w, -w, -w]), minlength=rounds * m2)
        hess = hess.reshape(rounds, m2)
        hess[:, diag] += ridge
        hess = hess.reshape(rounds, n_models, n_models)
        # 3. Newton direction, then backtrack until the Armijo condition holds (per round, all step sizes at once).
        delta = -np.linalg.solve(hess, grad[..., None])[..., 0]
        slope = (grad * delta).sum(axis=1)
        trial = theta[None] + steps[:, None, None] * delta[None]
        f_trial = np.stack([_bt_objective(theta=t, first=first, second=second, n=n, s=s, ridge=ridge) for t in trial])
        ok = f_trial <= f[None] + 1e-4 * steps[:, None] * slope[None]
        chosen = np.where(ok.any(axis=0), steps[ok.argmax(axis=0)], 0.0)
        step = chosen[:, None] * delta
        theta = theta + step
        f = np.where(chosen > 0, f_trial[ok.argmax(axis=0), np.arange(rounds)], f)
        # 4. Stop once no round moves any strength by more than ``tol``.
        if np.abs(step).max() < tol or np.abs(grad).max() < tol:
            break
    return theta


def _to_elo(*, theta: np.ndarray, models: list[str], anchor: str | None, center: float) -> np.ndarray:
    if anchor is None:
        zero = theta.mean(axis=-1, keepdims=True)
    else:
        if anchor not in models:
            raise ValueError(f"Anchor model {anchor!r} has no battles.")
        zero = theta[..., models.index(anchor)][..., None]
    return center + ELO_PER_NAT * (theta - zero)


def _pair_totals(*, data: _Battles, cell_count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-round battle counts and first-model score totals per pair, from (rounds, cells) cell counts."""
    rounds, n_pairs = cell_count.shape[0], len(data.first)
    flat = (np.arange(rounds)[:, None] * n_pairs + data.cell_pair[None]).ravel()
    size = rounds * n_pairs
    n = np.bincount(flat, weights=cell_count.ravel(), minlength=size).reshape(rounds, n_pairs)
    s = np.bincount(flat, weights=(cell_count * data.cell_score[None]).ravel(), minlength=size).reshape(rounds, n_pairs)
    return n, s


def bradley_terry(
    *, battles: Sequence[tuple[str, str, float]], anchor: str | None = None, center: float = 1000.0,
    ridge: float = 0.01,
) -> dict[str, float]:
    """Bradley-Terry ratings on the Elo scale, as on the Chatbot Arena leaderboard (Chiang et al. 2024).

    ``battles`` are ``(model_a, model_b, score_a)`` with ``score_a`` 1 for a win of model_a, 0 for a loss and 0.5
    for a tie (ties count as half a win for each side; any score in [0, 1] is accepted). Ratings are centered so
    that their mean is ``center``, or so that ``anchor`` is rated exactly ``center``. ``ridge`` is the precision of a
    Gaussian prior on the natural-log strengths (0.01: a prior s.d. of 10 nats, ~1700 Elo points), small enough not
    to matter with real data but enough to keep an unbeaten model's rating finite. Bradley & Terry (1952).
    """
    if not battles:
        return {}
    return _bt_point(data=_group_battles(battles=battles), anchor=anchor, center=center, ridge=ridge)


def _bt_point(*, data: _Battles, anchor: str | None, center: float, ridge: float) -> dict[str, float]:
    if ridge <= 0:
        raise ValueError("ridge must be positive: without it the strengths are defined only up to a constant.")
    n, s = _pair_totals(data=data, cell_count=data.cell_count[None])
    theta = _bt_fit(first=data.first, second=data.second, n=n, s=s, n_models=len(data.models), ridge=ridge)
    elo = _to_elo(theta=theta[0], models=data.models, anchor=anchor, center=center)
    return {model: float(r) for model, r in zip(data.models, elo, strict=True)}


def bradley_terry_bootstrap(
    *, battles: Sequence[tuple[str, str, float]], rounds: int = 200, seed: int = 0, ci: float = 0.95,
    anchor: str | None = None, center: float = 1000.0, ridge: float = 0.01,
) -> dict[str, Rating]:
    """Bradley-Terry ratings with bootstrap percentile intervals (Efron & Tibshirani 1993; Chatbot Arena).

    Each round resamples the battles with replacement and refits. Resampling N battles with replacement is the
    same as drawing multinomial counts over the distinct (pair, score) cells, which is what is done: the cost of a
    round then depends on the number of pairs, not of battles, and all rounds are fitted as one numpy batch.
    ``rating`` is the fit on all battles (not the bootstrap median), so it does not change with ``seed``.
    Other arguments as in ``bradley_terry``; with ``anchor`` every round is anchored, so the anchor's own interval
    is a point.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci!r}.")
    if rounds < 1:
        raise ValueError("rounds must be at least 1.")
    if not battles:
        return {}
    data = _group_battles(battles=battles)
    point = _bt_point(data=data, anchor=anchor, center=center, ridge=ridge)
    n_models, total = len(data.models), int(data.cell_count.sum())
    rng = np.random.default_rng(seed)

    # 1. Draw all rounds' cell counts up front, so the result does not depend on the batch size below.
    draws = rng.multinomial(total, data.cell_count / total, size=rounds).astype(np.float64)
    # 2. Fit in batches that keep the (batch, models, models) Hessians at about 32 MB.
    batch = max(1, min(rounds, 4_000_000 // (n_models * n_models)))
    elos = []
    for start in range(0, rounds, batch):
        n, s = _pair_totals(data=data, cell_count=draws[start:start + batch])
        theta = _bt_fit(first=data.first, second=data.second, n=n, s=s, n_models=n_models, ridge=ridge)
        elos.append(_to_elo(theta=theta, models=data.models, anchor=anchor, center=center))
    # 3. Percentile interval over the rounds.
    lower, upper = np.quantile(np.concatenate(elos), [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0], axis=0)
    return {
        model: Rating(rating=point[model], lower=float(lower[k]), upper=float(upper[k]),
                      battles=data.appearances[model])
        for k, model in enumerate(data.models)
    }


# ---------------------------------------------------------------------------------------------------------------
# Position bias
# ---------------------------------------------------------------------------------------------------------------


class PositionBias(TypedDict):
    left_share: float  # share of decisive labels that picked the response shown on the left; nan when none
    left: int  # decisive labels that picked the left response
    decisive: int  # labels with verdict A or B
    total: int  # all labels, ties and both_bad included
    p_value: float  # two-sided binomial test of left_share = 0.5


def _binomial_two_sided_p(*, k: int, n: int) -> float:
    """Two-sided p-value of k successes in n trials under p = 0.5.

    Exact for n <= 1000: the distribution is symmetric, so the outcomes at most as likely as k are the two tails
    beyond min(k, n - k) and max(k, n - k), and p = 2 P(X <= min(k, n - k)), computed with exact integers. Above
    that, the normal approximation with continuity correction, whose error is then below 1e-3 in absolute terms.
    """
    if n == 0:
        return 1.0
    if n <= 1000:
        tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1))
        return min(1.0, 2 * tail / 2**n)
    z = max(0.0, abs(k - n / 2.0) - 0.5) / math.sqrt(n / 4.0)
    return min(1.0, math.erfc(z / math.sqrt(2.0)))


def position_bias(*, labels: Iterable[tuple[str, str]]) -> PositionBias:
    """How often a rater picks the response shown on the left, from ``(shown_order, verdict)`` labels.

    ``shown_order`` "AB" means A was shown on the left, "BA" that B was. Only decisive verdicts (A or B) say
    anything about a side; ties and both_bad count in ``total`` only. With the order randomized per item, an
    unbiased rater picks left half the time whatever the responses' quality, so the test is against 0.5. (Position
    bias is well documented for LLM judges, Zheng et al. 2023, arXiv:2306.05685, and affects human raters too.)
    """
    left = decisive = total = 0
    for shown_order, verdict in labels:
        if shown_order not in ("AB", "BA"):
            raise ValueError(f"Unknown shown_order {shown_order!r}; expected 'AB' or 'BA'.")
        if verdict not in VERDICTS:
            raise ValueError(f"Unknown verdict {verdict!r}; expected one of {VERDICTS}.")
        total += 1
        if verdict in ("A", "B"):
            decisive += 1
            left += verdict == shown_order[0]
    return PositionBias(
        left_share=left / decisive if decisive else math.nan,
        left=left,
        decisive=decisive,
        total=total,
        p_value=_binomial_two_sided_p(k=left, n=decisive),
    )


def p_value_text(value: float | None) -> str:
    """A p-value as people read it: scientific notation below 0.001 (1.8e-12, never "0.0"), else three
    significant digits. The API keeps the full-precision number; this is for pages only."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value == 0:
        return "< 1e-300"
    if value < 1e-3:
        return f"{value:.1e}".replace("e-0", "e-")
    return f"{value:.3g}"
