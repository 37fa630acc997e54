"""Step rules for process reward models: splitting a solution into steps, the first error, the per-step
majority of several labels, and the conversion of ratings to TRL stepwise labels.

Ratings are +1 (correct), 0 (neutral: reasonable, no progress), -1 (wrong) or None (not labeled), as in
PRM800K (Lightman et al. 2023, "Let's Verify Step by Step").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence

from prefdata.records import FOUND_ERROR, SOLUTION
from prefdata.stats import plurality

# How a solution's text is cut into steps (``StepItem.SplitRule``): "given" steps come as a list.
SPLIT_RULES: tuple[str, ...] = ("given", "blank_lines", "numbered", "lines", "sentences")
# What a neutral (0) step becomes in TRL's stepwise supervision.
NEUTRAL_CHOICES = ("positive", "negative")


# -- splitting a solution into steps ------------------------------------------------------------------------

# "Step 3:" (also "step 3." / "Step 3)"), or "3." / "3)" followed by a space, at the start of a line.
_NUMBERED = re.compile(r"^[ \t]*(?:(?P<step>step[ \t]*(?P<k1>\d+)[ \t]*[:.)])|(?P<k2>\d+)(?P<mark>[.)])(?=\s))",
                       re.IGNORECASE | re.MULTILINE)
# Words whose final period ends no sentence.
_ABBREVIATIONS = frozenset({"e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "fig.",
                            "eq.", "no.", "approx.", "cf.", "resp."})
_SENTENCE_END = re.compile(r"""(?<=[.!?])["')\]]*\s+""")


def steps_split(text: str, rule: str) -> list[str]:
    """The steps of ``text`` by ``rule``; every step is stripped and empty ones are dropped.

    - ``blank_lines``: paragraphs, separated by lines that are empty or hold only spaces.
    - ``lines``: every non-blank line.
    - ``numbered``: a step starts at each line that begins with a number: "Step k:" (any case, also
      "Step k." / "Step k)") or "k." / "k)" followed by a space. The first marker found sets the style
      ("Step k", "k." or "k)"), and only markers of that style numbered one more than the previous one
      start a step, so a list inside a step ("1. ... 2. ...", under "Step 2:") stays in it. The marker is
      kept in the step's text; text before the first marker is a step of its own (nothing is dropped).
      No marker: one step.
    - ``sentences``: a step ends after ".", "!" or "?" (and any closing quote or bracket) followed by white
      space, unless the word is a common abbreviation (e.g., i.e., Dr., ...) or the next word starts in
      lower case; a blank line also ends a step. A heuristic: decimals ("3.5") are safe, "Fig. 2" is kept
      whole, an initial ("J. Smith") is split.
    Raises ValueError for another rule (``given`` steps come as a list, not from text).
    """
    if rule == "blank_lines":
        parts = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    elif rule == "lines":
        parts = text.splitlines()
    elif rule == "numbered":
        parts = _numbered_split(text)
    elif rule == "sentences":
        parts = [s for paragraph in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
                 for s in _sentences_split(paragraph)]
    else:
        raise ValueError(f"unknown split rule {rule!r}; known: blank_lines, numbered, lines, sentences")
    return [p.strip() for p in parts if p.strip()]


def _numbered_split(text: str) -> list[str]:
    # 1. Keep the markers that continue the numbering in the style of the first one.
    starts, style, expected = [], None, None
    for match in _NUMBERED.finditer(text):
        this_style = "step" if match.group("step") else match.group("mark")
        k = int(match.group("k1") or match.group("k2"))
        if style is None:
            style, expected = this_style, k
        if this_style == style and k == expected:
            starts.append(match.start())
            expected = k + 1
    # 2. Cut before each of them.
    bounds = [0, *starts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def _sentences_split(paragraph: str) -> list[str]:
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(paragraph):
        before = paragraph[start:match.start()].rstrip("\"')]")
        last_word = before.rsplit(None, 1)[-1].lstrip("\"'([").lower() if before.split() else ""
        following = paragraph[match.end():match.end() + 1]
        if last_word in _ABBREVIATIONS or (following and following.islower()):
            continue
        sentences.append(paragraph[start:match.end()])
        start = match.end()
    sentences.append(paragraph[start:])
    return sentences


# -- ratings ------------------------------------------------------------------------------------------------


def first_error(ratings: Sequence[int | None]) -> int | None:
    """The index of the first step rated -1, or None (no step is wrong)."""
    return next((i for i, r in enumerate(ratings) if r == -1), None)


def finish_reason_for(ratings: Sequence[int | None]) -> str:
    """The finish reason ratings imply when none is given: found_error with a -1 step, else solution."""
    return SOLUTION if first_error(ratings) is None else FOUND_ERROR


def ratings_stop_at_first_error(ratings: Sequence[int | None]) -> list[int | None]:
    """The ratings of first-error mode (PRM800K's ``found_error``): labeling stops at the first -1, so every
    later step is unlabeled (None), never negative."""
    error = first_error(ratings)
    if error is None:
        return list(ratings)
    return [*ratings[: error + 1], *([None] * (len(ratings) - error - 1))]


def step_majority(ratings_lists: Sequence[Sequence[int | None]]) -> list[int | None]:
    """Per step, the rating most labels gave it (``stats.plurality``); None when the top two are level or
    when nobody rated it (an unlabeled step casts no vote). Every list has one rating per step."""
    return [plurality(r for r in step if r in (1, 0, -1)) for step in zip(*ratings_lists, strict=True)]


def stepwise_labels(ratings: Iterable[int | None], *, neutral: str = "positive") -> list[bool]:
    """TRL stepwise-supervision labels of a solution's ratings, step by step:
    1. +1 is True and -1 is False; 0 (a reasonable step that makes no progress) is True with
       ``neutral="positive"`` and False with ``"negative"``.
    2. The first -1 step is kept (False) and the steps after it are dropped: what follows a wrong step is
       not evidence about good reasoning (PRM800K stops labeling there; Math-Shepherd's labels after it are
       conditioned on the error).
    3. An unlabeled step (None) ends the labels: they must be a prefix of the solution.
    """
    if neutral not in NEUTRAL_CHOICES:
        raise ValueError(f"neutral must be one of {NEUTRAL_CHOICES}, not {neutral!r}")
    labels: list[bool] = []
    for rating in ratings:
        if rating is None:
            break
        if rating == -1:
            labels.append(False)
            break
        labels.append(rating == 1 or neutral == "positive")
    return labels
