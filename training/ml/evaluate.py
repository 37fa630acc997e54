"""Evaluation of a trained model on held-out rows (the snapshot's test split), one function per kind of model.

Each reads the saved model folder, not the trainer's state, so it scores exactly what the platform will
serve; each returns a dict of plain numbers that the script writes to ``<output_dir>/evaluation.json``.

- reward model: accuracy (score(chosen) > score(rejected)) and the mean margin;
- process reward model: step accuracy and first-error accuracy (ProcessBench, Zheng et al. 2024,
  arXiv:2412.06559: the predicted index of the first wrong step equals the true one, -1 when all are right);
- DPO family: implicit-reward accuracy, the share of pairs whose policy-minus-reference log-ratio is larger
  for the chosen reply (Rafailov et al. 2023, section 5), and the mean implicit margin;
- KTO: the share of rows whose log-ratio has the sign of their label;
- SFT: mean loss per completion token and its perplexity.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prefdata.tokens import is_conversational, prompt_text  # noqa: F401 (prompt_text: the scripts' too)
from training.ml.common import say

BATCH = 8


def evaluation_write(out: str | Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write ``evaluation.json`` in the model folder and announce it on stdout."""
    Path(out, "evaluation.json").write_text(json.dumps(metrics, indent=2))
    say("evaluation", **metrics)
    return metrics


def _device(use_cpu: bool) -> str:
    import torch

    return "cuda" if torch.cuda.is_available() and not use_cpu else "cpu"


def prompt_completion_ids(tokenizer, prompt, completion, *, eos: bool = True) -> tuple[list[int], list[int]]:  # noqa: ANN001
    """The token ids of a prompt and of its completion, as TRL's preference trainers build them: a conversation
    through the chat template, plain text with the end-of-sequence token appended to the completion."""
    if is_conversational(prompt) or is_conversational(completion):
        head = prompt_text(tokenizer, prompt)
        full = tokenizer.apply_chat_template(list(prompt) + list(completion), tokenize=False)
        tail = full[len(head):] if full.startswith(head) else full
        return (tokenizer(head, add_special_tokens=False)["input_ids"],
                tokenizer(tail, add_special_tokens=False)["input_ids"])
    text = str(completion)
    if eos and tokenizer.eos_token and not text.endswith(tokenizer.eos_token):
        text += tokenizer.eos_token
    return tokenizer(str(prompt))["input_ids"], tokenizer(text, add_special_tokens=False)["input_ids"]


def _batches(items: Sequence, size: int = BATCH) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def completion_logps(model, pairs: Sequence[tuple[list[int], list[int]]], *, pad_id: int,  # noqa: ANN001
                     max_length: int) -> list[tuple[float, int]]:
    """For each (prompt ids, completion ids): the summed log-probability of the completion given the prompt
    and its number of tokens, the sequence cut to ``max_length`` tokens from the right."""
    import torch

    device = next(model.parameters()).device
    results = []
    for batch in _batches(pairs):
        seqs = [(p + c)[:max_length] for p, c in batch]
        starts = [min(len(p), max_length) for p, _ in batch]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        completion = torch.zeros_like(ids, dtype=torch.bool)
        for i, (seq, start) in enumerate(zip(seqs, starts, strict=True)):
            ids[i, :len(seq)] = torch.tensor(seq)
            mask[i, :len(seq)] = 1
            completion[i, start:len(seq)] = True
        ids, mask, completion = ids.to(device), mask.to(device), completion.to(device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        # token t is predicted by the logits at t - 1
        logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        chosen = completion[:, 1:]
        sums = (logps * chosen).sum(-1)
        counts = chosen.sum(-1)
        results.extend((float(s), int(n)) for s, n in zip(sums.tolist(), counts.tolist(), strict=True))
    return results


def _causal_lm(path: str, device: str):  # noqa: ANN202
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()


def preference_evaluate(*, model_dir: str, reference_dir: str, rows: Sequence[dict], max_length: int,
                        beta: float = 0.1, use_cpu: bool = False) -> dict[str, Any]:
    """Implicit-reward accuracy of a policy trained on preference pairs (DPO, IPO, ORPO, SimPO, ...): the
    share of pairs for which log pi(chosen)/ref(chosen) > log pi(rejected)/ref(rejected), and the mean of
    ``beta`` times that difference (the DPO implicit reward margin)."""
    from training.ml.common import tokenizer_load

    tokenizer = tokenizer_load(model_dir)
    device = _device(use_cpu)
    chosen = [prompt_completion_ids(tokenizer, r["prompt"], r["chosen"]) for r in rows]
    rejected = [prompt_completion_ids(tokenizer, r["prompt"], r["rejected"]) for r in rows]
    logps = {}
    for name, path in (("policy", model_dir), ("reference", reference_dir)):
        model = _causal_lm(path, device)
        logps[name] = ([lp for lp, _ in completion_logps(model, chosen, pad_id=tokenizer.pad_token_id,
                                                          max_length=max_length)],
                       [lp for lp, _ in completion_logps(model, rejected, pad_id=tokenizer.pad_token_id,
                                                          max_length=max_length)])
        del model
    chosen_ratio = [p - r for p, r in zip(logps["policy"][0], logps["reference"][0], strict=True)]
    rejected_ratio = [p - r for p, r in zip(logps["policy"][1], logps["reference"][1], strict=True)]
    margins = [c - r for c, r in zip(chosen_ratio, rejected_ratio, strict=True)]
    n = max(len(margins), 1)
    return {"rows": len(margins),
            "implicit_reward_accuracy": sum(m > 0 for m in margins) / n,
            "implicit_margin": beta * sum(margins) / n,
            "chosen_logratio": sum(chosen_ratio) / n,
            "rejected_logratio": sum(rejected_ratio) / n}


def unpaired_evaluate(*, model_dir: str, reference_dir: str, rows: Sequence[dict], max_length: int,
                      use_cpu: bool = False) -> dict[str, Any]:
    """KTO's counterpart of implicit-reward accuracy: the share of rows whose policy-minus-reference log-ratio
    is positive for a desirable completion and negative for an undesirable one."""
    from training.ml.common import tokenizer_load

    tokenizer = tokenizer_load(model_dir)
    device = _device(use_cpu)
    pairs = [prompt_completion_ids(tokenizer, r["prompt"], r["completion"]) for r in rows]
    values = []
    for path in (model_dir, reference_dir):
        model = _causal_lm(path, device)
        values.append([lp for lp, _ in completion_logps(model, pairs, pad_id=tokenizer.pad_token_id,
                                                         max_length=max_length)])
        del model
    ratios = [p - r for p, r in zip(*values, strict=True)]
    labels = [bool(r["label"]) for r in rows]
    good = [x for x, label in zip(ratios, labels, strict=True) if label]
    bad = [x for x, label in zip(ratios, labels, strict=True) if not label]
    return {"rows": len(ratios),
            "implicit_reward_accuracy": sum((x > 0) == y for x, y in zip(ratios, labels, strict=True))
            / max(len(ratios), 1),
            "desirable_logratio": sum(good) / len(good) if good else None,
            "undesirable_logratio": sum(bad) / len(bad) if bad else None}


def sft_pairs(tokenizer, row: dict) -> tuple[list[int], list[int]]:  # noqa: ANN001
    """(prompt ids, completion ids) of an SFT row: the loss is on the completion, the last assistant turn of
    a conversation, or the whole of a plain text."""
    if row.get("messages"):
        messages = list(row["messages"])
        return prompt_completion_ids(tokenizer, messages[:-1], messages[-1:])
    if row.get("text") is not None:
        return [], tokenizer(row["text"])["input_ids"]
    return prompt_completion_ids(tokenizer, row["prompt"], row["completion"])


def sft_evaluate(*, model_dir: str, rows: Sequence[dict], max_length: int, use_cpu: bool = False) -> dict[str, Any]:
    """Mean negative log-likelihood per completion token and its perplexity."""
    from training.ml.common import tokenizer_load

    tokenizer = tokenizer_load(model_dir)
    model = _causal_lm(model_dir, _device(use_cpu))
    pairs = [sft_pairs(tokenizer, r) for r in rows]
    scored = completion_logps(model, pairs, pad_id=tokenizer.pad_token_id, max_length=max_length)
    total, tokens = -sum(lp for lp, _ in scored), sum(n for _, n in scored)
    loss = total / max(tokens, 1)
    return {"rows": len(rows), "tokens": tokens, "loss": loss, "perplexity": math.exp(min(loss, 50.0))}


def reward_sequence_ids(tokenizer, prompt, completion) -> list[int]:  # noqa: ANN001
    """The ids a reward model scores, as TRL's RewardTrainer builds them: the conversation through the chat
    template, or prompt + completion + end-of-sequence token."""
    if is_conversational(completion):
        text = tokenizer.apply_chat_template(list(prompt or []) + list(completion), tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    text = str(prompt or "") + str(completion)
    if tokenizer.eos_token and not text.endswith(tokenizer.eos_token):
        text += tokenizer.eos_token
    return tokenizer(text)["input_ids"]


def sequence_scores(model, sequences: Sequence[list[int]], *, pad_id: int, max_length: int) -> list[float]:  # noqa: ANN001
    """The score of a sequence-classification model (one label) for each sequence."""
    import torch

    device = next(model.parameters()).device
    scores = []
    for batch in _batches(sequences):
        seqs = [s[:max_length] for s in batch]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, seq in enumerate(seqs):
            ids[i, :len(seq)] = torch.tensor(seq)
            mask[i, :len(seq)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        scores.extend(logits[:, 0].tolist())
    return scores


def reward_evaluate(*, model_dir: str, rows: Sequence[dict], max_length: int, use_cpu: bool = False) -> dict[str, Any]:
    """Pairwise accuracy of a reward model, score(chosen) > score(rejected), and the mean score margin."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from training.ml.common import tokenizer_load

    tokenizer = tokenizer_load(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    model = model.to(_device(use_cpu)).eval()
    pad = tokenizer.pad_token_id
    chosen = sequence_scores(model, [reward_sequence_ids(tokenizer, r.get("prompt"), r["chosen"]) for r in rows],
                             pad_id=pad, max_length=max_length)
    rejected = sequence_scores(model, [reward_sequence_ids(tokenizer, r.get("prompt"), r["rejected"]) for r in rows],
                               pad_id=pad, max_length=max_length)
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    n = max(len(margins), 1)
    return {"rows": len(margins), "accuracy": sum(m > 0 for m in margins) / n, "mean_margin": sum(margins) / n}


def first_error(correct: Sequence[bool]) -> int:
    """The index of the first wrong step, -1 when every step is right (ProcessBench's convention)."""
    return next((i for i, ok in enumerate(correct) if not ok), -1)


def step_scores(model, tokenizer, rows: Sequence[dict], *, separator: str, max_length: int) -> list[list[float]]:  # noqa: ANN001
    """For each stepwise row, the probability that each step is right: the PRM's 'correct' class at the
    separator token after the step. Steps cut off by ``max_length`` get no score."""
    import torch

    from prefdata.tokens import steps_tokenize

    device = next(model.parameters()).device
    result = []
    for row in rows:
        ids, positions = steps_tokenize(tokenizer, row["prompt"], row["completions"], separator=separator,
                                        max_length=max_length)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids], device=device)).logits[0].float()
        probs = torch.softmax(logits, dim=-1)[:, 1]
        result.append([float(probs[p]) for p in positions])
    return result


def prm_evaluate(*, model_dir: str, rows: Sequence[dict], separator: str, max_length: int,
                 use_cpu: bool = False) -> dict[str, Any]:
    """Step accuracy (a step predicted right when P(right) > 0.5) and first-error accuracy."""
    import torch
    from transformers import AutoModelForTokenClassification

    from training.ml.common import tokenizer_load

    tokenizer = tokenizer_load(model_dir)
    model = AutoModelForTokenClassification.from_pretrained(model_dir, dtype=torch.float32)
    model = model.to(_device(use_cpu)).eval()
    scores = step_scores(model, tokenizer, rows, separator=separator, max_length=max_length)
    steps = hits = first_hits = 0
    for row, probs in zip(rows, scores, strict=True):
        truth = [float(v) >= 0.5 for v in row["labels"]][:len(probs)]
        predicted = [p > 0.5 for p in probs]
        steps += len(truth)
        hits += sum(t == p for t, p in zip(truth, predicted, strict=True))
        first_hits += first_error(truth) == first_error(predicted)
    return {"rows": len(rows), "steps": steps, "step_accuracy": hits / max(steps, 1),
            "first_error_accuracy": first_hits / max(len(rows), 1)}
