"""Supervised fine-tuning on demonstrations with TRL's SFTTrainer.

    python -m training.ml.sft --config cfg.json

Rows are conversations (``messages``), a ``prompt`` and its ``completion``, or plain ``text``. By default the
loss is on the completion only: the completion of a prompt-completion row, the last assistant turn of a
conversation (a conversation is split there into a prompt and a completion, since TRL's ``assistant_only_loss``
needs a chat template with generation markers), the whole of a plain text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.ml.common import (
    TrainConfig,
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


@dataclass
class SFTScriptConfig(TrainConfig):
    """Fine-tune a causal LM on demonstrations (messages, prompt + completion, or text)."""

    dataset: str = field(metadata={"help": "SFT JSONL file (messages, prompt + completion, or text)"})
    learning_rate: float = field(default=2e-5, metadata={"help": "AdamW learning rate"})
    completion_only_loss: bool = field(default=True, metadata={
        "help": "loss on the completion only (the last assistant turn of a conversation); false: on every token"})
    assistant_only_loss: bool = field(default=False, metadata={
        "help": "conversations: loss on every assistant turn (TRL's assistant_only_loss; needs a chat template "
                "with generation markers, or one TRL knows how to patch)"})
    packing: bool = field(default=False, metadata={"help": "pack several rows into each max_length sequence"})


def _split_last_turn(row: dict) -> dict:
    """A conversation as a conversational prompt-completion row: the turns before the last, and the last."""
    messages = row["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def dataset_prepare(dataset, cfg: SFTScriptConfig):  # noqa: ANN001, ANN201
    """Conversations ending with the assistant become prompt-completion rows when the loss is on the
    completion only and not on every assistant turn."""
    if "messages" not in dataset.column_names or not cfg.completion_only_loss or cfg.assistant_only_loss:
        return dataset
    if not all(row and row[-1].get("role") == "assistant" for row in dataset["messages"]):
        return dataset
    return dataset.map(_split_last_turn, remove_columns=dataset.column_names)


def main(cfg: SFTScriptConfig) -> Path:
    import torch
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    run = run_start(cfg, method="sft")
    dataset = dataset_prepare(rows_load(cfg.dataset), cfg)
    say("start", method="sft", rows=len(dataset), max_steps=cfg.max_steps)
    tokenizer = tokenizer_load(cfg.model)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    # plain text (and a conversation kept whole) has no completion to restrict the loss to
    completion_only = cfg.completion_only_loss and {"prompt", "completion"} <= set(dataset.column_names)
    args = SFTConfig(max_length=cfg.max_length, completion_only_loss=completion_only,
                     assistant_only_loss=cfg.assistant_only_loss, packing=cfg.packing,
                     **training_arguments(run))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora_config(cfg), callbacks=run.callbacks())
    out = train_and_save(run, trainer, tokenizer)
    if cfg.eval_dataset and is_main_process():
        from training.ml.evaluate import evaluation_write, sft_evaluate

        evaluation_write(out, sft_evaluate(model_dir=str(out), rows=list(rows_load(cfg.eval_dataset)),
                                           max_length=cfg.max_length, use_cpu=cfg.use_cpu))
    return out


if __name__ == "__main__":
    script_run(SFTScriptConfig, main)
