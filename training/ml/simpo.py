"""Simple Preference Optimization (Meng et al. 2024, arXiv:2405.14734) with TRL's CPOTrainer and its SimPO
loss (``trl.experimental`` since TRL 1.0): the length-normalised log-probability is the reward, with a
target margin gamma and no reference model.

    python -m training.ml.simpo --config cfg.json
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
class SimPOScriptConfig(TrainConfig):
    """Train a causal LM on preference pairs (prompt, chosen, rejected) with SimPO (TRL experimental)."""

    dataset: str = field(metadata={"help": "preference JSONL file (prompt, chosen, rejected)"})
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate"})
    beta: float = field(default=2.0, metadata={"help": "reward scale (the paper uses 2 to 10)"})
    simpo_gamma: float = field(default=0.5, metadata={"help": "target reward margin (gamma / beta in the paper)"})
    cpo_alpha: float = field(default=0.0, metadata={
        "help": "weight of an SFT loss on the chosen reply (0: pure SimPO; above 0: CPO-SimPO)"})


def main(cfg: SimPOScriptConfig) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the method is marked experimental where it is chosen
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    run = run_start(cfg, method="simpo")
    dataset = rows_load(cfg.dataset)
    say("start", method="simpo", rows=len(dataset), max_steps=cfg.max_steps)
    tokenizer = tokenizer_load(cfg.model)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    args = CPOConfig(loss_type="simpo", beta=cfg.beta, simpo_gamma=cfg.simpo_gamma, cpo_alpha=cfg.cpo_alpha,
                     max_length=cfg.max_length, **training_arguments(run))
    trainer = CPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora_config(cfg), callbacks=run.callbacks())
    out = train_and_save(run, trainer, tokenizer)
    if cfg.eval_dataset and is_main_process():
        from training.ml.evaluate import evaluation_write, preference_evaluate

        evaluation_write(out, preference_evaluate(model_dir=str(out), reference_dir=cfg.model,
                                                  rows=list(rows_load(cfg.eval_dataset)), max_length=cfg.max_length,
                                                  beta=cfg.beta, use_cpu=cfg.use_cpu))
    return out


if __name__ == "__main__":
    script_run(SimPOScriptConfig, main)
