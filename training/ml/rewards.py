"""Verifiable rewards that TRL's GRPOTrainer takes directly: ``reward_funcs=[accuracy_reward, format_reward]``.

Every function has TRL's signature ``(prompts, completions, **kwargs) -> list[float | None]``: the
completions are plain strings or conversations (lists of ``{role, content}``, the last assistant turn
counts), and the dataset's other columns come as keyword lists, one value per completion (``answer`` or
``solution`` for math, ``tests`` and ``entry_point`` for code). None means "not applicable" (no reference
for that row), which TRL leaves out of the sum.

No Django: the verifiers are ``prefdata.verifiers``, shared with the workers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = [
    "accuracy_reward",
    "code_reward",
    "completion_text",
    "format_reward",
    "length_penalty",
    "make_format_reward",
    "make_length_penalty",
]

RewardFunc = Callable[..., list[float | None]]


def completion_text(completion: Any) -> str:
    """The text of one completion: a string as it is, a conversation's last assistant message (or last one)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, Sequence) and completion:
        assistant = [m for m in completion if isinstance(m, dict) and m.get("role") == "assistant"]
        last = (assistant or list(completion))[-1]
        return str(last.get("content", "")) if isinstance(last, dict) else str(last)
    return ""


def _after_thinking(text: str, tag: str = "think") -> str:
    """What follows the reasoning block, so that numbers inside the reasoning are not taken as the answer."""
    end = text.rfind(f"</{tag}>")
    return text[end + len(tag) + 3 :] if end >= 0 else text


def _column(kwargs: dict, *names: str, count: int) -> list:
    for name in names:
        values = kwargs.get(name)
        if values is not None:
            return list(values)
    return [None] * count


def accuracy_reward(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
    """1.0 when the completion's final answer equals the row's ``answer`` (or ``solution``), else 0.0.

    The answer is looked for after ``</think>`` when there is one; equivalence as in
    ``prefdata.verifiers.math`` (fractions, decimals, percentages, LaTeX, expressions), each answer bounded
    in time. None for a row without a reference.
    """
    from prefdata.verifiers.math import math_verify

    references = _column(kwargs, "answer", "solution", count=len(completions))
    rewards: list[float | None] = []
    for completion, reference in zip(completions, references, strict=True):
        if reference is None or str(reference).strip() == "":
            rewards.append(None)
            continue
        result = math_verify(response=_after_thinking(completion_text(completion)), reference=str(reference))
        rewards.append(1.0 if result.correct else 0.0)
    return rewards


def make_format_reward(*, tag: str = "think", require_answer: bool = True) -> RewardFunc:
    """A reward of 1.0 for ``<tag>reasoning</tag>`` followed by an answer (when ``require_answer``), else 0.0.

    The reasoning block must open the completion, appear once and not be empty (DeepSeek-R1's format
    reward, arXiv:2501.12948).
    """
    no_tag = rf"(?:(?!<{tag}>|</{tag}>).)"
    after = rf"\s*\S{no_tag}*" if require_answer else rf"{no_tag}*"
    pattern = re.compile(rf"^\s*<{tag}>{no_tag}*\S{no_tag}*</{tag}>{after}$", re.DOTALL)

    def format_reward(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        return [1.0 if pattern.match(completion_text(c)) else 0.0 for c in completions]

    format_reward.__doc__ = f"1.0 for <{tag}>...</{tag}> then an answer, else 0.0."
    return format_reward


format_reward = make_format_reward()


def make_partial_format_reward(*, tag: str = "think") -> RewardFunc:
    """A shaped format reward for a small model that never writes the whole format at first: 0.25 for the
    opening tag, 0.25 for the closing tag after it, and the full format reward's 1.0 when the completion has
    the whole format (``make_format_reward``). A group whose completions all score the same teaches GRPO
    nothing; partial credit gives the group a difference to learn from."""
    full = make_format_reward(tag=tag)
    opening, closing = f"<{tag}>", f"</{tag}>"

    def format_partial_reward(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        whole = full(prompts, completions)
        out: list[float | None] = []
        for completion, score in zip(completions, whole, strict=True):
            if score == 1.0:
                out.append(1.0)
                continue
            text = completion_text(completion)
            start = text.find(opening)
            out.append(0.25 * (start >= 0) + 0.25 * (start >= 0 and text.find(closing, start) > start))
        return out

    format_partial_reward.__doc__ = f"0.25 for <{tag}>, 0.25 more for </{tag}> after it, 1.0 for the whole format."
    return format_partial_reward


format_partial_reward = make_partial_format_reward()

_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.DOTALL)


def _code_of(text: str) -> str:
    """The last fenced code block of the answer, else the whole answer (after the reasoning block)."""
    text = _after_thinking(text)
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else text


def code_reward(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
    """The share of the row's ``tests`` that the completion's code passes, run in the sandbox.

    ``tests`` is MBPP style (a list of assert lines) or HumanEval style (``check(candidate)`` with the
    row's ``entry_point``). Runs in parallel, as many as CPUs. Raises ``SandboxUnavailable`` where
    bubblewrap is missing and the unsandboxed mode is not allowed (``prefdata.verifiers.sandbox``).
    """
    from prefdata.verifiers.code import code_verify

    tests = _column(kwargs, "tests", "test_list", "test", count=len(completions))
    entry_points = _column(kwargs, "entry_point", count=len(completions))

    def one(index: int) -> float | None:
        if not tests[index]:
            return None
        result = code_verify(code=_code_of(completion_text(completions[index])), tests=tests[index],
                             entry_point=entry_points[index])
        return result.pass_rate

    with ThreadPoolExecutor(max_workers=max(1, min(len(completions), os.cpu_count() or 1))) as pool:
        return list(pool.map(one, range(len(completions))))


def make_length_penalty(*, max_tokens: int = 512, scale: float = 1.0, chars_per_token: float = 4.0) -> RewardFunc:
    """0 up to ``max_tokens``, then falling linearly to ``-scale`` at twice that length (and staying there).

    Lengths are TRL's ``completion_ids`` when it passes them, else characters / ``chars_per_token``.
    """

    def length_penalty(prompts: list, completions: list, completion_ids: list | None = None,
                       **kwargs: Any) -> list[float | None]:
        penalties: list[float | None] = []
        for i, completion in enumerate(completions):
            if completion_ids is not None:
                length = float(len(completion_ids[i]))
            else:
                length = len(completion_text(completion)) / chars_per_token
            over = max(0.0, length - max_tokens) / max_tokens
            penalties.append(-scale * min(1.0, over))
        return penalties

    return length_penalty


length_penalty = make_length_penalty()
