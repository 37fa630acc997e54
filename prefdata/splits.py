"""Leak-free train / test (/ validation) splits of export rows, decided row by row.

A row's split is a function of a key and a seed only, so the same prompt always lands in the same split,
whatever file, order or format it comes in, and a split needs no global shuffle (it streams):

1. The key is the row's paraphrase group when one is known (``group``, ``paraphrase_group`` or
   ``group_id`` in the metadata or lineage given with the row), so a whole group lands in one split;
   otherwise the prompt, normalised (``prompt_normalise``: the user turns only, NFKC, case-folded,
   whitespace collapsed), so "What is 2+2?" and "  what is 2+2? " are one prompt.
2. ``blake2b(seed, kind, key)`` gives a number u in [0, 1).
3. The split is the first whose cumulative proportion exceeds u, the splits taken in name order (so
   ``{"train": .9, "test": .1}`` and ``{"test": .1, "train": .9}`` split alike).

Groups take precedence over prompts: a prompt given a group in one row and none (or another group) in
another may land in two splits. Group labels are meant to cover every row of their prompts;
``split_leaks`` finds the prompts where they do not.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GROUP_KEYS: tuple[str, ...] = ("group", "paraphrase_group", "group_id")
SPLIT_VERSION = 1  # raised whenever the rule changes, so a recorded split can be told apart
_WHITESPACE = re.compile(r"\s+")


def prompt_normalise(prompt: object) -> str:
    """The user turns of a prompt as one string: NFKC, case-folded, runs of whitespace as one space.

    ``prompt`` is a conversation (a list of ``{"role", "content"}``), or a string (one user turn, as
    stepwise and outcome rows hold it). System and assistant turns are left out: the same question under
    another system prompt is the same question."""
    if isinstance(prompt, str):
        turns = [prompt]
    elif isinstance(prompt, Sequence):
        turns = [m.get("content", "") for m in prompt
                 if isinstance(m, Mapping) and m.get("role", "user") == "user"]
        turns = [t if isinstance(t, str) else repr(t) for t in turns]
    else:
        raise ValueError(f"a prompt is a conversation or a string, not {type(prompt).__name__}")
    text = "\n".join(unicodedata.normalize("NFKC", t) for t in turns).casefold()
    return _WHITESPACE.sub(" ", text).strip()


def row_prompt(row: Mapping[str, Any]) -> object:
    """The prompt of an export row: ``prompt`` (preference, stepwise, outcome, SFT), an SFT conversation's
    ``messages`` (whose user turns ``prompt_normalise`` keeps), or the PRM800K-like ``question.problem``."""
    if "prompt" in row:
        return row["prompt"]
    if isinstance(row.get("messages"), list):  # SFT's conversation: its user turns are the prompt
        return row["messages"]
    question = row.get("question")
    if isinstance(question, Mapping) and "problem" in question:
        return question["problem"]
    if "problem" in row:
        return row["problem"]
    raise ValueError(f"the row has no prompt (keys: {sorted(row)})")


def row_group(*sources: Mapping[str, Any] | None, keys: Sequence[str] = GROUP_KEYS) -> str | None:
    """The paraphrase group named by the first of ``sources`` (metadata, lineage, the row) that has one of
    ``keys`` with a value; None when none does."""
    for source in sources:
        if not source:
            continue
        for key in keys:
            value = source.get(key)
            if value is not None and value != "":
                return str(value)
    return None


def proportions_check(proportions: Mapping[str, float]) -> dict[str, float]:
    """The proportions in name order; ValueError unless there are at least two named splits, each share in
    [0, 1], summing to 1."""
    if len(proportions) < 2:
        raise ValueError("a split needs at least two parts, e.g. {'train': 0.9, 'test': 0.1}")
    out: dict[str, float] = {}
    for name in sorted(proportions):
        share = proportions[name]
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a split's name is a non-empty string, not {name!r}")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1 \
                or not math.isfinite(share):
            raise ValueError(f"the share of {name!r} is a number from 0 to 1, not {share!r}")
        out[name] = float(share)
    if not math.isclose(sum(out.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"the shares sum to {sum(out.values()):g}, not 1")
    return out


def _unit(seed: object, kind: str, key: str) -> float:
    digest = hashlib.blake2b(f"{seed}\x1f{kind}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True, slots=True)
class SplitSpec:
    """How to split: the shares of each named split and the seed. ``to_dict()`` is what a manifest keeps."""

    proportions: Mapping[str, float]
    seed: int | str = 0
    group_keys: tuple[str, ...] = GROUP_KEYS
    _bounds: tuple[tuple[str, float], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shares = proportions_check(self.proportions)
        object.__setattr__(self, "proportions", shares)
        bounds, total = [], 0.0
        for name, share in shares.items():
            total += share
            bounds.append((name, total))
        object.__setattr__(self, "_bounds", tuple(bounds))

    def key(self, row: Mapping[str, Any], *context: Mapping[str, Any] | None) -> tuple[str, str]:
        """``("group", id)`` when ``context`` (metadata, lineage) or the row names a group, else
        ``("prompt", normalised prompt)``."""
        group = row_group(*context, row, keys=self.group_keys)
        if group is not None:
            return "group", group
        return "prompt", prompt_normalise(row_prompt(row))

    def split_of_key(self, kind: str, key: str) -> str:
        u = _unit(self.seed, kind, key)
        for name, bound in self._bounds:
            if u < bound and self.proportions[name] > 0:
                return name
        return next(name for name, _ in reversed(self._bounds) if self.proportions[name] > 0)  # rounding

    def assign(self, row: Mapping[str, Any], *context: Mapping[str, Any] | None) -> str:
        """The split of one row (``context``: its metadata or lineage entry, where a group may be named)."""
        return self.split_of_key(*self.key(row, *context))

    def to_dict(self) -> dict[str, Any]:
        return {"proportions": dict(self.proportions), "seed": self.seed, "group_keys": list(self.group_keys),
                "key": "paraphrase group if known, else the user turns (NFKC, case-folded, whitespace collapsed)",
                "hash": "blake2b-64", "version": SPLIT_VERSION}


def splits_iter(rows: Iterable[Mapping[str, Any]], *, spec: SplitSpec,
                context: Iterable[Mapping[str, Any] | None] | None = None) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(split, row)`` for each row, in order; ``context`` runs beside the rows (a manifest's lineage, or
    each prompt's metadata)."""
    if context is None:
        for row in rows:
            yield spec.assign(row), row
        return
    sentinel = object()
    context_iter = iter(context)
    for row in rows:
        entry = next(context_iter, sentinel)
        if entry is sentinel:
            raise ValueError("fewer context entries than rows")
        yield spec.assign(row, entry), row  # type: ignore[arg-type]


def split_leaks(assigned: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, set[str]]:
    """The normalised prompts found in more than one split, with their splits (empty: no leak)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for split, row in assigned:
        seen[prompt_normalise(row_prompt(row))].add(split)
    return {prompt: splits for prompt, splits in seen.items() if len(splits) > 1}
