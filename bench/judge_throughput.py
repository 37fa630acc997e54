"""Throughput of debiased pairwise judging on the demo model: log-probability verdicts against
generate-and-parse verdicts, on the same pairs, batched the same way.

    VAR_DIR=/tmp/jt-var .venv/bin/python bench/judge_throughput.py [--pairs 24] [--batch-size 8]

1. Pairs: the first turn of ``--pairs`` MT-Bench questions (evenly spread over the 80, so every
   category is in), each with two answers sampled from the demo model with the same settings (so the
   two are exchangeable). Answers are generated once (a few minutes) and cached in ``--answers``.
2. Log-probability judging (a): the judge's default template (``judges.models.DEFAULT_PAIRWISE_TEMPLATE``),
   both presentation orders of every pair (rendered by ``judges.services.judge_prompt``), one
   ``backend.score`` call with candidates "A" / "B"; P(first is better) = p(A) / (p(A) + p(B)).
3. Generate-and-parse judging (b): an MT-Bench-style prompt (an explanation first, then ``[[A]]`` or
   ``[[B]]``; Zheng et al. 2023, arXiv:2306.05685, Figure 5, without the tie), both orders, one greedy
   ``backend.generate`` call of up to ``--max-new-tokens`` (256) new tokens per prompt, parsed by
   ``judges.services.verdict_parse`` (1 first, 0 second, 0.5 unparsed), as the judge service does.
Both get the same batch size (``--batch-size`` prompts per forward pass) and the same prompts order.
A debiased judgment is both orders of one pair: judgments/s = pairs / seconds (timed after a warm-up).

First-position preference: before debiasing, the share of single-order verdicts (each order of each
pair, unparsed ones left out) that pick the response shown first; after swap-average debiasing
(P(A) = mean of both orders, as ``judgment_combine`` in mode swap_average), the share of pairs whose
final verdict is A, the response shown first in the AB order (the two answers are exchangeable, so an
unbiased judge gives about 50%, less ties).
The last line holds the figures: ``logprob_per_s=... generate_per_s=... ratio=...``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT.parent / "shared" / "data" / "external" / "mt-bench" / "question.jsonl"
DEMO_MODEL = ROOT / "var" / "models" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1-hf"
ANSWER_BATCH = 8  # generating the judged answers (untimed, once; fixed, so the cache outlives --batch-size)

# MT-Bench's pairwise judge prompt ("pair-v2"), two-way: an explanation first, then the verdict.
MT_BENCH_TEMPLATE = """[System]
Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the \
user question displayed below. You should choose the assistant that follows the user's instructions and answers the \
user's question better. Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, \
creativity, and level of detail of their responses. Begin your evaluation by comparing the two responses and provide \
a short explanation. Avoid any position biases and ensure that the order in which the responses were presented does \
not influence your decision. Do not allow the length of the responses to influence your evaluation. Do not favor \
certain names of the assistants. Be as objective as possible. After providing your explanation, output your final \
verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better.

[User Question]
{conversation}

[The Start of Assistant A's Answer]
{response_a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{response_b}
[The End of Assistant B's Answer]"""


def django_setup() -> None:
    """`judges` needs Django's app registry (its models); no database is touched."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    os.environ.setdefault("VAR_DIR", "/tmp/jt-var")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def questions_pick(n: int) -> list[dict]:
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    n = min(n, len(rows))
    return [rows[i * len(rows) // n] for i in range(n)]


def answers_ensure(*, backend, questions: list[dict], path: Path, max_new_tokens: int, batch_size: int) -> list:
    """Two sampled answers per question, generated once and cached."""
    from synth.backends.base import Sampling

    key = {"model": backend.name, "questions": [q["question_id"] for q in questions],
           "max_new_tokens": max_new_tokens, "temperature": 0.7, "seed": 0, "batch_size": batch_size}
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            print(f"answers: cached in {path}")
            return cached["answers"]
    start = time.perf_counter()
    conversations = [[{"role": "user", "content": q["turns"][0]}] for q in questions]
    answers = backend.generate(conversations, Sampling(max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.95,
                                                       n=2, seed=0, batch_size=batch_size))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "answers": answers}))
    print(f"answers: generated {2 * len(answers)} in {time.perf_counter() - start:.0f}s, cached in {path}")
    return answers


def orders_prompts(*, template: str, pairs: list[tuple[list[dict], str, str]]) -> list[list[dict]]:
    """Both presentation orders of every pair, AB then BA, as the judge service builds them."""
    from judges.services import judge_prompt

    prompts = []
    for conversation, a, b in pairs:
        prompts.append(judge_prompt(template=template, conversation=conversation, first=a, second=b))
        prompts.append(judge_prompt(template=template, conversation=conversation, first=b, second=a))
    return prompts


def two_way(logp_a: float, logp_b: float) -> float:
    """P(first shown is better): p("A") / (p("A") + p("B"))."""
    if logp_a == logp_b:  # also both -inf
        return 0.5
    top = max(logp_a, logp_b)
    ea, eb = math.exp(logp_a - top), math.exp(logp_b - top)
    return ea / (ea + eb)


def judge_logprob(backend, prompts: list, *, batch_size: int, **kwargs) -> tuple[list[float], list[str], float]:
    """P(first shown is better) per prompt, from one batched `score` call, and the seconds it took."""
    start = time.perf_counter()
    scores = backend.score(prompts, [["A", "B"]] * len(prompts), batch_size=batch_size, **kwargs)
    seconds = time.perf_counter() - start
    return [two_way(a, b) for a, b in scores], [f"logp(A)={a:.4f} logp(B)={b:.4f}" for a, b in scores], seconds


def judge_generate(backend, prompts: list, *, batch_size: int,
                   max_new_tokens: int) -> tuple[list[float], list[str], float]:
    """Greedy explanation + verdict per prompt, parsed: 1 for the first shown, 0 for the second, 0.5 unparsed."""
    from judges.services import verdict_parse
    from synth.backends.base import Sampling

    start = time.perf_counter()
    texts = backend.generate(prompts, Sampling(max_new_tokens=max_new_tokens, temperature=0.0, batch_size=batch_size))
    seconds = time.perf_counter() - start
    raws = [text for (text,) in texts]
    return [{"first": 1.0, "second": 0.0}.get(verdict_parse(t) or "", 0.5) for t in raws], raws, seconds


def position_report(name: str, probs: list[float]) -> list[str]:
    """First-position preference before and after swap-average debiasing; prints one line, returns the
    final verdicts. `probs` holds P(first shown is better) for AB, BA, AB, BA, ...; 0.5 is undecided."""
    decided = [p > 0.5 for p in probs if p != 0.5]
    before = f"{sum(decided) / len(decided):.0%}" if decided else "n/a"
    finals, consistent = [], 0
    for p_ab, p_ba in zip(probs[0::2], probs[1::2], strict=True):
        prob_a = (p_ab + (1.0 - p_ba)) / 2  # swap-average: in the BA order, A is shown second
        finals.append("A" if prob_a > 0.5 else "B" if prob_a < 0.5 else "tie")
        consistent += 0.5 not in (p_ab, p_ba) and (p_ab > 0.5) != (p_ba > 0.5)
    n = len(finals)
    print(f"{name}: first-position preference before debiasing {before} of {len(decided)} single-order "
          f"verdicts; after swap-average: final verdict A (shown first in AB) {finals.count('A') / n:.0%} of {n} "
          f"pairs, B {finals.count('B') / n:.0%}, tie {finals.count('tie') / n:.0%}; both orders name the same "
          f"answer in {consistent}/{n} pairs")
    return finals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8, help="rows per forward pass, both methods")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="generate-and-parse judging")
    parser.add_argument("--answer-tokens", type=int, default=128, help="length of the judged answers")
    parser.add_argument("--model", default=str(DEMO_MODEL))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="weights and activations for both methods (bfloat16 pays on CPUs with AVX512-BF16)")
    parser.add_argument("--answers", default="/tmp/judge_throughput_answers.json", help="answers cache")
    parser.add_argument("--compare-plain", action="store_true",
                        help="also time log-prob judging without prefix sharing")
    args = parser.parse_args()
    if not QUESTIONS.exists():
        print(f"skipped: MT-Bench questions not found at {QUESTIONS} (see SOURCE.md beside it)")
        return 0
    if not (Path(args.model) / "config.json").exists():
        print(f"skipped: no model at {args.model}; run `DEBUG=1 .venv/bin/python manage.py demo` once")
        return 0
    django_setup()
    import torch

    from judges.models import DEFAULT_PAIRWISE_TEMPLATE
    from judges.services import verdict_parse
    from synth.backends.base import Sampling
    from synth.backends.local import TransformersBackend

    backend = TransformersBackend(args.model, dtype=args.dtype)
    print(f"model {Path(args.model).name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch size {args.batch_size}")
    questions = questions_pick(args.pairs)
    answers = answers_ensure(backend=backend, questions=questions, path=Path(args.answers),
                             max_new_tokens=args.answer_tokens, batch_size=ANSWER_BATCH)
    pairs = [([{"role": "user", "content": q["turns"][0]}], a, b) for q, (a, b) in zip(questions, answers, strict=True)]
    lp_prompts = orders_prompts(template=DEFAULT_PAIRWISE_TEMPLATE, pairs=pairs)
    gen_prompts = orders_prompts(template=MT_BENCH_TEMPLATE, pairs=pairs)
    tokens = backend._prompt_ids  # the backend's own tokenization, for prompt lengths in the report
    lp_len = sum(len(tokens(p)) for p in lp_prompts) / len(lp_prompts)
    gen_len = sum(len(tokens(p)) for p in gen_prompts) / len(gen_prompts)
    print(f"{len(pairs)} pairs from {QUESTIONS.name}, {2 * len(pairs)} prompts per method; mean prompt tokens: "
          f"log-prob {lp_len:.0f}, generate {gen_len:.0f}")

    # Warm both code paths up (first-call allocations), on another prompt.
    warm = [[{"role": "user", "content": "Warm-up: A or B?"}]]
    backend.score(warm, [["A", "B"]])
    backend.generate(warm, Sampling(max_new_tokens=2, temperature=0.0))

    lp_probs, _, lp_seconds = judge_logprob(backend, lp_prompts, batch_size=args.batch_size)
    stats = backend.last_score_stats
    print(f"log-prob: {len(pairs)} judgments in {lp_seconds:.1f}s; tokens through the model "
          f"{stats['computed_tokens']} of {stats['prompt_tokens']} in the prompts "
          f"({1 - stats['computed_tokens'] / stats['prompt_tokens']:.0%} shared), "
          f"{stats['padded_tokens']} padding, {stats['forwards']} forward passes")
    if args.compare_plain:
        plain_probs, _, plain_seconds = judge_logprob(backend, lp_prompts, batch_size=args.batch_size,
                                                      share_prefix=False)
        drift = max(abs(x - y) for x, y in zip(lp_probs, plain_probs, strict=True))
        print(f"log-prob without prefix sharing: {plain_seconds:.1f}s ({plain_seconds / lp_seconds:.2f}x the "
              f"time), max |P(first) difference| {drift:.1e}")

    gen_probs, raws, gen_seconds = judge_generate(backend, gen_prompts, batch_size=args.batch_size,
                                                  max_new_tokens=args.max_new_tokens)
    failed = sum(verdict_parse(t) is None for t in raws)
    new_tokens = sum(len(backend.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in raws)
    print(f"generate: {len(pairs)} judgments in {gen_seconds:.1f}s; about {new_tokens / len(raws):.0f} new tokens "
          f"per order; parse failures {failed}/{len(raws)} ({failed / len(raws):.0%})")
    print(f"generate, first reply: {raws[0][:300]!r}")

    lp_finals = position_report("log-prob", lp_probs)
    gen_finals = position_report("generate", gen_probs)
    both = [(x, y) for x, y in zip(lp_finals, gen_finals, strict=True) if "tie" not in (x, y)]
    print(f"final verdicts of the two methods agree on {sum(x == y for x, y in both)} of the {len(both)} pairs "
          f"neither calls a tie")

    lp_rate, gen_rate = len(pairs) / lp_seconds, len(pairs) / gen_seconds
    print(f"logprob_per_s={lp_rate:.3f} generate_per_s={gen_rate:.4f} ratio={lp_rate / gen_rate:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
