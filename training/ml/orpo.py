"""Odds Ratio Preference Optimization (Hong et al. 2024, arXiv:2403.07691) with TRL's ORPOTrainer (in
``trl.experimental`` since TRL 1.0): supervised fine-tuning on the chosen reply plus an odds-ratio penalty on
the rejected one, with no reference model.

    python -m training.ml.orpo --config cfg.json
"""

from __future__ import annotations

import os
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
class ORPOScriptConfig(TrainConfig):
    """Train a causal LM on preference pairs (prompt, chosen, rejected) with ORPO (TRL experimental)."""

    dataset: str = field(metadata={"help": "preference JSONL file (prompt, chosen, rejected)"})
    beta: float = field(default=0.1, metadata={
        "help": "weight of the odds-ratio term next to the SFT loss (lambda in the paper)"})


def main(cfg: ORPOScriptConfig) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the method is marked experimental where it is chosen
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    run = run_start(cfg, method="orpo")
    dataset = rows_load(cfg.dataset)
    say("start", method="orpo", rows=len(dataset), max_steps=cfg.max_steps)
    tokenizer = tokenizer_load(cfg.model)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    args = ORPOConfig(beta=cfg.beta, max_length=cfg.max_length, **training_arguments(run))
    trainer = ORPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          peft_config=lora_config(cfg), callbacks=run.callbacks())
    out = train_and_save(run, trainer, tokenizer)
    if cfg.eval_dataset and is_main_process():
        from training.ml.evaluate import evaluation_write, preference_evaluate

        evaluation_write(out, preference_evaluate(model_dir=str(out), reference_dir=cfg.model,
                                                  rows=list(rows_load(cfg.eval_dataset)), max_length=cfg.max_length,
                                                  beta=cfg.beta, use_cpu=cfg.use_cpu))
    return out


if __name__ == "__main__":
    script_run(ORPOScriptConfig, main)
