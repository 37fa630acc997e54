"""A Bradley-Terry reward model (Ouyang et al. 2022, arXiv:2203.02155) with TRL's RewardTrainer: a sequence
classifier with one output, trained so that score(chosen) - score(rejected) is large. Rows with a ``margin``
ask for at least that difference (Touvron et al. 2023, Llama 2, section 3.2.2).

    python -m training.ml.reward --config cfg.json
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
class RewardScriptConfig(TrainConfig):
    """Train a reward model (a score per response) on preference pairs (prompt, chosen, rejected[, margin])."""

    dataset: str = field(metadata={"help": "preference JSONL file (prompt, chosen, rejected, optional margin)"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate"})
    use_margin: bool = field(default=True, metadata={
        "help": "when rows have a margin, train score(chosen) - score(rejected) to exceed it"})
    center_rewards_coefficient: float = field(default=0.0, metadata={
        "help": "weight of a penalty on the mean reward, keeping scores centred on 0 (Eisenstein et al. 2023); "
                "0: none"})


def main(cfg: RewardScriptConfig) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    run = run_start(cfg, method="reward")
    dataset = rows_load(cfg.dataset)
    if "margin" in dataset.column_names and (not cfg.use_margin or None in dataset["margin"]):
        # not wanted, or missing on some rows (the collator needs one on every row or on none)
        dataset = dataset.remove_columns("margin")
    say("start", method="reward", rows=len(dataset), max_steps=cfg.max_steps,
        margin="margin" in dataset.column_names)
    tokenizer = tokenizer_load(cfg.model)
    model = AutoModelForSequenceClassification.from_pretrained(cfg.model, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = RewardConfig(max_length=cfg.max_length,
                        center_rewards_coefficient=cfg.center_rewards_coefficient or None,
                        **training_arguments(run))
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=lora_config(cfg, task_type="SEQ_CLS"), callbacks=run.callbacks())
    out = train_and_save(run, trainer, tokenizer)
    if cfg.eval_dataset and is_main_process():
        from training.ml.evaluate import evaluation_write, reward_evaluate

        evaluation_write(out, reward_evaluate(model_dir=str(out), rows=list(rows_load(cfg.eval_dataset)),
                                              max_length=cfg.max_length, use_cpu=cfg.use_cpu))
    return out


if __name__ == "__main__":
    script_run(RewardScriptConfig, main)
