"""A local transformers model: batched generation and batched log-probability scoring."""

from __future__ import annotations

import threading

from annotate.text import text_clean
from synth.backends.base import Conversation, Sampling


class TransformersBackend:
    def __init__(self, model_dir: str, *, dtype: str = "float32", device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = model_dir
        self.torch = torch
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()
        # One model per process is shared by threads; generate is not re-entrant on one model.
        self._lock = threading.Lock()

    def _prompt_ids(self, conversation: Conversation) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, conversations: list[Conversation], sampling: Sampling) -> list[list[str]]:
        torch = self.torch
        prompts = [self._prompt_ids(c) for c in conversations for _ in range(sampling.n)]
        outputs: list[str] = []
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        pad = self.tokenizer.pad_token_id
        with self._lock, torch.inference_mode():
            for start in range(0, len(prompts), sampling.batch_size):
                batch = prompts[start : start + sampling.batch_size]
                width = max(len(p) for p in batch)
                # Left padding, so every row's continuation starts at the same position.
                ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=self.device)
                mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=self.device)
                kwargs = {"max_new_tokens": sampling.max_new_tokens, "pad_token_id": pad}
                if sampling.temperature > 0:
                    kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
                else:
                    kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
                for row in out[:, width:]:
                    outputs.append(text_clean(self.tokenizer.decode(row, skip_special_tokens=True)).strip())
        return [outputs[i : i + sampling.n] for i in range(0, len(outputs), sampling.n)]

    def score(self, conversations: list[Conversation], candidates: list[list[str]], *,
              batch_size: int = 8) -> list[list[float]]:
        """Summed log-probabilities of candidate replies.

        When every candidate is a single token (the usual "A" / "B" verdict), one forward pass
        over the prompt scores all of them: the prompt is shared, not repeated per candidate.
        """
        torch = self.torch
        prompts = [self._prompt_ids(c) for c in conversations]
        cand_ids = [[self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in cs] for cs in candidates]
        single = all(len(ids) == 1 for cs in cand_ids for ids in cs)
        pad = self.tokenizer.pad_token_id
        results: list[list[float]] = []
        with self._lock, torch.inference_mode():
            if single:
                for start in range(0, len(prompts), batch_size):
                    batch = prompts[start : start + batch_size]
                    width = max(len(p) for p in batch)
                    ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=self.device)
                    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=self.device)
                    logits = self.model(input_ids=ids, attention_mask=mask).logits[:, -1, :].float()
                    logprobs = torch.log_softmax(logits, dim=-1)
                    for row, cs in zip(logprobs, cand_ids[start : start + batch_size], strict=True):
                        results.append([row[ids_[0]].item() for ids_ in cs])
                return results
            flat = [(i, p + c, len(p)) for i, (p, cs) in enumerate(zip(prompts, cand_ids, strict=True)) for c in cs]
            scores: list[float] = []
            for start in range(0, len(flat), batch_size):
                batch = flat[start : start + batch_size]
                width = max(len(seq) for _, seq, _ in batch)
                ids = torch.tensor([seq + [pad] * (width - len(seq)) for _, seq, _ in batch], device=self.device)
                mask = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for _, seq, _ in batch],
                                    device=self.device)
                logprobs = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
                for row, (_, seq, plen) in zip(logprobs, batch, strict=True):
                    targets = torch.tensor(seq[plen:], device=self.device)
                    scores.append(row[plen - 1 : len(seq) - 1].gather(1, targets[:, None]).sum().item())
            it = iter(scores)
            return [[next(it) for _ in cs] for cs in cand_ids]
