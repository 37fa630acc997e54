"""Diversity and overlap of generated text: distinct-n (Li et al. 2016), self-BLEU (Zhu et al. 2018,
Texygen) and ROUGE-L (Lin 2004), the overlap Self-Instruct filters new instructions with."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

from prefdata.synthetic.text import ngrams, words


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams in all texts (0 when there is none): 1.0 never repeats itself,
    a collapsing generator drifts towards 0."""
    grams = [g for text in texts for g in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu(hypothesis: list[str], references: list[list[str]], *, max_n: int = 4) -> float:
    """Sentence BLEU (Papineni et al. 2002) with add-one smoothing of the n-gram precisions above
    unigrams (Lin and Och 2004, "smoothing 2"), so that short texts do not all score 0."""
    if not hypothesis or not references:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        hyp = Counter(ngrams(hypothesis, n))
        most: Counter = Counter()
        for ref in references:
            for gram, count in Counter(ngrams(ref, n)).items():
                most[gram] = max(most[gram], count)
        matched = sum(min(count, most[gram]) for gram, count in hyp.items())
        total = sum(hyp.values())
        smooth = 1 if n > 1 else 0
        if total + smooth == 0 or matched + smooth == 0:
            return 0.0
        log_precision += math.log((matched + smooth) / (total + smooth)) / max_n
    # Brevity penalty against the reference closest in length.
    closest = min((abs(len(r) - len(hypothesis)), len(r)) for r in references)[1]
    penalty = 1.0 if len(hypothesis) > closest else math.exp(1 - closest / len(hypothesis))
    return penalty * math.exp(log_precision)


def self_bleu(texts: Sequence[str], *, max_n: int = 4, sample: int = 200, seed: int = 0) -> float:
    """Mean BLEU of each text against all the others as references: high when the texts repeat each
    other. At most ``sample`` texts (drawn with ``seed``) are compared: the cost grows with its square."""
    items = [words(t) for t in texts]
    items = [t for t in items if t]
    if len(items) < 2:
        return 0.0
    if len(items) > sample:
        items = random.Random(seed).sample(items, sample)
    scores = [bleu(t, items[:i] + items[i + 1 :], max_n=max_n) for i, t in enumerate(items)]
    return sum(scores) / len(scores)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programme over one row)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b, start=1):
            current = row[j]
            row[j] = previous + 1 if x == y else max(row[j], row[j - 1])
            previous = current
    return row[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 of two texts' words: the LCS over their lengths (the F-measure with beta = 1, as the
    ``rouge_score`` package Self-Instruct used computes it)."""
    c, r = words(candidate), words(reference)
    if not c or not r:
        return 0.0
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def rouge_l_max(candidate: str, pool: Sequence[str]) -> float:
    """The highest ROUGE-L of ``candidate`` against any text of ``pool`` (0 for an empty pool)."""
    return max((rouge_l(candidate, text) for text in pool), default=0.0)


def diversity(texts: Sequence[str]) -> dict[str, float]:
    """What a job page shows of its output: distinct-1, distinct-2 and self-BLEU, rounded."""
    return {"distinct_1": round(distinct_n(texts, 1), 4), "distinct_2": round(distinct_n(texts, 2), 4),
            "self_bleu": round(self_bleu(texts), 4), "texts": len(texts)}
