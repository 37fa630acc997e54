"""Verification of what synthesis jobs sample: a reasoning trace against its problem (math answer or code
tests), pass@k of a problem's samples, and the pieces of Math-Shepherd rollouts (the prompt that continues a
partial solution, the reference answer of a solution)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from prefdata.verifiers import pass_at_k

_THINK_END = "</think>"
_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def trace_answer(text: str) -> str:
    """The part of a trace after its thinking: what follows the last ``</think>`` (the whole text without one)."""
    return text.rsplit(_THINK_END, 1)[1] if _THINK_END in text else text


def code_extract(text: str) -> str:
    """The candidate program of an answer: its last fenced code block, else the answer as it is."""
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else text


def trace_verify(*, problem, text: str) -> dict:  # noqa: ANN001 - a synth.models.Problem
    """Whether a trace solves ``problem``: {"correct", "reason", "think"} plus "extracted" (math) or
    "passed_tests", "total_tests", "sandboxed" (code). Math: the final answer after the thinking against the
    reference; code: the answer's program against the tests in the sandbox (a HumanEval answer that gives
    only the body is put after the problem's prompt, as HumanEval completes it)."""
    answer = trace_answer(text)
    think = "<think>" in text and _THINK_END in text
    if problem.tests is None:
        from prefdata.verifiers.math import math_verify

        result = math_verify(response=answer, reference=problem.answer)
        return {"correct": result.correct, "extracted": result.extracted, "reason": result.reason, "think": think}
    from prefdata.verifiers.code import code_verify

    code = code_extract(answer)
    entry = problem.entry_point or None
    if entry and not re.search(rf"\bdef\s+{re.escape(entry)}\s*\(", code):
        code = problem.question + code
    outcome = code_verify(code=code, tests=problem.tests, entry_point=entry,
                          setup=(problem.metadata or {}).get("setup", ""))
    return {"correct": outcome.passed, "passed_tests": outcome.passed_tests, "total_tests": outcome.total_tests,
            "reason": outcome.reason[:300], "sandboxed": outcome.sandboxed, "think": think}


def pass_rates(*, n: int, c: int) -> dict:
    """A problem's samples: {"n", "c", "pass@1", "pass@<n>"} by the unbiased estimator."""
    rates = {"n": n, "c": c}
    for k in sorted({1, n}):
        rates[f"pass@{k}"] = round(pass_at_k(n=n, c=c, k=k), 6)
    return rates


def pass_rates_mean(per_problem: Sequence[dict]) -> dict:
    """The job's pass@k: each pass@k averaged over the problems that have it, with how many problems."""
    if not per_problem:
        return {"problems": 0}
    names = sorted({k for rates in per_problem for k in rates if k.startswith("pass@")},
                   key=lambda name: int(name[5:]))
    mean = {"problems": len(per_problem)}
    for name in names:
        values = [rates[name] for rates in per_problem if name in rates]
        mean[name] = round(sum(values) / len(values), 6)
    return mean


def rollout_prompt(*, problem: str, steps: Sequence[str]) -> str:
    """The request that continues a partial solution to its final answer (a Math-Shepherd rollout): chat
    endpoints cannot be made to continue an assistant turn everywhere, so the prefix is given in the user turn."""
    prefix = "\n\n".join(steps)
    return (f"{problem}\n\nHere is the beginning of a solution:\n\n{prefix}\n\nContinue this solution from where "
            f"it stops, without repeating it, and end with: The answer is <answer>.")


def step_item_reference(item) -> str:  # noqa: ANN001 - an annotate.models.StepItem
    """The reference answer of a solution: the item's own, else its prompt's metadata "answer", else the
    answer of the problem its prompt links to (metadata "problem"); "" when none."""
    if item.reference_answer.strip():
        return item.reference_answer.strip()
    metadata = item.prompt.metadata or {}
    if str(metadata.get("answer") or "").strip():
        return str(metadata["answer"]).strip()
    if metadata.get("problem"):
        from synth.models import Problem

        answer = Problem.objects.filter(pk=metadata["problem"]).values_list("answer", flat=True).first()
        return (answer or "").strip()
    return ""
