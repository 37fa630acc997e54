"""Exact and near-duplicate removal with MinHash LSH (Broder 1997; ``datasketch``), as the Self-Instruct and
phi / FineWeb pipelines do before training on generated text."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prefdata.synthetic.text import ngrams, normalise, words


@dataclass
class DedupResult:
    """Which texts survive, and why the others went: ``removed`` maps a text's index to
    ``("exact" | "near", index of the text it repeats or -1 - index of the existing text)``."""

    kept: list[int]
    removed: dict[int, tuple[str, int]] = field(default_factory=dict)

    @property
    def exact(self) -> int:
        return sum(1 for why, _ in self.removed.values() if why == "exact")

    @property
    def near(self) -> int:
        return sum(1 for why, _ in self.removed.values() if why == "near")

    @property
    def against_existing(self) -> int:
        """Removed because they repeat a text that existed before (the project's prompts)."""
        return sum(1 for _, other in self.removed.values() if other < 0)

    def counts(self) -> dict[str, int]:
        return {"kept": len(self.kept), "exact": self.exact, "near": self.near,
                "against_existing": self.against_existing}


def shingles(text: str, *, ngram: int = 3) -> set[str]:
    """Word n-grams of the normalised text (the whole text when it is shorter): the sets MinHash compares."""
    tokens = words(text)
    if len(tokens) < ngram:
        return {" ".join(tokens)} if tokens else {""}
    return {" ".join(g) for g in ngrams(tokens, ngram)}


def jaccard(a: str, b: str, *, ngram: int = 3) -> float:
    """The exact Jaccard similarity of two texts' shingles (what MinHash estimates)."""
    sa, sb = shingles(a, ngram=ngram), shingles(b, ngram=ngram)
    return len(sa & sb) / len(sa | sb)


class NearDuplicateIndex:
    """Texts seen so far, exactly (hash of the normalised text) and approximately (MinHash LSH).

    ``threshold`` is the Jaccard similarity of word 3-gram sets above which two texts are the same;
    LSH proposes candidates and each is confirmed by its estimated similarity, so a false candidate of
    the bands is not removed. The bands are tuned for three quarters of the threshold: a pair just above
    the threshold is then almost surely proposed (at 0.8 of a 0.6 threshold, missed once in 10,000 instead
    of once in 50), and the confirmation keeps the threshold exact.
    """

    def __init__(self, *, threshold: float = 0.8, num_perm: int = 128, ngram: int = 3, seed: int = 1) -> None:
        from datasketch import MinHashLSH

        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold: expected a similarity in (0, 1]")
        self.threshold, self.num_perm, self.ngram, self.seed = threshold, num_perm, ngram, seed
        self.lsh = MinHashLSH(threshold=threshold * 0.75, num_perm=num_perm)
        self.exact: dict[str, int] = {}
        self.hashes: dict[int, object] = {}
        self._added = self._existing = 0

    def _minhash(self, text: str):
        from datasketch import MinHash

        m = MinHash(num_perm=self.num_perm, seed=self.seed)
        m.update_batch([s.encode() for s in shingles(text, ngram=self.ngram)])
        return m

    def find(self, text: str) -> tuple[str, int] | None:
        """("exact" | "near", key of the text it repeats), or None for a new text."""
        digest = hashlib.sha1(normalise(text).encode()).hexdigest()
        if digest in self.exact:
            return "exact", self.exact[digest]
        m = self._minhash(text)
        best = None
        for key in self.lsh.query(m):
            similarity = m.jaccard(self.hashes[key])
            if similarity >= self.threshold and (best is None or similarity > best[0]):
                best = (similarity, key)
        return ("near", best[1]) if best else None

    def add(self, text: str, *, existing: bool = False) -> int:
        """Remember a text; its key: 0, 1, 2... in order, or -1, -2... for existing texts."""
        if existing:
            self._existing += 1
            key = -self._existing
        else:
            key = self._added
            self._added += 1
        digest = hashlib.sha1(normalise(text).encode()).hexdigest()
        self.exact.setdefault(digest, key)
        m = self._minhash(text)
        self.hashes[key] = m
        self.lsh.insert(key, m)
        return key

    def __len__(self) -> int:
        return len(self.hashes)


def dedup(texts: Sequence[str], *, existing: Iterable[str] = (), threshold: float = 0.8, num_perm: int = 128,
          index: NearDuplicateIndex | None = None) -> DedupResult:
    """Keep the first of every group of exact or near duplicates among ``texts``, and none that repeats
    one of ``existing`` (or what ``index`` already holds: a job's earlier chunks; it then holds the kept
    texts too). ``removed`` names the repeated text: its position in ``texts``, -1 - its position in
    ``existing``, or its key in ``index`` when it came from an earlier call."""
    if index is None:
        index = NearDuplicateIndex(threshold=threshold, num_perm=num_perm)
    for text in existing:
        index.add(text, existing=True)
    result = DedupResult(kept=[])
    position: dict[int, int] = {}
    for i, text in enumerate(texts):
        found = index.find(text)
        if found is None:
            result.kept.append(i)
            position[index.add(text)] = i
        else:
            why, key = found
            result.removed[i] = (why, position.get(key, key) if key >= 0 else key)
    return result
