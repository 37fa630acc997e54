"""Verifiers of verifiable rewards, with no Django (workers and training scripts share them).

- ``prefdata.verifiers.math``: the final answer of a response and whether it equals the reference.
- ``prefdata.verifiers.code``: a Python candidate run against its tests in the sandbox of
  ``prefdata.verifiers.sandbox`` (bubblewrap, resource limits, wall clock).
- ``pass_at_k``: the unbiased pass@k estimator.

The submodules are imported on use: ``math`` pulls in sympy, which a web process need not load.
"""

from __future__ import annotations

__all__ = ["pass_at_k"]


def pass_at_k(*, n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k from ``n`` samples of which ``c`` are correct.

    Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", arXiv:2107.03374, eq. 1):
    pass@k = 1 - C(n - c, k) / C(n, k), the chance that k samples drawn without replacement from the n
    include a correct one. Computed as a product, 1 - prod_{i=n-c+1}^{n} (1 - k / i), which never forms
    the huge binomials (their numerically stable form, from the paper's Figure 3).
    """
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need n >= 1, 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product
