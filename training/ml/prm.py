"""A process reward model: a token classifier that judges each step of a solution, trained at the separator
after each step (the PRM800K recipe, Lightman et al. 2023, arXiv:2305.20050, as in Math-Shepherd, Wang et al.
2023, arXiv:2312.08935). TRL removed its PRMTrainer, so this is transformers' Trainer with a loss of its own.

    python -m training.ml.prm --config cfg.json

1. A row is a prompt, its steps and one label per step (true / false, or a float in [0, 1]: the share of
   roll-outs from that step that reach the right answer, Math-Shepherd's soft label).
2. The input is the prompt, then each step followed by the separator; only the last token of each separator
   carries a label, every other token -100 (ignored).
3. The head has two classes (wrong, right). Hard labels: cross-entropy on the two classes. Soft labels: binary
   cross-entropy of the float target against logit(right) - logit(wrong), the same model read the same way.
4. A step's score is P(right) at its separator, which the step-scorer endpoint reads back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefdata.tokens import steps_tokenize
from training.ml.common import (
    TrainConfig,
    choices,
    is_main_process,
    lora_config,
    rows_load,
    run_start,
    say,
    script_run,
    tokenizer_load,
    train_and_save,
    training_arguments,
)

IGNORE = -100


@dataclass
class PRMScriptConfig(TrainConfig):
    """Train a process reward model (a score per step) on stepwise rows (prompt, completions, labels)."""

    dataset: str = field(metadata={"help": "stepwise JSONL file (prompt, completions: the steps, labels: one each)"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate"})
    step_separator: str = field(default="\n", metadata={
        "help": "text after each step; the label sits on its last token (saved with the model for scoring)"})
    label_mode: str = field(default="hard", metadata={
        "help": "hard: two-class cross-entropy on true / false labels; soft: binary cross-entropy on float "
                "labels in [0, 1] (Math-Shepherd)",
        "choices": choices("hard", "soft")})


def features(row: dict, *, tokenizer, separator: str, max_length: int, soft: bool) -> dict[str, Any]:  # noqa: ANN001
    ids, positions = steps_tokenize(tokenizer, row["prompt"], row["completions"], separator=separator,
                                    max_length=max_length)
    labels: list[float] = [IGNORE] * len(ids)
    for position, label in zip(positions, row["labels"], strict=False):
        labels[position] = float(label) if soft else int(bool(label) if isinstance(label, bool) else label >= 0.5)
    return {"input_ids": ids, "labels": labels}


def dataset_build(rows, *, tokenizer, separator: str, max_length: int, soft: bool):  # noqa: ANN001, ANN201
    """The token ids and labels of each stepwise row with at least one step that fits in ``max_length``.

    Built from a list rather than with ``Dataset.map``: a mapped column that keeps the name ``labels`` keeps its
    type too (a list of booleans), which would turn -100 into True."""
    from datasets import Dataset

    built = [features(row, tokenizer=tokenizer, separator=separator, max_length=max_length, soft=soft)
             for row in rows]
    return Dataset.from_list([r for r in built if any(label != IGNORE for label in r["labels"])])


def collator(pad_id: int, *, soft: bool):  # noqa: ANN201
    """Right-pads input ids (``pad_id``) and labels (-100) to the longest row of the batch."""
    import torch

    def collate(rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.float if soft else torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            mask[i, :n] = 1
            labels[i, :n] = torch.tensor(r["labels"], dtype=labels.dtype)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def step_trainer_class():  # noqa: ANN201
    """transformers' Trainer with the step loss (hard or soft) and the step accuracy of each logged step."""
    import torch
    from torch import nn
    from transformers import Trainer

    class StepTrainer(Trainer):
        def __init__(self, *args, soft: bool = False, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, **kwargs)
            self.soft = soft
            self._accuracy: list[float] = []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            labelled = labels != IGNORE
            logits = outputs.logits[labelled].float()  # (labelled tokens, 2)
            target = labels[labelled]
            if self.soft:
                loss = nn.functional.binary_cross_entropy_with_logits(logits[:, 1] - logits[:, 0], target.float())
            else:
                loss = nn.functional.cross_entropy(logits, target.long())
            with torch.no_grad():
                right = (logits[:, 1] > logits[:, 0]) == (target.float() >= 0.5)
                self._accuracy.append(right.float().mean().item() if len(right) else 0.0)
            return (loss, outputs) if return_outputs else loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs and self._accuracy:
                logs["step_accuracy"] = sum(self._accuracy) / len(self._accuracy)
                self._accuracy.clear()
            super().log(logs, start_time)

    return StepTrainer


def main(cfg: PRMScriptConfig) -> Path:
    import torch
    from transformers import AutoModelForTokenClassification, TrainingArguments

    run = run_start(cfg, method="prm")
    soft = cfg.label_mode == "soft"
    tokenizer = tokenizer_load(cfg.model)
    dataset = dataset_build(rows_load(cfg.dataset), tokenizer=tokenizer, separator=cfg.step_separator,
                            max_length=cfg.max_length, soft=soft)
    say("start", method="prm", rows=len(dataset), max_steps=cfg.max_steps)
    model = AutoModelForTokenClassification.from_pretrained(
        cfg.model, num_labels=2, id2label={0: "wrong", 1: "right"}, label2id={"wrong": 0, "right": 1},
        dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.step_separator = cfg.step_separator  # read back by the step scorer
    lora = lora_config(cfg, task_type="TOKEN_CLS")
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    args = TrainingArguments(remove_unused_columns=False, label_names=["labels"], **training_arguments(run))
    trainer = step_trainer_class()(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                   data_collator=collator(tokenizer.pad_token_id, soft=soft),
                                   callbacks=run.callbacks(), soft=soft)
    out = train_and_save(run, trainer, tokenizer)
    if cfg.eval_dataset and is_main_process():
        from training.ml.evaluate import evaluation_write, prm_evaluate

        evaluation_write(out, prm_evaluate(model_dir=str(out), rows=list(rows_load(cfg.eval_dataset)),
                                           separator=cfg.step_separator, max_length=cfg.max_length,
                                           use_cpu=cfg.use_cpu))
    return out


if __name__ == "__main__":
    script_run(PRMScriptConfig, main)
