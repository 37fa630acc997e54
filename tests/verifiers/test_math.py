"""The math verifier on hand-written cases: tricky equivalences, extraction rules, malformed answers."""

from __future__ import annotations

import threading
import time

import pytest

from prefdata.verifiers.math import answer_extract, math_verify, reference_answer


@pytest.mark.parametrize(("response", "reference"), [
    ("The answer is 0.5.", "1/2"),
    ("The answer is 0.5.", "\\frac{1}{2}"),
    ("so \\boxed{\\frac12}", "0.5"),
    ("\\boxed{\\dfrac{1}{2}}", "0.5"),
    ("\\boxed{50\\%}", "0.5"),
    ("That is 50%.", "50"),
    ("#### 1,000", "1000"),
    ("The answer is 1000", "1,000"),
    ("\\boxed{-0}", "0"),
    ("\\boxed{x=3}", "3"),
    ("\\boxed{\\text{(B)}}", "B"),
    ("\\boxed{\\$12.50}", "12.5"),
    ("It weighs 5 cm", "5"),
    ("answer: 42 apples", "42"),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{\\sqrt{2}}{2}"),
    ("\\boxed{x^2+2x+1}", "(x+1)^2"),
    ("The answer is 0.333333", "1/3"),
    ("\\boxed{\\frac{a}{\\frac{b}{c}}}", "\\frac{ac}{b}"),
    ("We get 6 and then 7. The answer is 7.", "#### 7"),
    ("Step one ... \\boxed{12} and so", "The total is 3 * 4 = \\boxed{12}."),
])
def test_equivalent_answers_are_correct(response, reference):
    result = math_verify(response=response, reference=reference)
    assert result.correct, result


@pytest.mark.parametrize(("response", "reference"), [
    ("The answer is 0.5", "0.25"),
    ("\\boxed{3}", "#### 4"),
    ("\\boxed{1001}", "1,000"),
    ("\\boxed{x^2+1}", "(x+1)^2"),
    ("\\boxed{\\text{(A)}}", "B"),
    ("\\boxed{51\\%}", "0.5"),
])
def test_different_answers_are_wrong(response, reference):
    result = math_verify(response=response, reference=reference)
    assert not result.correct, result


def test_extraction_rules_in_order():
    assert answer_extract("x \\boxed{\\frac{1}{\\sqrt{2}}} y") == ("\\frac{1}{\\sqrt{2}}", "boxed")
    assert answer_extract("\\boxed{1} then \\boxed{{2}}")[0] == "{2}"
    assert answer_extract("work\n#### 72\n") == ("72", "####")
    assert answer_extract("So the final answer is 3.5. Done 9") == ("3.5", "answer is")
    assert answer_extract("we had 3 then 4.25 left") == ("4.25", "last number")
    assert reference_answer("a solution \\boxed{7}") == "7"
    assert reference_answer("48/2 = 24\n#### 24") == "24"


@pytest.mark.parametrize(("response", "reason"), [
    ("", "no answer found"),
    ("I do not know.", "no answer found"),
    ("\\boxed{\\frac{1}{2}", "unbalanced braces in \\boxed"),
])
def test_malformed_answers_are_wrong_with_a_reason(response, reason):
    result = math_verify(response=response, reference="1/2")
    assert not result.correct
    assert result.reason == reason


@pytest.mark.parametrize("response", [
    "\\boxed{9^{9^{9^{9}}}}",
    "The answer is 9**9**9**9",
    "\\boxed{10^{10^{10}}}",
    "\\boxed{100000!}",
    "\\boxed{" + "(" * 300 + "1" + ")" * 300 + "}",
])
@pytest.mark.parametrize("isolate", [True, False])
def test_huge_or_pathological_answers_do_not_hang(response, isolate):
    started = time.monotonic()
    # The reference 2 is none of them (a reference of 1 would equal the nested parentheses around 1).
    result = math_verify(response=response, reference="2", timeout_s=3.0, isolate=isolate)
    assert not result.correct
    # Bounded: refused by the size check or by the 3 s budget (plus the helper's 1 s grace).
    assert time.monotonic() - started < 10


def test_the_time_budget_interrupts_a_slow_comparison():
    # A symbolic comparison takes tens of milliseconds; a budget of 1 ms cannot hold it. ("x(x+2)" is outside
    # the identity fast path, which could read it as a function call.)
    result = math_verify(response="\\boxed{x(x+2)+1}", reference="(x+1)^2", timeout_s=0.001)
    assert not result.correct
    assert "timeout" in result.reason
    # The helper process was replaced: the next answer is checked normally.
    assert math_verify(response="\\boxed{x(x+2)+1}", reference="(x+1)^2").correct


def test_works_off_the_main_thread():
    results = {}

    def check(isolate):
        results[isolate] = math_verify(response="\\boxed{2\\sqrt{2}}", reference="\\sqrt{8}", isolate=isolate)

    threads = [threading.Thread(target=check, args=(flag,)) for flag in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results[True].correct and results[False].correct


@pytest.mark.parametrize(("response", "reference"), [
    ("\\boxed{x^2 + 14x + 49}", "(x+7)^2"),
    ("\\boxed{\\frac{x^2-1}{x-1}}", "x+1"),
    ("\\boxed{\\left(a+b\\right)^{3}}", "a^3+3a^2b+3a\\cdot b^2+b^3"),
    ("\\boxed{\\dfrac{2x}{4}}", "x\\cdot\\frac{1}{2}"),
])
def test_rational_functions_are_identified_at_random_points(response, reference):
    result = math_verify(response=response, reference=reference)
    assert result.correct, result
    assert result.reason == "boxed: identity at random points"


@pytest.mark.parametrize(("response", "reference"), [
    ("\\boxed{x^2}", "x"),  # agree at 0 and 1
    ("\\boxed{(x-1)(x-2)(x-3)+x}", "x"),  # agree at 1, 2 and 3
    ("\\boxed{x^2 + 14x + 48}", "(x+7)^2"),
    ("\\boxed{xy+1}", "x+1"),
    ("\\boxed{(x+1)^{2}y}", "(x+1)^2"),
])
def test_polynomials_that_agree_at_some_points_are_told_apart(response, reference):
    result = math_verify(response=response, reference=reference)
    assert not result.correct, result


def test_what_latex2sympy_reads_otherwise_goes_to_math_verify():
    # "2(3)" is 5 and "2\frac{1}{2}" a mixed number to latex2sympy, "x/2x" is x/(2x), "s(t)" a function;
    # a side that is a constant or a lone variable is compared by math-verify's own rules.
    from prefdata.verifiers.math import _identity_compare

    assert _identity_compare("x^2+2x+1", "(x+1)^2") is True
    assert _identity_compare("x^2+2x+2", "(x+1)^2") is False
    for answer, reference in [("x/2x", "1/2"), ("2(x)", "2x"), ("2\\frac{x}{2}", "x"), ("s(t)", "st"),
                              ("x^23", "x^2\\cdot 3"), ("2^3^x", "8^x"), ("\\sqrt{x^2}", "x"),
                              ("(x+1)^2-x^2-2x", "1"), ("x+y-y", "x"), ("1.5x", "3x/2"), ("x^{1/2}", "x")]:
        assert _identity_compare(answer, reference) is None, (answer, reference)
