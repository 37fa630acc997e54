"""The statistics in prefdata.stats, checked against reference packages and textbook examples (no database)."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from prefdata.stats import (
    ELO_PER_NAT,
    Aggregate,
    aggregate_verdicts,
    agreement_with_majority,
    bradley_terry,
    bradley_terry_bootstrap,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    position_bias,
    signed_strength,
)

LEVELS = ["nominal", "ordinal", "interval"]


def _as_ratings(matrix: np.ndarray) -> dict[int, dict[str, float]]:
    """Coders x units matrix with nan for missing -> {unit: {coder: value}}."""
    return {
        u: {f"coder{c}": float(matrix[c, u]) for c in range(matrix.shape[0]) if not np.isnan(matrix[c, u])}
        for u in range(matrix.shape[1])
    }


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section E: 4 coders, 12 units, missing values.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
        [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
    ]
)


# --- Krippendorff's alpha -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_alpha_matches_krippendorff_2011_worked_example(level: str, expected: float) -> None:
    alpha = krippendorff_alpha(ratings=_as_ratings(KRIPPENDORFF_2011), level=level)
    assert round(alpha, 3) == expected


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("seed", range(6))
def test_alpha_matches_reference_package_on_random_matrices_with_missing_values(level: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    coders, units = rng.integers(2, 7), rng.integers(5, 40)
    # Correlated coders on the signed -4..4 scale, so alpha is well away from 0 and the levels differ.
    truth = rng.integers(-4, 5, size=units)
    matrix = np.clip(truth[None] + rng.integers(-2, 3, size=(coders, units)), -4, 4).astype(float)
    matrix[rng.random(matrix.shape) < 0.35] = np.nan
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
    assert krippendorff_alpha(ratings=_as_ratings(matrix), level=level) == pytest.approx(expected, abs=1e-12)


def test_ordinal_alpha_uses_ranks_and_frequencies_not_spacing() -> None:
    # Krippendorff's ordinal metric depends only on the order of the values and how often each is used, so a
    # monotone but non-linear relabeling leaves it unchanged while interval alpha moves.
    rng = np.random.default_rng(7)
    matrix = np.clip(rng.integers(1, 6, size=20)[None] + rng.integers(-1, 2, size=(4, 20)), 1, 5).astype(float)
    matrix[rng.random(matrix.shape) < 0.2] = np.nan
    stretched = matrix**3
    ordinal = krippendorff_alpha(ratings=_as_ratings(matrix), level="ordinal")
    assert krippendorff_alpha(ratings=_as_ratings(stretched), level="ordinal") == pytest.approx(ordinal, abs=1e-12)
    interval = krippendorff_alpha(ratings=_as_ratings(matrix), level="interval")
    assert krippendorff_alpha(ratings=_as_ratings(stretched), level="interval") != pytest.approx(interval, abs=1e-3)


def test_alpha_ignores_singly_rated_units_and_missing_markers() -> None:
    base = {"u1": {"x": 1.0, "y": 1.0}, "u2": {"x": 2.0, "y": 3.0}, "u3": {"x": 3.0, "y": 3.0, "z": 2.0}}
    noisy = {**base, "u4": {"x": 4.0}, "u5": {"x": None, "y": 9.0}, "u6": {"x": float("nan"), "y": -9.0}, "u7": {}}
    for level in LEVELS:
        assert krippendorff_alpha(ratings=noisy, level=level) == krippendorff_alpha(ratings=base, level=level)


def test_alpha_is_nan_when_undefined() -> None:
    assert math.isnan(krippendorff_alpha(ratings={}, level="interval"))
    assert math.isnan(krippendorff_alpha(ratings={"u1": {"x": 1.0}, "u2": {"y": 2.0}}, level="interval"))
    # All pairable values equal: no expected disagreement.
    assert math.isnan(krippendorff_alpha(ratings={"u1": {"x": 2.0, "y": 2.0}, "u2": {"x": 2.0, "z": 2.0}},
                                         level="ordinal"))


def test_alpha_is_one_for_perfect_agreement_and_rejects_unknown_level() -> None:
    ratings = {"u1": {"x": -2.0, "y": -2.0}, "u2": {"x": 0.0, "y": 0.0, "z": 0.0}, "u3": {"y": 4.0, "z": 4.0}}
    for level in LEVELS:
        assert krippendorff_alpha(ratings=ratings, level=level) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(ratings=ratings, level="ratio")  # type: ignore[arg-type]


def test_signed_strength() -> None:
    assert signed_strength(verdict="A", strength=4) == -4
    assert signed_strength(verdict="B", strength=2) == 2
    assert signed_strength(verdict="A", strength=None) == -3
    assert signed_strength(verdict="B", strength=None) == 3
    assert signed_strength(verdict="tie", strength=None) == 0
    assert signed_strength(verdict="tie", strength=2) == 0
    assert signed_strength(verdict="both_bad", strength=None) is None
    with pytest.raises(ValueError):
        signed_strength(verdict="C", strength=1)
    with pytest.raises(ValueError):
        signed_strength(verdict="A", strength=5)


# --- Kappas ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    verdicts = np.array(["A", "B", "tie", "both_bad"])
    a = verdicts[rng.integers(0, 4, size=60)]
    # b copies a two times in three, so kappa is clearly positive.
    b = np.where(rng.random(60) < 0.66, a, verdicts[rng.integers(0, 4, size=60)])
    expected = cohen_kappa_score(a, b)
    assert expected > 0.2
    assert cohen_kappa(a=list(a), b=list(b)) == pytest.approx(expected, abs=1e-12)


def test_cohen_kappa_edge_cases() -> None:
    assert cohen_kappa(a=["A", "B", "A", "B"], b=["A", "B", "A", "B"]) == 1.0
    assert cohen_kappa(a=["A", "B", "A", "B"], b=["B", "A", "B", "A"]) == -1.0
    assert math.isnan(cohen_kappa(a=[], b=[]))
    assert math.isnan(cohen_kappa(a=["A", "A"], b=["A", "A"]))
    with pytest.raises(ValueError):
        cohen_kappa(a=["A"], b=["A", "B"])


def test_fleiss_kappa_wikipedia_example() -> None:
    # https://en.wikipedia.org/wiki/Fleiss%27_kappa#Worked_example: 10 subjects, 14 raters, 5 categories.
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
    ratings = [[category for category, count in enumerate(row, start=1) for _ in range(count)] for row in table]
    assert round(fleiss_kappa(ratings=ratings), 3) == 0.210


@pytest.mark.parametrize("seed", range(5))
def test_fleiss_kappa_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    items, raters = 40, int(rng.integers(2, 7))
    truth = rng.integers(0, 4, size=items)
    labels = np.where(rng.random((items, raters)) < 0.6, truth[:, None], rng.integers(0, 4, size=(items, raters)))
    expected = sm_fleiss_kappa(aggregate_raters(labels)[0], method="fleiss")
    assert fleiss_kappa(ratings=labels.tolist()) == pytest.approx(expected, abs=1e-12)


def test_fleiss_kappa_edge_cases() -> None:
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(ratings=[["A", "B"], ["A", "B", "tie"]])
    with pytest.raises(ValueError, match="at least two"):
        fleiss_kappa(ratings=[["A"], ["B"]])
    assert math.isnan(fleiss_kappa(ratings=[]))
    assert math.isnan(fleiss_kappa(ratings=[["A", "A"], ["A", "A"]]))
    assert fleiss_kappa(ratings=[["A", "A", "A"], ["B", "B", "B"]]) == pytest.approx(1.0)


# --- Agreement with the majority and aggregation --------------------------------------------------------------


def test_agreement_with_majority() -> None:
    labels = [
        # item 1: ann1's others say B, B (ann1 disagrees); ann2's and ann3's others are split A/B (skipped).
        (1, "ann1", "A"), (1, "ann2", "B"), (1, "ann3", "B"),
        # item 2: all agree on A -> every annotator agrees.
        (2, "ann1", "A"), (2, "ann2", "A"), (2, "ann3", "A"),
        # item 3: ann1 alone -> skipped for ann1.
        (3, "ann1", "tie"),
        # item 4: ann2 and ann4 each face the other's single, different label (both disagree).
        (4, "ann2", "both_bad"), (4, "ann4", "tie"),
        # item 5: ann5 is alone there and nowhere else, so ann5 is absent from the result.
        (5, "ann5", "A"),
    ]
    assert agreement_with_majority(labels=labels) == {"ann1": 0.5, "ann2": 0.5, "ann3": 1.0, "ann4": 0.0}


def test_agreement_with_majority_leaves_the_annotator_out_of_the_majority() -> None:
    # A 2-2 split: counting one's own vote would make every item a tie (all skipped); leaving it out, each
    # annotator faces a 2-1 majority for the other side.
    labels = [("i", "ann1", "A"), ("i", "ann2", "A"), ("i", "ann3", "B"), ("i", "ann4", "B")]
    assert agreement_with_majority(labels=labels) == {"ann1": 0.0, "ann2": 0.0, "ann3": 0.0, "ann4": 0.0}
    # A fifth B vote: the A voters face 3 B against 1 A; each B voter faces a 2-2 tie and is skipped.
    labels.append(("i", "ann5", "B"))
    assert agreement_with_majority(labels=labels) == {"ann1": 0.0, "ann2": 0.0}


def test_agreement_with_majority_rejects_duplicate_labels() -> None:
    with pytest.raises(ValueError, match="more than once"):
        agreement_with_majority(labels=[(1, "ann1", "A"), (1, "ann1", "B")])


def test_aggregate_plurality_and_no_majority() -> None:
    labels = [
        (1, "A", 4), (1, "A", 2), (1, "B", 1),
        (2, "A", 3), (2, "B", 3),
        (3, "tie", None), (3, "tie", None), (3, "A", 4), (3, "both_bad", None),
        (4, "B", None), (4, "B", 2), (4, "both_bad", None),
    ]
    result = aggregate_verdicts(labels=labels, weighted=False)
    assert result[1] == Aggregate(verdict="A", margin=3.0, support=2, total=3)
    assert result[2] == Aggregate(verdict=None, margin=None, support=0, total=2)
    assert result[3] == Aggregate(verdict="tie", margin=None, support=2, total=4)
    # The ungraded B vote supports B but has no strength to average.
    assert result[4] == Aggregate(verdict="B", margin=2.0, support=2, total=3)


def test_aggregate_weighted_by_strength() -> None:
    labels = [
        (1, "A", 1), (1, "A", 1), (1, "B", 4),  # 2 weak A against 1 strong B
        (2, "A", None), (2, "A", None), (2, "tie", None),  # ungraded votes weigh 1
        (3, "A", 2), (3, "tie", None), (3, "tie", None),  # A weighs 2 = two ties -> no majority
    ]
    unweighted = aggregate_verdicts(labels=labels, weighted=False)
    weighted = aggregate_verdicts(labels=labels, weighted=True)
    assert unweighted[1].verdict == "A"
    assert weighted[1] == Aggregate(verdict="B", margin=4.0, support=1, total=3)
    assert weighted[2] == unweighted[2] == Aggregate(verdict="A", margin=None, support=2, total=3)
    assert unweighted[3].verdict == "tie"
    assert weighted[3] == Aggregate(verdict=None, margin=None, support=0, total=3)


def test_aggregate_rejects_bad_labels() -> None:
    with pytest.raises(ValueError):
        aggregate_verdicts(labels=[(1, "C", None)], weighted=False)
    with pytest.raises(ValueError):
        aggregate_verdicts(labels=[(1, "A", 0)], weighted=True)


# --- Bradley-Terry --------------------------------------------------------------------------------------------

TRUE_ELO = np.array([700.0, 800.0, 880.0, 950.0, 1050.0, 1120.0, 1200.0, 1300.0])
MODELS = [f"model{k}" for k in range(len(TRUE_ELO))]


def _simulate(*, n: int, seed: int, tie_rate: float = 0.2) -> list[tuple[str, str, float]]:
    """Battles between random pairs whose expected first-model score is the Bradley-Terry probability.

    Up to ``tie_rate`` of battles are ties, most often between close models (rate ``tie_rate * 4 p (1 - p)``); the
    win probability of the rest is set so that a tie counting as half a win keeps E[score] = p = sigma(theta_a -
    theta_b), the model the fit assumes. (A flat tie rate would be impossible for lopsided pairs, p < tie_rate / 2.)
    """
    rng = np.random.default_rng(seed)
    theta = (TRUE_ELO - TRUE_ELO.mean()) / ELO_PER_NAT
    a = rng.integers(0, len(MODELS), size=n)
    b = (a + rng.integers(1, len(MODELS), size=n)) % len(MODELS)
    expected = 1.0 / (1.0 + np.exp(-(theta[a] - theta[b])))
    tie_p = tie_rate * 4 * expected * (1 - expected)
    win = (expected - tie_p / 2) / (1 - tie_p)
    tie = rng.random(n) < tie_p
    score = np.where(tie, 0.5, (rng.random(n) < win).astype(float))
    return [(MODELS[i], MODELS[j], float(s)) for i, j, s in zip(a, b, score, strict=True)]


def test_bradley_terry_recovers_simulated_strengths() -> None:
    ratings = bradley_terry(battles=_simulate(n=10_000, seed=0))
    fitted = np.array([ratings[m] for m in MODELS])
    assert sorted(ratings, key=ratings.get) == MODELS
    assert fitted.mean() == pytest.approx(1000.0)
    truth = TRUE_ELO - TRUE_ELO.mean() + 1000.0
    assert np.abs(fitted - truth).max() < 30.0
    # Differences between neighbours, not just levels, are close to the truth.
    assert np.abs(np.diff(fitted) - np.diff(truth)).max() < 40.0


def test_bradley_terry_solves_the_penalized_score_equations() -> None:
    # At the optimum each model's observed score equals its expected score minus ridge * theta (Zermelo 1929 with
    # the ridge term): this checks the fit itself, independently of the simulation.
    battles = _simulate(n=2_000, seed=3)
    ridge = 0.5
    ratings = bradley_terry(battles=battles, ridge=ridge)
    theta = {m: (r - 1000.0) / ELO_PER_NAT for m, r in ratings.items()}
    residual = dict.fromkeys(MODELS, 0.0)
    for a, b, score in battles:
        p = 1.0 / (1.0 + math.exp(-(theta[a] - theta[b])))
        residual[a] += score - p
        residual[b] -= score - p
    for model in MODELS:
        assert residual[model] == pytest.approx(ridge * theta[model], abs=1e-6)


def test_bradley_terry_anchor_and_orientation() -> None:
    battles = _simulate(n=3_000, seed=1)
    centered = bradley_terry(battles=battles)
    anchored = bradley_terry(battles=battles, anchor="model3", center=1100.0)
    assert anchored["model3"] == 1100.0
    shift = anchored["model0"] - centered["model0"]
    assert all(anchored[m] - centered[m] == pytest.approx(shift) for m in MODELS)
    # The same battles written from the other side give the same ratings.
    flipped = bradley_terry(battles=[(b, a, 1.0 - s) for a, b, s in battles])
    assert all(flipped[m] == pytest.approx(centered[m], abs=1e-6) for m in MODELS)
    with pytest.raises(ValueError, match="Anchor"):
        bradley_terry(battles=battles, anchor="nobody")


def test_bradley_terry_is_finite_for_an_unbeaten_model_and_validates_input() -> None:
    ratings = bradley_terry(battles=[("champ", "x", 1.0)] * 5 + [("champ", "y", 1.0)] * 3 + [("x", "y", 0.5)] * 4)
    assert all(math.isfinite(r) for r in ratings.values())
    assert ratings["champ"] > ratings["x"] + 300
    assert ratings["x"] == pytest.approx(ratings["y"], abs=60)
    assert bradley_terry(battles=[]) == {}
    with pytest.raises(ValueError):
        bradley_terry(battles=[("a", "a", 1.0)])
    with pytest.raises(ValueError):
        bradley_terry(battles=[("a", "b", 2.0)])


def test_bradley_terry_bootstrap_intervals_cover_estimate_and_truth() -> None:
    battles = _simulate(n=10_000, seed=2)
    result = bradley_terry_bootstrap(battles=battles, rounds=200, seed=0, ci=0.95)
    point = bradley_terry(battles=battles)
    truth = dict(zip(MODELS, TRUE_ELO - TRUE_ELO.mean() + 1000.0, strict=True))
    assert set(result) == set(MODELS)
    covered = 0
    for model, rating in result.items():
        assert rating.rating == point[model]
        assert rating.lower < rating.rating < rating.upper
        assert rating.upper - rating.lower < 100.0
        covered += rating.lower <= truth[model] <= rating.upper
    assert covered >= 6
    assert sum(r.battles for r in result.values()) == 2 * len(battles)


def test_bradley_terry_bootstrap_is_reproducible_and_anchored() -> None:
    battles = _simulate(n=1_000, seed=4)
    first = bradley_terry_bootstrap(battles=battles, rounds=50, seed=7)
    assert bradley_terry_bootstrap(battles=battles, rounds=50, seed=7) == first
    other = bradley_terry_bootstrap(battles=battles, rounds=50, seed=8)
    assert any(other[m].lower != first[m].lower for m in MODELS)
    anchored = bradley_terry_bootstrap(battles=battles, rounds=50, seed=7, anchor="model0")
    assert anchored["model0"].lower == anchored["model0"].upper == anchored["model0"].rating == 1000.0
    narrow = bradley_terry_bootstrap(battles=battles, rounds=50, seed=7, ci=0.5)
    assert all(narrow[m].upper - narrow[m].lower < first[m].upper - first[m].lower for m in MODELS)


# --- Position bias --------------------------------------------------------------------------------------------


def test_position_bias_on_a_biased_rater() -> None:
    # 70 of 100 decisive labels pick the left response (half the items shown AB, half BA), plus 20 ties.
    labels = (
        [("AB", "A")] * 35 + [("BA", "B")] * 35 + [("AB", "B")] * 15 + [("BA", "A")] * 15
        + [("AB", "tie")] * 10 + [("BA", "both_bad")] * 10
    )
    result = position_bias(labels=labels)
    assert result["left"] == 70
    assert result["decisive"] == 100
    assert result["total"] == 120
    assert result["left_share"] == pytest.approx(0.7)
    assert result["p_value"] < 1e-3


def test_position_bias_p_value_matches_scipy() -> None:
    binomtest = pytest.importorskip("scipy.stats").binomtest
    cases = [(0, 1), (1, 1), (3, 10), (10, 10), (5, 10), (60, 100), (480, 1000), (530, 1000), (1030, 2000),
             (1100, 2000), (2600, 5000)]
    for left, n in cases:
        labels = [("AB", "A")] * left + [("BA", "A")] * (n - left)
        expected = binomtest(left, n, 0.5).pvalue
        tolerance = 1e-9 if n <= 1000 else 2e-3  # exact, then the normal approximation
        assert position_bias(labels=labels)["p_value"] == pytest.approx(expected, abs=tolerance), (left, n)
    assert position_bias(labels=[("AB", "A")] * 10)["p_value"] == pytest.approx(2 / 1024)


def test_position_bias_without_decisive_labels_and_bad_input() -> None:
    result = position_bias(labels=[("AB", "tie"), ("BA", "both_bad")])
    assert math.isnan(result["left_share"])
    assert (result["decisive"], result["total"], result["p_value"]) == (0, 2, 1.0)
    with pytest.raises(ValueError):
        position_bias(labels=[("LR", "A")])
    with pytest.raises(ValueError):
        position_bias(labels=[("AB", "left")])
