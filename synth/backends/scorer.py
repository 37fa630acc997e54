"""Local reward models: a sequence-classification head gives one score per response (an outcome reward
model, as TRL's ``RewardTrainer`` trains), a token-classification head one score per reasoning step (a
process reward model, as TRL's ``PRMTrainer`` trains: the label sits on each step's last token).

Both load from the endpoint's path with ``local_files_only``: nothing is downloaded at run time.
"""

from __future__ import annotations

import threading

from synth.backends.base import Conversation, Sampling

# The separator after each step when a model's config names none (TRL's PRMTrainer's and training.ml.prm's
# default).
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
    """One score per reasoning step: P(right) at the last token of the separator after the step, the
    position the platform's PRM (``training.ml.prm``) is trained at, tokenized by the same function
    (``prefdata.tokens.steps_tokenize``: the prompt through the chat template, then each step and the
    separator). The separator and which class is "right" are read from the model's config
    (``step_separator``, ``id2label``), as the training script saved them."""

    auto_class = "AutoModelForTokenClassification"

    def __init__(self, model_dir: str, **kwargs) -> None:
        super().__init__(model_dir, **kwargs)
        config = self.model.config
        self.separator = getattr(config, "step_separator", None) or STEP_SEPARATOR
        labels = {int(k): str(v).lower() for k, v in (getattr(config, "id2label", None) or {}).items()}
        right = [k for k, v in labels.items() if v in ("right", "good", "correct", "positive", "+")]
        self.right = right[0] if right else max(labels, default=0)
        self.max_length = int(getattr(config, "max_position_embeddings", 0) or 4096)

    def score_steps(self, conversations: list[Conversation], steps: list[list[str]]) -> list[list[float]]:
        """For each conversation, P(step is correct) of each of its steps; a step past the model's length
        gets the last score read (the solution is cut there)."""
        from prefdata.tokens import steps_tokenize

        if len(conversations) != len(steps):
            raise ValueError("one list of steps per conversation")
        rows, where = [], []
        for conversation, solution in zip(conversations, steps, strict=True):
            ids, positions = steps_tokenize(self.tokenizer, conversation, list(solution), separator=self.separator,
                                            max_length=self.max_length)
            rows.append(ids or [self.tokenizer.pad_token_id])
            where.append(positions)
        torch = self.torch
        scores = []
        for logits, positions, solution in zip(self._forward(rows), where, steps, strict=True):
            if not positions:
                scores.append([0.5] * len(solution))
                continue
            picked = logits[positions]
            if picked.shape[-1] > 1:
                probs = torch.softmax(picked, dim=-1)[:, self.right]
            else:
                probs = torch.sigmoid(picked[:, 0])
            read = [float(p) for p in probs]
            scores.append(read + [read[-1]] * (len(solution) - len(read)))
        return scores
