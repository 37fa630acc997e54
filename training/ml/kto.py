"""Kahneman-Tversky Optimization (Ethayarajh et al. 2024, arXiv:2402.01306) with TRL's KTOTrainer: a policy
trained on unpaired rows, one completion each marked desirable or not.

    python -m training.ml.kto --config cfg.json
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


@dataclass
class KTOScriptConfig(TrainConfig):
    """Train a causal LM on unpaired rows (prompt, completion, label: desirable or not) with KTO."""

    dataset: str = field(metadata={"help": "unpaired JSONL file (prompt, completion, label)"})
    model: str = field(metadata={"help": "base model directory (the reference model is loaded from it too)"})
    beta: float = field(default=0.1, metadata={"help": "KL strength: how far the policy may move from the reference"})
    loss_type: str = field(default="kto", metadata={
        "help": "kto, or apo_zero_unpaired (anchored preference optimization, unpaired)",
        "choices": choices("kto", "apo_zero_unpaired")})
    desirable_weight: float = field(default=1.0, metadata={
        "help": "weight of the desirable rows' loss (raise it when they are fewer than the undesirable ones)"})
    undesirable_weight: float = field(default=1.0, metadata={"help": "weight of the undesirable rows' loss"})
    precompute_ref_log_probs: bool = field(default=False, metadata={
        "help": "compute the reference model's log-probabilities once before training"})


def main(cfg: KTOScriptConfig) -> Path:
    import torch
    from transformers import AutoModelForCausalLM
    from trl import KTOConfig, KTOTrainer

    run = run_start(cfg, method="kto")
    dataset = rows_load(cfg.dataset)
    say("start", method="kto", rows=len(dataset), max_steps=cfg.max_steps)
    tokenizer = tokenizer_load(cfg.model)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    args = KTOConfig(beta=cfg.beta, loss_type=cfg.loss_type, desirable_weight=cfg.desirable_weight,
                     undesirable_weight=cfg.undesirable_weight, precompute_ref_log_probs=cfg.precompute_ref_log_probs,
                     max_length=cfg.max_length, **training_arguments(run))
    trainer = KTOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora_config(cfg), callbacks=run.callbacks())
    out = train_and_save(run, trainer, tokenizer)
    if cfg.eval_dataset and is_main_process():
        from training.ml.evaluate import evaluation_write, unpaired_evaluate

        evaluation_write(out, unpaired_evaluate(model_dir=str(out), reference_dir=cfg.model,
                                                rows=list(rows_load(cfg.eval_dataset)), max_length=cfg.max_length,
                                                use_cpu=cfg.use_cpu))
    return out


if __name__ == "__main__":
    script_run(KTOScriptConfig, main)
