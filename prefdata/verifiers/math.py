"""The math verifier: the final answer of a response, and whether it equals the reference.

1. **Extract** the final answer of the response: the last ``\\boxed{...}`` (nested braces counted), else the
   text after the last GSM8K ``####``, else what follows the last "The answer is", else the last number.
   A reference is reduced the same way when it is a whole solution (a ``\\boxed{}`` or ``####`` in it),
   else taken as it is.
2. **Fast path**: when both sides are plain numbers once thousands separators, ``$``, percent signs and
   units are stripped, they are compared exactly as fractions (integers decide both ways; a decimal that
   differs goes on to step 3, whose float rounding forgives 0.333333 against 1/3). A percentage p% matches
   a reference of p or of p/100.
   **Identities**: when both sides are polynomials or rational functions with integer coefficients in a
   strict LaTeX subset (``x^2 + 14x + 49`` against ``(x+7)^2``), both are evaluated exactly at random
   rational points, which decides in well under a millisecond what math-verify takes ~100 ms for (section 2b).
3. **math-verify** (HuggingFace) parses both sides as LaTeX or plain expressions into sympy and compares
   them (numerically, symbolically, sets, intervals, equations such as ``x=3`` against ``3``); when it
   cannot parse a side, sympy's ``parse_expr``; at last, the normalized strings. Parses are memoised, so a
   reference is parsed once for all its candidates.

Bounds. An answer longer than ``MAX_ANSWER_CHARS`` is refused. Numbers whose size would explode in C code
(``9^{9^{9^9}}``, ``100000!``), where no Python signal can interrupt, are refused before sympy evaluates
anything (``_too_large``). The rest of the work has a wall-clock budget: by default it runs in a helper
process per calling thread (``_Checker``), killed and replaced when it overruns, so the budget holds on any
thread and even inside C code; with ``isolate=False`` it runs in the caller, bounded by ``SIGALRM`` on the
main thread and only by the size checks on other threads (math-verify's own timeouts use ``signal.alarm``,
which raises off the main thread, so they are always off here).
"""

from __future__ import annotations

import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from multiprocessing.connection import Connection
from pathlib import Path

__all__ = ["MAX_ANSWER_CHARS", "MathResult", "answer_extract", "math_verify", "reference_answer"]

MAX_ANSWER_CHARS = 1000
# Numbers with more digits than this are not computed (about 4 KB of digits: any real answer is smaller).
MAX_DIGITS = 10_000


@dataclass(frozen=True)
class MathResult:
    """The outcome of one check: ``correct``, the answer found in the response, and why."""

    correct: bool
    extracted: str
    reason: str

    def as_dict(self) -> dict:
        return {"correct": self.correct, "extracted": self.extracted, "reason": self.reason}


class _Timeout(BaseException):
    """Raised by the alarm: a BaseException, so that math-verify's and sympy's ``except Exception`` let it by."""


# -- 1. extraction ------------------------------------------------------------------------------------------

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_GSM8K = re.compile(r"####\s*(.+)")
_ANSWER_IS = re.compile(r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*:?\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")


def _braced(text: str, start: int) -> str | None:
    """The content of the ``{...}`` group opening at ``text[start]``, nested braces counted; None if unbalanced."""
    depth = 0
    for i in range(start, len(text)):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            continue
        if char == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif char == "}" and (i == 0 or text[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def _last_boxed(text: str) -> tuple[str | None, bool]:
    """(content of the last ``\\boxed``, whether a ``\\boxed`` was there at all)."""
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None, False
    end = matches[-1].end()
    if end < len(text) and text[end] == "{":
        return _braced(text, end), True
    # "\boxed 5": the next token.
    token = re.match(r"[^\s$]+", text[end:])
    return (token.group(0) if token else None), True


def _sentence_end(text: str) -> str:
    """``text`` up to its end of line or the end of its first sentence (a period not inside a number)."""
    line = text.split("\n", 1)[0]
    cut = re.search(r"\.(?:\s|$)", line)
    return (line[: cut.start()] if cut else line).strip()


def answer_extract(text: str) -> tuple[str | None, str]:
    """The final answer of ``text`` and the rule that found it ("boxed", "####", "answer is", "last number").

    None, with the reason, when there is none ("no answer found") or a ``\\boxed{`` never closes
    ("unbalanced braces").
    """
    boxed, had_box = _last_boxed(text)
    if boxed is not None:
        return boxed.strip(), "boxed"
    if had_box:
        return None, "unbalanced braces in \\boxed"
    found = _GSM8K.findall(text)
    if found:
        return found[-1].strip(), "####"
    found = _ANSWER_IS.findall(text)
    if found:
        answer = _sentence_end(found[-1]).strip(" $")
        if answer:
            return answer, "answer is"
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].strip(), "last number"
    return None, "no answer found"


def reference_answer(reference: str) -> str:
    """The reference's final answer: its last ``\\boxed{}`` or ``####`` part when it is a solution, else itself."""
    boxed, _ = _last_boxed(reference)
    if boxed is not None:
        return boxed.strip()
    found = _GSM8K.findall(reference)
    if found:
        return found[-1].strip()
    return reference.strip()


# -- 2. the numeric fast path -------------------------------------------------------------------------------

_UNIT_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{\s*[a-zA-Z ]*\}")
_PLAIN_NUMBER = re.compile(r"-?(?:\d{1,50}(?:\.\d{1,50})?|\.\d{1,50})")


def _strip_decoration(text: str) -> str:
    """Drop what never changes a number's value: ``$``, ``\\$``, ``\\!``, ``\\,``, spaces, units, thousands commas."""
    text = text.strip().strip(".")
    text = _UNIT_TEXT.sub("", text)
    for junk in ("\\$", "$", "\\!", "\\,", "\\;", "\\ ", "\\left", "\\right"):
        text = text.replace(junk, "")
    text = re.sub(r"(?<=\d),(?=\d{3}(?:\D|$))", "", text)
    # Trailing words are units ("5 cm", "12 apples"); a leading "x =" is the variable being answered.
    text = re.sub(r"(?<=[\d%])\s*[a-zA-Z][a-zA-Z. ]*$", "", text)
    text = re.sub(r"^[a-zA-Z]\s*=\s*", "", text)
    return text.replace(" ", "")


def _as_fraction(text: str) -> tuple[Fraction, bool, bool] | None:
    """(value, is a percentage, is exact) when ``text`` is a plain number, a/b, \\frac{a}{b} or p%; else None."""
    text = _strip_decoration(text)
    percent = text.endswith(("\\%", "%"))
    if percent:
        text = text.removesuffix("%").removesuffix("\\")
    frac = re.fullmatch(r"(-?)\\[dt]?frac\{?(\d{1,50})\}?\{?(\d{1,50})\}?", text)
    if frac:
        sign, num, den = frac.groups()
        if int(den) == 0:
            return None
        return Fraction(int(num), int(den)) * (-1 if sign else 1), percent, True
    parts = text.split("/")
    if len(parts) == 2 and all(_PLAIN_NUMBER.fullmatch(p) for p in parts) and "." not in text:
        if int(parts[1]) == 0:
            return None
        return Fraction(int(parts[0]), int(parts[1])), percent, True
    if _PLAIN_NUMBER.fullmatch(text):
        return Fraction(text), percent, "." not in text
    return None


def _numeric_compare(answer: str, reference: str) -> bool | None:
    """True or False when the fast path decides, None when math-verify must (see the module docstring)."""
    got, want = _as_fraction(answer), _as_fraction(reference)
    if got is None or want is None:
        return None
    (value, percent, exact), (target, ref_percent, ref_exact) = got, want
    candidates = {value}
    if percent and not ref_percent:
        candidates.add(value / 100)
    if ref_percent and not percent:
        target_options = {target, target / 100}
    else:
        target_options = {target}
    if candidates & target_options:
        return True
    return False if exact and ref_exact else None


# -- 2b. the identity fast path -------------------------------------------------------------------------------
#
# Polynomials and rational functions with integer coefficients (``x^2 + 14x + 49`` against ``(x+7)^2``) are
# where math-verify spends its time: about 50 ms parsing LaTeX with ANTLR and as much again in ``simplify``.
# Two such functions are equal iff they agree everywhere, and a nonzero rational function of degree d
# vanishes at a random point with probability at most d/|S| (Schwartz-Zippel), so evaluating both sides
# exactly (``Fraction``) at a few random rational points decides almost surely, in well under a millisecond.
# The grammar is a strict subset on which our reading matches latex2sympy's; anything else ("2(3)" is 5 to
# latex2sympy, "s(t)" a function, "x/2x" is x/(2x), "a b c" is a), a side that is a constant or a single
# variable as a function (math-verify compares those by other rules), or an inconclusive evaluation, goes on
# to math-verify.

_VARIABLES = frozenset("abcdfghklmnpqrstuvwxyz")  # no e, i, j (constants to latex2sympy) nor o
_IDENTITY_POINTS = 4
_MAX_BITS = 20_000
_MAX_EXPONENT = 1000
_MAX_DEPTH = 50


class _NotMine(Exception):
    """The text is outside the fast path's grammar, or its evaluation is out of bounds: math-verify decides."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "var", "frac", or the character itself: + - * / ^ ( ) { }
    text: str
    spaced: bool  # preceded by whitespace


_COMMANDS = {"\\frac": "frac", "\\dfrac": "frac", "\\tfrac": "frac", "\\cdot": "*", "\\times": "*",
             "\\left(": "(", "\\right)": ")"}


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, spaced = 0, False
    while i < len(text):
        char = text[i]
        if char.isspace():
            i, spaced = i + 1, True
            continue
        if char.isdigit():
            end = i
            while end < len(text) and text[end].isdigit():
                end += 1
            token, i = _Token("num", text[i:end], spaced), end
        elif char in _VARIABLES:
            following = text[i + 1 : i + 2]
            if following.isalpha() or following == "(":  # "pi", "dx", "sin"; "s(t)" is a function call
                raise _NotMine
            token, i = _Token("var", char, spaced), i + 1
        elif char in "+-*/^(){}":
            if text.startswith("**", i):
                raise _NotMine
            token, i = _Token(char, char, spaced), i + 1
        elif char == "\\":
            name = next((name for name in _COMMANDS if text.startswith(name, i)), None)
            if name is None or (name[-1].isalpha() and text[i + len(name) : i + len(name) + 1].isalpha()):
                raise _NotMine
            token, i = _Token(_COMMANDS[name], name, spaced), i + len(name)
        else:
            raise _NotMine
        tokens.append(token)
        spaced = False
    return tokens


class _Reader:
    """Recursive descent over the tokens into a tree of tuples: ("num", n), ("var", v), ("neg", a),
    ("add", a, b), ("sub", a, b), ("mul", a, b), ("div", a, b), ("pow", a, b)."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens, self.at, self.depth = tokens, 0, 0

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, kind: str) -> _Token:
        token = self.peek()
        if token is None or token.kind != kind:
            raise _NotMine
        self.at += 1
        return token

    def whole(self) -> tuple:
        tree = self.expr()
        if self.peek() is not None:
            raise _NotMine
        return tree

    def expr(self) -> tuple:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _NotMine
        token = self.peek()
        negate = token is not None and token.kind == "-"
        if token is not None and token.kind in "+-":
            self.at += 1
        tree = self.term()
        if negate:
            tree = ("neg", tree)
        while (token := self.peek()) is not None and token.kind in ("+", "-"):
            self.at += 1
            tree = ("add" if token.kind == "+" else "sub", tree, self.term())
        self.depth -= 1
        return tree

    def term(self) -> tuple:
        tree, last, divided = self.factor(), None, False
        last = self.tokens[self.at - 1]
        while (token := self.peek()) is not None:
            if token.kind in ("*", "/"):
                self.at += 1
                divided = divided or token.kind == "/"
                tree = ("mul" if token.kind == "*" else "div", tree, self.factor())
            elif token.kind in ("num", "var", "frac", "(", "{"):
                # Implicit products latex2sympy reads otherwise: "x/2x" (x/(2x)), "2 3" and "2(3)" (5),
                # "2\frac{1}{2}" (a mixed number), "x2" (a subscript?).
                if divided or token.spaced or token.kind == "num":
                    raise _NotMine
                if last.kind == "num" and token.kind in ("frac", "(", "{"):
                    raise _NotMine
                tree = ("mul", tree, self.factor())
            else:
                break
            last = self.tokens[self.at - 1]
        return tree

    def factor(self) -> tuple:
        base = self.atom()
        token = self.peek()
        if token is None or token.kind != "^":
            return base
        self.at += 1
        token = self.peek()
        if token is not None and token.kind == "{":
            exponent = self.group("{", "}")
        elif token is not None and token.kind == "num" and len(token.text) == 1:
            self.at += 1
            exponent = ("num", int(token.text))
        else:  # "x^23" (x**23 to latex2sympy), "x^-1", "x^n"
            raise _NotMine
        if (token := self.peek()) is not None and token.kind == "^":  # "2^3^2": (2^3)^2 to latex2sympy
            raise _NotMine
        return ("pow", base, exponent)

    def group(self, opening: str, closing: str) -> tuple:
        self.take(opening)
        tree = self.expr()
        self.take(closing)
        return tree

    def atom(self) -> tuple:
        token = self.peek()
        if token is None:
            raise _NotMine
        if token.kind == "num":
            self.at += 1
            return ("num", int(token.text))
        if token.kind == "var":
            self.at += 1
            return ("var", token.text)
        if token.kind == "(":
            return self.group("(", ")")
        if token.kind == "{":
            return self.group("{", "}")
        if token.kind == "frac":
            self.at += 1
            return ("div", self.group("{", "}"), self.group("{", "}"))
        raise _NotMine


def _variables(tree: tuple) -> set[str]:
    if tree[0] == "var":
        return {tree[1]}
    return set().union(*(_variables(node) for node in tree[1:] if isinstance(node, tuple)))


def _evaluate(tree: tuple, point: dict[str, Fraction]) -> Fraction:
    """The exact value of ``tree`` at ``point``; ZeroDivisionError where undefined, _NotMine when too large."""
    kind = tree[0]
    if kind == "num":
        return Fraction(tree[1])
    if kind == "var":
        return point[tree[1]]
    if kind == "neg":
        return -_evaluate(tree[1], point)
    left, right = _evaluate(tree[1], point), _evaluate(tree[2], point)
    if kind == "pow":
        if right.denominator != 1 or abs(right) > _MAX_EXPONENT:
            raise _NotMine
        if (left.numerator.bit_length() + left.denominator.bit_length()) * abs(int(right)) > _MAX_BITS:
            raise _NotMine
        value = left ** int(right)
    else:
        value = {"add": left.__add__, "sub": left.__sub__, "mul": left.__mul__, "div": left.__truediv__}[kind](right)
    if value.numerator.bit_length() + value.denominator.bit_length() > _MAX_BITS:
        raise _NotMine
    return value


@lru_cache(maxsize=1024)
def _identity_tree(text: str) -> tuple | None:
    """The fast path's reading of ``text``, or None when it is outside the grammar (memoised: a reference is
    read once for all its candidates)."""
    try:
        return _Reader(_tokens(text)).whole()
    except _NotMine:
        return None


def _identity_compare(answer: str, reference: str) -> bool | None:
    """True or False when both sides are rational functions the fast path can tell apart or identify (see
    above); None when math-verify must decide."""
    got, want = _identity_tree(answer), _identity_tree(reference)
    if got is None or want is None:
        return None
    names = sorted(_variables(got) | _variables(want))
    if not names:
        return None
    # A fixed seed: the same answer gets the same verdict every run.
    rng = random.Random(f"{answer}\0{reference}")
    values: list[tuple[dict[str, Fraction], Fraction, Fraction]] = []
    try:
        for _ in range(_IDENTITY_POINTS * 3):
            point = {name: Fraction(rng.randint(-10**9, 10**9), rng.randint(1, 10**6)) for name in names}
            try:
                values.append((point, _evaluate(got, point), _evaluate(want, point)))
            except ZeroDivisionError:
                continue
            if len(values) == _IDENTITY_POINTS:
                break
    except _NotMine:
        return None
    if len(values) < _IDENTITY_POINTS:
        return None
    for side in (1, 2):
        # Constant as a function, or a single variable: math-verify's number and symbol rules decide those.
        if len({entry[side] for entry in values}) == 1:
            return None
        if any(all(entry[side] == entry[0][name] for entry in values) for name in names):
            return None
    return all(a == b for _, a, b in values)


# -- 3. math-verify and sympy -------------------------------------------------------------------------------


def _too_large(expr) -> bool:  # noqa: ANN001 - a sympy expression
    """Whether ``expr`` holds a power or factorial of numbers with more than ``MAX_DIGITS`` digits.

    Evaluating ``9^{9^{9^9}}`` or ``100000!`` runs in C for minutes (gigabytes of digits) and no signal
    interrupts it, so such an answer is refused before anything evaluates it. The estimate works on
    log10 magnitudes and never computes the number.
    """
    import sympy

    def log10_size(node) -> float:  # noqa: ANN001
        if node.is_Integer or node.is_Rational:
            p, q = node.as_numer_denom()
            return max(len(str(abs(int(p)))), len(str(abs(int(q)))))
        if node.is_Float:
            return abs(float(sympy.log(abs(node), 10))) if node != 0 else 0.0
        if isinstance(node, sympy.Pow):
            base, exponent = node.args
            exponent_digits = log10_size(exponent)
            if exponent_digits > 8:
                return math.inf
            base_digits = log10_size(base)
            if base_digits <= 1 and base.is_number and abs(base) in (0, 1):
                return 1.0
            return base_digits * abs(float(10**exponent_digits)) if exponent.is_number else base_digits
        if isinstance(node, sympy.factorial):
            arg_digits = log10_size(node.args[0])
            return math.inf if arg_digits > 7 else 10**arg_digits * arg_digits
        if node.args:
            return sum(log10_size(arg) for arg in node.args)
        return 1.0

    try:
        if isinstance(expr, sympy.MatrixBase):
            return any(log10_size(e) > MAX_DIGITS for e in expr)
        if not isinstance(expr, sympy.Basic):
            return False
        return log10_size(expr) > MAX_DIGITS
    except (TypeError, ValueError, AttributeError, OverflowError):
        return True


def _parse(text: str) -> list:
    """math-verify's parse of ``text`` (as LaTeX in ``$...$``, and as a plain expression), its timeouts off."""
    return list(_parse_cached(text))


@lru_cache(maxsize=1024)
def _parse_cached(text: str) -> tuple:
    """``_parse``, memoised: a reference is parsed once for all its candidates (sympy objects are immutable)."""
    from math_verify import parse

    wrapped = text if text.startswith("$") else f"${text}$"
    return tuple(parse(wrapped, parsing_timeout=None))  # type: ignore[arg-type]


def _sympy_fallback(answer: str, reference: str) -> bool | None:
    """sympy's own parse of both sides and ``simplify(a - b) == 0``; None when either side does not parse."""
    import sympy
    from sympy.parsing.sympy_parser import parse_expr, standard_transformations

    def read(text: str):  # noqa: ANN202
        cleaned = _strip_decoration(text).replace("^", "**").replace("\\cdot", "*").replace("\\times", "*")
        return parse_expr(cleaned, transformations=standard_transformations, evaluate=False)

    try:
        a, b = read(answer), read(reference)
    except Exception:  # noqa: BLE001 - sympy's parser raises anything (SyntaxError, TokenError, TypeError)
        return None
    if _too_large(a) or _too_large(b):
        return False
    try:
        return bool(sympy.simplify(a - b) == 0)
    except Exception:  # noqa: BLE001
        return None


def _normalized(text: str) -> str:
    text = re.sub(r"\\(?:text|mathrm|textbf|mbox)\s*\{([^{}]*)\}", r"\1", text)
    return re.sub(r"[\s$(){}\\.]", "", text).lower()


def _compare(answer: str, reference: str) -> tuple[bool, str]:
    """Steps 2 and 3 of the module docstring, unbounded in time (callers bound it)."""
    decided = _numeric_compare(answer, reference)
    if decided is not None:
        return decided, "numeric match" if decided else "numbers differ"
    from math_verify import verify

    got, want = _parse(answer), _parse(reference)
    if any(_too_large(e) for e in (*got, *want)):
        return False, "number too large to compare"
    has_sympy = [any(not isinstance(e, str) for e in side) for side in (got, want)]
    if all(has_sympy):
        equal = verify(want, got, timeout_seconds=None)  # type: ignore[arg-type]
        return equal, "math-verify: equal" if equal else "math-verify: not equal"
    fallback = _sympy_fallback(answer, reference)
    if fallback is not None:
        return fallback, "sympy: equal" if fallback else "sympy: not equal"
    equal = bool(_normalized(answer)) and _normalized(answer) == _normalized(reference)
    return equal, "same text" if equal else "not equal as text"


def _compare_with_alarm(answer: str, reference: str, timeout_s: float) -> tuple[bool, str]:
    """``_compare`` under a ``SIGALRM`` budget on the main thread; unbounded elsewhere (see the docstring)."""
    if threading.current_thread() is not threading.main_thread() or timeout_s <= 0:
        return _compare(answer, reference)

    def on_alarm(signum, frame):  # noqa: ANN001, ARG001
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return _compare(answer, reference)
    except _Timeout:
        return False, f"timeout after {timeout_s:g} s"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- the helper process ---------------------------------------------------------------------------------------


def _checker_main() -> None:
    """The helper's loop: one (answer, reference, timeout) in on stdin, one (correct, reason) out, until EOF.

    Replies go to a copy of the original stdout; fd 1 itself points to stderr, so that a library that
    prints cannot break the protocol.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    incoming = Connection(0, writable=False)
    outgoing = Connection(reply_fd, readable=False)
    while True:
        try:
            answer, reference, timeout_s = incoming.recv()
        except (EOFError, OSError):
            return
        outgoing.send(_compare_with_alarm(answer, reference, timeout_s))


class _Checker:
    """A helper process that compares answers; killed and started again when one overruns its budget.

    A plain subprocess (``python -c``), not ``multiprocessing``: its spawn start method would run the
    caller's main script again in the helper, which breaks scripts without a ``__main__`` guard.
    """

    # Starting the helper imports sympy (about a second): it is not counted in any answer's budget.
    START_TIMEOUT_S = 60.0

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None

    def _start(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from prefdata.verifiers.math import _checker_main; _checker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._send = Connection(os.dup(self._process.stdin.fileno()), readable=False)
        self._recv = Connection(os.dup(self._process.stdout.fileno()), writable=False)
        self._process.stdin.close()
        self._process.stdout.close()
        # Warm up (imports) before the first real budget starts.
        self._send.send(("1", "x", 0))
        if not self._recv.poll(self.START_TIMEOUT_S):
            self.close()
            raise RuntimeError("the math verifier's helper process did not start")
        self._recv.recv()

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()
        self._process = self._send = self._recv = None

    def compare(self, answer: str, reference: str, timeout_s: float) -> tuple[bool, str]:
        if self._process is None or self._process.poll() is not None:
            self.close()
            self._start()
        assert self._send is not None and self._recv is not None
        try:
            self._send.send((answer, reference, timeout_s))
            # The helper interrupts itself at timeout_s with SIGALRM; the grace covers C code that ignores it.
            if self._recv.poll(timeout_s + 1.0):
                return self._recv.recv()
        except (EOFError, OSError):
            self.close()
            return False, "the helper process died"
        self.close()
        return False, f"timeout after {timeout_s:g} s (helper process killed)"

    def __del__(self) -> None:
        self.close()


_local = threading.local()


def _thread_checker() -> _Checker:
    checker = getattr(_local, "checker", None)
    if checker is None:
        checker = _local.checker = _Checker()
    return checker


# -- the entry point ------------------------------------------------------------------------------------------


def math_verify(*, response: str, reference: str, timeout_s: float = 5.0, isolate: bool = True) -> MathResult:
    """Whether the final answer of ``response`` equals ``reference`` (an answer, or a solution with one).

    ``timeout_s`` bounds the comparison of this answer; ``isolate`` runs it in the calling thread's helper
    process (see the module docstring). Never raises on malformed text: the reason says what happened.
    """
    answer, how = answer_extract(response or "")
    if answer is None:
        return MathResult(correct=False, extracted="", reason=how)
    if len(answer) > MAX_ANSWER_CHARS:
        return MathResult(correct=False, extracted=answer[:MAX_ANSWER_CHARS], reason="answer too long")
    want = reference_answer(reference or "")
    if not want:
        return MathResult(correct=False, extracted=answer, reason="empty reference")
    decided = _numeric_compare(answer, want)
    if decided is not None:
        return MathResult(correct=decided, extracted=answer,
                          reason=f"{how}: {'numeric match' if decided else 'numbers differ'}")
    decided = _identity_compare(answer, want)
    if decided is not None:
        return MathResult(correct=decided, extracted=answer,
                          reason=f"{how}: {'identity at random points' if decided else 'differ at a random point'}")
    if isolate:
        correct, why = _thread_checker().compare(answer, want, timeout_s)
    else:
        correct, why = _compare_with_alarm(answer, want, timeout_s)
    return MathResult(correct=correct, extracted=answer, reason=f"{how}: {why}")
