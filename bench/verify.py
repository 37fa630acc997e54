"""Throughput of the verifiers: math answers per second and sandboxed code runs per second.

    .venv/bin/python bench/verify.py [--workers N]

A fixed set: 400 math answers of mixed kinds (integers, thousands separators, decimals, fractions, LaTeX,
percentages, expressions; about a third wrong) checked by a pool of worker processes, and 50 code
candidates (MBPP style, 3 asserts each; a fifth wrong) run in the bubblewrap sandbox from a pool of
threads; both pools are as large as the CPU count. Start-up (imports, the helper processes) is not timed.
The last line is ``math_per_s=... code_per_s=...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefdata.verifiers.code import code_verify  # noqa: E402
from prefdata.verifiers.math import math_verify  # noqa: E402
from prefdata.verifiers.sandbox import Limits, sandbox_status  # noqa: E402


def math_cases() -> list[tuple[str, str]]:
    """400 (response, reference) pairs, the same every run."""
    kinds = []
    for i in range(1, 51):
        kinds += [
            (f"Adding up we get {i * 37}. #### {i * 37}", str(i * 37)),
            (f"The answer is {i * 1234:,}.", str(i * 1234)),
            (f"So \\boxed{{\\frac{{{i}}}{{{i + 1}}}}}", f"{i}/{i + 1}"),
            (f"The answer is {i / 4}", f"\\frac{{{i}}}{{4}}"),
            (f"That is \\boxed{{{i}\\%}}", str(i / 100)),
            (f"\\boxed{{x^2 + {2 * i}x + {i * i}}}", f"(x+{i})^2"),
            (f"\\boxed{{{i}\\sqrt{{2}}}}", f"\\sqrt{{{2 * i * i}}}"),
            (f"We find {i + 1} apples", str(i + 2)),  # wrong
        ]
    return kinds


def code_cases() -> list[tuple[str, list[str]]]:
    """50 (candidate, tests) pairs, the same every run."""
    cases = []
    for i in range(50):
        wrong = i % 5 == 4
        body = f"    return sorted(xs)[-1] * {i}" + (" + 1" if wrong else "")
        code = f"def top_{i}(xs):\n{body}\n"
        tests = [f"assert top_{i}([1, 5, 3]) == {5 * i}", f"assert top_{i}([7]) == {7 * i}",
                 f"assert top_{i}([-2, -9]) == {-2 * i}"]
        cases.append((code, tests))
    return cases


def _math_one(case: tuple[str, str]) -> bool:
    response, reference = case
    return math_verify(response=response, reference=reference, isolate=False).correct


def _warm(_: int) -> bool:
    return math_verify(response="\\boxed{x+1}", reference="1+x", isolate=False).correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    workers = args.workers
    print(f"cpus={os.cpu_count()} workers={workers}")

    cases = math_cases()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_warm, range(workers * 2)))
        started = time.perf_counter()
        correct = list(pool.map(_math_one, cases, chunksize=8))
        math_s = time.perf_counter() - started
    print(f"math: {len(cases)} answers, {sum(correct)} correct, {math_s:.2f} s")

    status = sandbox_status()
    print(f"sandbox: {status['mode']}; missing: {status['missing'] or 'nothing'}")
    runs = code_cases()
    limits = Limits(wall_s=10.0)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda c: code_verify(code=c[0], tests=c[1], limits=limits), runs))
        code_s = time.perf_counter() - started
    print(f"code: {len(runs)} runs, {sum(r.passed for r in results)} passed, {code_s:.2f} s")
    print(f"math_per_s={len(cases) / math_s:.1f} code_per_s={len(runs) / code_s:.1f}")


if __name__ == "__main__":
    main()
