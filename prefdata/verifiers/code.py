"""The code verifier: run a Python candidate against its tests in the sandbox (``prefdata.verifiers.sandbox``).

Two test styles:

- **MBPP**: a list of ``assert`` lines (or small blocks), each one test; optional setup code runs first.
- **HumanEval**: one source with ``def check(candidate): ...`` plus the candidate's ``entry_point``: the
  single test is ``check(<entry_point>)``.

The result is decided by the parent, not by the child's exit status: the harness receives a random nonce
on stdin (never in a file, the command line or the environment) and writes ``ok <i> <nonce>`` on the report
channel after test ``i`` passes. A candidate that exits early (``exit(0)``, ``os._exit(0)``), kills its
harness, prints "PASSED", or patches the runner (``os.write``, ``exec``, ``print``: the harness holds its
own references) cannot produce those lines. What the nonce cannot stop is a candidate written to dig it
out of the harness's own frames, or one that returns an object whose ``__eq__`` is always true: the tests
run in the candidate's interpreter. The sandbox contains such code; catching it would need the tests to
run in a process of their own.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from prefdata.verifiers.sandbox import Limits, sandbox_run

__all__ = ["CodeResult", "code_tests", "code_verify"]

# The program run in the sandbox. Keep it free of anything the candidate could reach to fake a pass: its
# references to os.write, exec and compile are taken before the candidate runs.
_HARNESS = r'''
import os, sys, json, traceback
def _main(_write=os.write, _exec=exec, _compile=compile, _exit=os._exit, _fmt=traceback.format_exc):
    fd = int(sys.argv[2])
    payload = json.loads(sys.stdin.buffer.read())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    nonce = payload.pop("nonce")
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        _exec(_compile(payload["setup"] + "\n" + payload["code"], "<candidate>", "exec"), namespace)
    except BaseException:
        sys.stderr.write(_fmt())
        sys.stderr.flush()
        _exit(3)
    for i, test in enumerate(payload["tests"]):
        try:
            _exec(_compile(test, "<test %d>" % i, "exec"), namespace)
        except BaseException:
            sys.stderr.write("test %d failed:\n%s" % (i, _fmt()))
            continue
        _write(fd, ("ok %d %s\n" % (i, nonce)).encode())
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        _exit(0)
_main()
'''


@dataclass(frozen=True)
class CodeResult:
    """The outcome of one candidate: all tests passed or not, how many, and why."""

    passed: bool
    passed_tests: int
    total_tests: int
    reason: str
    timed_out: bool
    stdout: str
    stderr: str
    wall_s: float
    sandboxed: bool
    marker: str = ""

    @property
    def pass_rate(self) -> float:
        return self.passed_tests / self.total_tests if self.total_tests else 0.0


def code_tests(*, tests: str | Sequence[str], entry_point: str | None = None) -> list[str]:
    """The tests as a list of sources: MBPP's assert lines as they are, HumanEval's ``check`` as one test.

    A string with ``def check(`` is HumanEval style and needs ``entry_point``; another string is one
    test per non-blank line when every such line is an ``assert``, else one test.
    """
    if isinstance(tests, str):
        if "def check(" in tests:
            if not entry_point:
                raise ValueError("HumanEval-style tests (def check(candidate)) need the entry_point")
            return [f"{tests}\n\ncheck({entry_point})\n"]
        lines = [line for line in tests.splitlines() if line.strip()]
        if lines and all(line.lstrip().startswith("assert") for line in lines):
            return lines
        return [tests] if tests.strip() else []
    return [test for test in tests if test.strip()]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def code_verify(*, code: str, tests: str | Sequence[str], entry_point: str | None = None, setup: str = "",
                limits: Limits | None = None, allow_unsandboxed: bool | None = None) -> CodeResult:
    """Run ``code`` then each test in the sandbox; passed when every test wrote its nonce line.

    Raises ``ValueError`` without tests, and ``SandboxUnavailable`` where bubblewrap is missing unless the
    unsandboxed mode is allowed (see ``prefdata.verifiers.sandbox``).
    """
    sources = code_tests(tests=tests, entry_point=entry_point)
    if not sources:
        raise ValueError("no tests to run")
    nonce = secrets.token_hex(16)
    payload = json.dumps({"nonce": nonce, "code": code, "setup": setup, "tests": sources}).encode()
    run = sandbox_run(code=_HARNESS, stdin=payload, limits=limits, allow_unsandboxed=allow_unsandboxed)
    passed_ids = set()
    for line in run.report.decode("utf-8", errors="replace").splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] == "ok" and parts[2] == nonce and parts[1].isdigit():
            passed_ids.add(int(parts[1]))
    passed_tests = len(passed_ids & set(range(len(sources))))
    stderr = run.stderr.decode("utf-8", errors="replace")
    all_passed = passed_tests == len(sources)
    if all_passed:
        reason = "passed"
    elif run.timed_out:
        reason = f"timeout after {(limits or Limits()).wall_s:g} s"
    elif run.returncode == 3:
        reason = f"candidate does not load: {_last_line(stderr)}"
    elif run.returncode != 0:
        reason = f"exited with status {run.returncode} after {passed_tests}/{len(sources)} tests: " \
                 f"{_last_line(stderr)}".rstrip(": ")
    else:
        reason = f"{passed_tests}/{len(sources)} tests passed: {_last_line(stderr)}".rstrip(": ")
    return CodeResult(passed=all_passed, passed_tests=passed_tests, total_tests=len(sources), reason=reason,
                      timed_out=run.timed_out, stdout=run.stdout.decode("utf-8", errors="replace"),
                      stderr=stderr, wall_s=run.wall_s, sandboxed=run.sandboxed,
                      marker=run.marker)
