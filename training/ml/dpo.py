"""Direct Preference Optimization (Rafailov et al., 2023, arXiv:2305.18290) with TRL's DPOTrainer.

    python -m training.ml.dpo --config cfg.json
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from training.ml.common import config_parse, last_checkpoint, metrics_callback, metrics_keep_until, parent_watch, say


@dataclass
class DPOScriptConfig:
    """Train a causal LM on preference pairs (prompt, chosen, rejected) with DPO."""

    dataset: str = field(metadata={"help": "preference JSONL file (prompt, chosen, rejected)"})
    model: str = field(metadata={"help": "base model directory (the reference model is loaded from it too)"})
    output_dir: str = field(metadata={"help": "where the trained model and metrics.jsonl are written"})
    beta: float = field(default=0.1, metadata={"help": "KL strength: how far the policy may move from the reference"})
    loss_type: str = field(default="sigmoid", metadata={"help": "sigmoid (DPO), ipo, hinge, ... (TRL loss_type)"})
    learning_rate: float = field(default=5e-6, metadata={"help": "AdamW learning rate"})
    max_steps: int = field(default=10, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=2, metadata={"help": "per-device batch size"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "batches per optimizer step"})
    max_length: int = field(default=512, metadata={"help": "truncate prompt + completion to this many tokens"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    save_steps: int = field(default=50, metadata={"help": "checkpoint every this many steps (a stopped job resumes "
                                                          "from its last checkpoint)"})
    use_cpu: bool = field(default=True, metadata={"help": "train on the CPU even where a GPU exists"})


def main(cfg: DPOScriptConfig) -> Path:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = out / "checkpoints"
    resume = last_checkpoint(checkpoints)
    if resume is None:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    else:
        metrics_keep_until(out / "metrics.jsonl", resume[1])
        say("resume", checkpoint=resume[0], step=resume[1])
    torch.manual_seed(cfg.seed)
    dataset = load_dataset("json", data_files=cfg.dataset, split="train")
    say("start", method="dpo", rows=len(dataset), max_steps=cfg.max_steps)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Loaded from a path: TRL rebuilds the frozen reference model from the policy's name_or_path.
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    args = DPOConfig(
        output_dir=str(checkpoints),
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        learning_rate=cfg.learning_rate,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        seed=cfg.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to="none",
        use_cpu=cfg.use_cpu,
        bf16=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[metrics_callback(out / "metrics.jsonl")])
    trainer.train(resume_from_checkpoint=resume[0] if resume else None)
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    shutil.rmtree(checkpoints, ignore_errors=True)  # the model is saved: no run resumes from them now
    say("saved", output_dir=str(out))
    return out


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parent_watch()
    main(config_parse(DPOScriptConfig))
