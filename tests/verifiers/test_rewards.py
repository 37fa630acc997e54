"""TRL reward functions: accuracy, format, code tests and length penalty, on plain and conversational completions."""

from __future__ import annotations

import shutil

import pytest

from training.ml.rewards import (
    accuracy_reward,
    code_reward,
    completion_text,
    format_reward,
    length_penalty,
    make_format_reward,
    make_length_penalty,
)


def conversation(text):
    return [{"role": "assistant", "content": text}]


def test_completion_text_of_plain_and_conversational():
    assert completion_text("hi") == "hi"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"
    assert completion_text([]) == ""


def test_accuracy_reward_against_answer_and_solution_columns():
    completions = ["<think>2+2 is 4, not 5</think> The answer is \\boxed{4}", conversation("It is 0.5"), "I give up",
                   "no reference here"]
    prompts = ["q"] * 4
    assert accuracy_reward(prompts, completions, answer=["4", "\\frac{1}{2}", "7", None]) == [1.0, 1.0, 0.0, None]
    assert accuracy_reward(prompts[:1], ["\\boxed{4}"], solution=["so \\boxed{4}"]) == [1.0]


def test_accuracy_reward_ignores_numbers_inside_the_reasoning():
    # The last number overall is inside <think>; after it the answer is 3.
    assert accuracy_reward(["q"], ["<think>maybe 5</think> 3"], answer=["5"]) == [0.0]


def test_format_reward():
    completions = ["<think>reason</think> 42", conversation("<think>\nsteps\n</think>\n\\boxed{1}"), "42",
                   "<think></think> 42", "<think>a</think>", "<think>a</think><think>b</think> 1",
                   "x <think>a</think> 1"]
    assert format_reward(["q"] * 7, completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert make_format_reward(tag="reasoning", require_answer=False)(["q"], ["<reasoning>r</reasoning>"]) == [1.0]


def test_length_penalty_by_tokens_and_characters():
    assert length_penalty(["q"] * 3, ["a", "b", "c"], completion_ids=[[0] * 100, [0] * 768, [0] * 5000]) == [
        0.0, -0.5, -1.0]
    penalty = make_length_penalty(max_tokens=10, scale=2.0, chars_per_token=1.0)
    assert penalty(["q", "q"], ["x" * 10, conversation("x" * 15)]) == [0.0, -1.0]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
def test_code_reward_runs_the_tests_in_the_sandbox():
    completions = [
        "<think>double it</think>\n```python\ndef f(x):\n    return 2 * x\n```",
        conversation("```python\ndef f(x):\n    return x + 1\n```"),
        "def f(x):\n    return 2 * x\n",
        "no code",
    ]
    tests = [["assert f(1) == 2", "assert f(3) == 6"]] * 3 + [None]
    assert code_reward(["q"] * 4, completions, tests=tests) == [1.0, 0.5, 1.0, None]
    humaneval = "def check(candidate):\n    assert candidate(4) == 8\n"
    assert code_reward(["q"], ["def g(x):\n    return x * 2\n"], tests=[humaneval], entry_point=["g"]) == [1.0]


def test_the_partial_format_reward_pays_each_tag_on_the_way_to_the_whole_format():
    from training.ml.rewards import format_partial_reward

    completions = ["just an answer", "<think> started", "<think> why </think>", "<think>why</think> 42",
                   "</think> before <think>"]
    assert format_partial_reward([None] * 5, completions) == [0.0, 0.25, 0.5, 1.0, 0.25]
