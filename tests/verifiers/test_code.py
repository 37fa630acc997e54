"""The code verifier's test styles and refusal without a sandbox, and the pass@k estimator."""

from __future__ import annotations

import math
import shutil

import pytest

from prefdata.verifiers import pass_at_k
from prefdata.verifiers import sandbox as sandbox_module
from prefdata.verifiers.code import code_tests, code_verify
from prefdata.verifiers.sandbox import Limits, SandboxUnavailable, sandbox_status

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
LIMITS = Limits(wall_s=5.0)
HUMANEVAL = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-1) == -2\n"


def test_code_tests_styles():
    assert code_tests(tests=["assert f(1) == 2", "  "]) == ["assert f(1) == 2"]
    assert code_tests(tests="assert f(1) == 2\nassert f(2) == 4\n") == ["assert f(1) == 2", "assert f(2) == 4"]
    assert code_tests(tests=HUMANEVAL, entry_point="double") == [f"{HUMANEVAL}\n\ncheck(double)\n"]
    with pytest.raises(ValueError, match="entry_point"):
        code_tests(tests=HUMANEVAL)


@needs_bwrap
def test_mbpp_partial_and_full_pass():
    good = code_verify(code="def f(x):\n    return 2 * x\n", tests=["assert f(1) == 2", "assert f(3) == 6"],
                       limits=LIMITS)
    assert good.passed and good.pass_rate == 1.0 and good.reason == "passed"
    half = code_verify(code="def f(x):\n    return x + 1\n", tests=["assert f(1) == 2", "assert f(3) == 6"],
                       limits=LIMITS)
    assert not half.passed and half.passed_tests == 1 and half.total_tests == 2
    assert "AssertionError" in half.reason


@needs_bwrap
def test_humaneval_check_and_setup_code():
    assert code_verify(code="def double(x):\n    return x * 2\n", tests=HUMANEVAL, entry_point="double",
                       limits=LIMITS).passed
    assert not code_verify(code="def double(x):\n    return abs(x) * 2\n", tests=HUMANEVAL, entry_point="double",
                           limits=LIMITS).passed
    with_setup = code_verify(code="def f():\n    return K\n", tests=["assert f() == 5"], setup="K = 5",
                             limits=LIMITS)
    assert with_setup.passed


@needs_bwrap
def test_syntax_error_is_reported():
    result = code_verify(code="def f(:\n", tests=["assert f() == 1"], limits=LIMITS)
    assert not result.passed and result.reason.startswith("candidate does not load: SyntaxError")


def test_refuses_without_bwrap_unless_allowed(monkeypatch, tmp_path):
    real_which = shutil.which
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    monkeypatch.delenv("PREFDATA_ALLOW_UNSANDBOXED", raising=False)
    sandbox_module._bwrap_works.cache_clear()
    try:
        status = sandbox_status()
        assert status["mode"] == "refused"
        assert any("no network" in line for line in status["missing"])
        with pytest.raises(SandboxUnavailable, match="not installed"):
            code_verify(code="def f():\n    return 1\n", tests=["assert f() == 1"])
        result = code_verify(code="def f():\n    return 1\n", tests=["assert f() == 1"], allow_unsandboxed=True,
                             limits=LIMITS)
        assert result.passed and not result.sandboxed
        monkeypatch.setenv("PREFDATA_ALLOW_UNSANDBOXED", "1")
        assert sandbox_status()["mode"] == "unsandboxed"
    finally:
        sandbox_module._bwrap_works.cache_clear()


@needs_bwrap
def test_status_lists_the_sandbox_protections():
    status = sandbox_status()
    assert status["mode"] == "sandbox" and status["problem"] is None
    assert any("no network" in line for line in status["protections"])


@pytest.mark.parametrize(("n", "c", "k"), [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (10, 0, 10), (20, 19, 2),
                                           (200, 17, 100), (5, 5, 3)])
def test_pass_at_k_matches_the_closed_form(n, c, k):
    expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n=n, c=c, k=k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_simple_values_and_errors():
    assert pass_at_k(n=10, c=3, k=1) == pytest.approx(0.3)
    assert pass_at_k(n=4, c=2, k=3) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(n=3, c=4, k=1)
    with pytest.raises(ValueError):
        pass_at_k(n=3, c=1, k=4)
