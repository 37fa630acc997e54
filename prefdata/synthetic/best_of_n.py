"""Best-of-N rejection sampling: how the best score grows with N, and how far it moves from the policy.

The curve is read from the same samples by subsampling (Nakano et al. 2021, WebGPT, appendix; Gao et al.
2023, "Scaling laws for reward model overoptimization"): from n scored samples of a prompt, the expected
maximum over a subset of k drawn without replacement is, with the scores sorted ascending s_1 <= ... <= s_n,

    E[max of k] = sum over i = k..n of C(i-1, k-1) / C(n, k) * s_i

(s_i is the maximum exactly when it and k-1 of the i-1 lower samples are drawn). This is unbiased for the
best-of-k score of the policy and uses every sample, unlike one draw of k.

The KL divergence of the best-of-N policy from the sampling policy is at most log N - (N-1)/N (Stiennon et
al. 2020; the bound is tight for continuous scores, Beirami et al. 2024).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def expected_best(scores: Sequence[float], k: int) -> float:
    """The unbiased estimate of the mean best score of k samples, from these n >= k samples."""
    n = len(scores)
    if not 1 <= k <= n:
        raise ValueError(f"k: expected 1 <= k <= {n}, not {k}")
    ordered = sorted(scores)
    total = math.comb(n, k)
    return sum(math.comb(i - 1, k - 1) * ordered[i - 1] for i in range(k, n + 1)) / total


def kl_bound(n: int) -> float:
    """The KL divergence bound of best-of-n sampling: log n - (n - 1) / n (0 for n = 1)."""
    if n < 1:
        raise ValueError("n: expected at least 1")
    return math.log(n) - (n - 1) / n


def best_of_n_curve(scores_per_prompt: Sequence[Sequence[float]]) -> list[dict[str, float]]:
    """For k = 1..N (N: the fewest samples any prompt has), the mean over prompts of the expected best
    score of k samples, with the KL bound of each k. Empty when there is no scored prompt."""
    rows = [list(s) for s in scores_per_prompt if s]
    if not rows:
        return []
    n = min(len(s) for s in rows)
    return [{"n": k, "mean_best": sum(expected_best(s, k) for s in rows) / len(rows), "kl_bound": kl_bound(k)}
            for k in range(1, n + 1)]
