"""Local reward models: a sequence-classification head gives one score per response (an outcome reward
model, as TRL's ``RewardTrainer`` trains), a token-classification head one score per reasoning step (a
process reward model, as TRL's ``PRMTrainer`` trains: the label sits on each step's last token).

Both load from the endpoint's path with ``local_files_only``: nothing is downloaded at run time.
"""

from __future__ import annotations

import threading

from synth.backends.base import Conversation, Sampling

# What TRL's PRMTrainer puts between steps (``step_separator``), so a PRM is asked the way it was trained.
STEP_SEPARATOR = "\n"


class _LocalClassifier:
    """What both heads share: the model and tokenizer loaded once, a lock, sorted batches."""

    auto_class = ""

    def __init__(self, model_dir: str, *, dtype: str = "float32", device: str = "cpu", batch_size: int = 8) -> None:
        import torch
        import transformers
        from transformers import AutoTokenizer

        self.name = model_dir
        self.torch = torch
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        auto = getattr(transformers, self.auto_class)
        self.model = auto.from_pretrained(model_dir, dtype=getattr(torch, dtype), local_files_only=True).to(self.device)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()
        self._lock = threading.Lock()

    def generate(self, conversations: list[Conversation], sampling: Sampling) -> list[list[str]]:
        raise TypeError(f"{self.name} is a reward model: it scores responses, it does not generate them")

    def score(self, conversations: list[Conversation], candidates: list[list[str]]) -> list[list[float]]:
        raise TypeError(f"{self.name} is a reward model: use score_responses, not log-probabilities")

    def _forward(self, rows: list[list[int]]):
        """Logits of right-padded rows, one forward per batch of similar lengths; in the rows' order."""
        torch = self.torch
        pad = self.tokenizer.pad_token_id
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out: list = [None] * len(rows)
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                width = max(len(rows[i]) for i in batch)
                ids = torch.tensor([rows[i] + [pad] * (width - len(rows[i])) for i in batch], device=self.device)
                mask = torch.tensor([[1] * len(rows[i]) + [0] * (width - len(rows[i])) for i in batch],
                                    device=self.device)
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
                for row, i in zip(logits, batch, strict=True):
                    out[i] = row
        return out


class ScorerBackend(_LocalClassifier):
    """One score per (conversation, response): the reward head's logit at the last real token."""

    auto_class = "AutoModelForSequenceClassification"

    def _ids(self, conversation: Conversation, response: str) -> list[int]:
        messages = [*conversation, {"role": "assistant", "content": response}]
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False)
        else:
            text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] or [self.tokenizer.pad_token_id]

    def score_responses(self, conversations: list[Conversation], responses: list[str]) -> list[float]:
        """The reward of each response to its conversation (higher is better), batched.

        The model pools the last non-padding token itself (right padding). With one label the logit is
        the reward; with two (a "bad"/"good" classifier) the difference of the two logits is.
        """
        if len(conversations) != len(responses):
            raise ValueError("one response per conversation")
        if not responses:
            return []
        rows = [self._ids(c, r) for c, r in zip(conversations, responses, strict=True)]
        logits = self._forward_pooled(rows)
        return [float(v[0]) if len(v) == 1 else float(v[-1] - v[0]) for v in logits]

    def _forward_pooled(self, rows: list[list[int]]):
        # The classification model returns (batch, labels) already pooled.
        return [row.tolist() for row in self._forward(rows)]


class StepScorerBackend(_LocalClassifier):
    """One score per reasoning step: the probability of "good" at the step's last token."""

    auto_class = "AutoModelForTokenClassification"

    def score_steps(self, conversations: list[Conversation], steps: list[list[str]]) -> list[list[float]]:
        """For each conversation, P(step is correct) of each of its steps, tokenized as TRL's PRMTrainer
        does: the prompt, then each step followed by the separator; read at each step's last token."""
        if len(conversations) != len(steps):
            raise ValueError("one list of steps per conversation")
        rows, where = [], []
        for conversation, solution in zip(conversations, steps, strict=True):
            prompt = "\n".join(m["content"] for m in conversation)
            ids = list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if self.tokenizer.bos_token_id is not None:
                ids = [self.tokenizer.bos_token_id, *ids]
            separator = self.tokenizer(STEP_SEPARATOR, add_special_tokens=False)["input_ids"]
            positions = []
            for step in solution:
                step_ids = self.tokenizer(step, add_special_tokens=False)["input_ids"] or separator[:1]
                ids.extend(step_ids)
                positions.append(len(ids) - 1)
                ids.extend(separator)
            rows.append(ids or [self.tokenizer.pad_token_id])
            where.append(positions)
        torch = self.torch
        scores = []
        for logits, positions in zip(self._forward(rows), where, strict=True):
            if not positions:
                scores.append([])
                continue
            picked = logits[positions]
            probs = torch.softmax(picked, dim=-1)[:, -1] if picked.shape[-1] > 1 else torch.sigmoid(picked[:, 0])
            scores.append([float(p) for p in probs])
        return scores
