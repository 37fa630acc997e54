"""Direct Preference Optimization (Rafailov et al., 2023, arXiv:2305.18290) and the losses TRL's DPOTrainer
offers next to it (IPO, robust / conservative DPO, hinge, ...).

    python -m training.ml.dpo --config cfg.json
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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

# TRL 1.16's DPOConfig.loss_type values (trl/trainer/dpo_trainer.py, DPOTrainer.dpo_loss)
DPO_LOSS_TYPES = choices("sigmoid", "ipo", "hinge", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot",
                         "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


@dataclass
class DPOScriptConfig(TrainConfig):
    """Train a causal LM on preference pairs (prompt, chosen, rejected) with DPO or one of its losses."""

    dataset: str = field(metadata={"help": "preference JSONL file (prompt, chosen, rejected)"})
    model: str = field(metadata={"help": "base model directory (the reference model is loaded from it too)"})
    beta: float = field(default=0.1, metadata={"help": "KL strength: how far the policy may move from the reference"})
    loss_type: str = field(default="sigmoid", metadata={
        "help": "sigmoid (DPO), ipo (IPO), robust (with label_smoothing: robust DPO), hinge (SLiC), exo_pair, "
                "nca_pair, bco_pair, sppo_hard, aot, aot_unpaired, apo_zero, apo_down, discopop, sft, "
                "sigmoid_norm (TRL's loss_type)",
        "choices": DPO_LOSS_TYPES})
    label_smoothing: float = field(default=0.0, metadata={
        "help": "probability that a label is flipped, in [0, 0.5): conservative DPO (cDPO) with loss sigmoid, "
                "robust DPO with loss robust"})
    precompute_ref_log_probs: bool = field(default=False, metadata={
        "help": "compute the reference model's log-probabilities once before training (the reference model "
                "then leaves memory)"})


def main(cfg: DPOScriptConfig) -> Path:
    import torch
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    run = run_start(cfg, method="dpo")
    dataset = rows_load(cfg.dataset)
    say("start", method="dpo", rows=len(dataset), max_steps=cfg.max_steps)
    tokenizer = tokenizer_load(cfg.model)
    # Loaded from a path: TRL rebuilds the frozen reference model from the policy's name_or_path (with LoRA,
    # the reference is the policy with its adapters off).
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    args = DPOConfig(beta=cfg.beta, loss_type=[cfg.loss_type], label_smoothing=cfg.label_smoothing,
                     precompute_ref_log_probs=cfg.precompute_ref_log_probs, max_length=cfg.max_length,
                     **training_arguments(run))
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora_config(cfg), callbacks=run.callbacks())
    out = train_and_save(run, trainer, tokenizer)
    if cfg.eval_dataset and is_main_process():
        from training.ml.evaluate import evaluation_write, preference_evaluate

        evaluation_write(out, preference_evaluate(model_dir=str(out), reference_dir=cfg.model,
                                                  rows=list(rows_load(cfg.eval_dataset)), max_length=cfg.max_length,
                                                  beta=cfg.beta, use_cpu=cfg.use_cpu))
    return out


if __name__ == "__main__":
    script_run(DPOScriptConfig, main)
