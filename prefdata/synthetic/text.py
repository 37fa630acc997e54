"""Normalisation and tokenisation shared by dedup, diversity and the filters."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+", re.UNICODE)


def normalise(text: str) -> str:
    """Lower case, Unicode NFKC, punctuation dropped, whitespace collapsed: two texts equal after this say
    the same thing (exact duplicates; Evol-Instruct's "no new information")."""
    return " ".join(words(text))


def words(text: str) -> list[str]:
    """The lower-cased word tokens of a text (letters and digits; punctuation dropped)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
