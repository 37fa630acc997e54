"""Shared pieces of the training scripts. Plain Python, torch and transformers: no Django.

A script is ``python -m training.ml.<method> --config cfg.json [--field value ...]``: it reads a
dataset file and writes a model directory plus ``metrics.jsonl`` (one JSON object per logged step),
which the Django side reads back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def choices(*values: str) -> tuple[str, ...]:
    """The values a ``str`` config field accepts (field metadata ``choices``, checked by ``config_parse`` and
    by the registry before a job is queued)."""
    return values


@dataclass
class TrainConfig:
    """The fields every training script shares: its paths, the optimizer, checkpoints, precision, LoRA and
    the evaluation file. A method's config subclasses it, adds its own fields and may redeclare a field to
    give it its own default."""

    dataset: str = field(metadata={"help": "training rows (a JSONL or Parquet snapshot file)"})
    model: str = field(metadata={"help": "base model directory"})
    output_dir: str = field(metadata={"help": "where the trained model and metrics.jsonl are written"})
    learning_rate: float = field(default=5e-6, metadata={"help": "AdamW learning rate"})
    max_steps: int = field(default=10, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=2, metadata={"help": "per-device batch size"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "batches per optimizer step"})
    max_length: int = field(default=512, metadata={"help": "truncate prompt + completion to this many tokens"})
    lr_scheduler_type: str = field(default="linear", metadata={
        "help": "learning-rate schedule after the warm-up: linear (to 0 at max_steps), cosine or constant",
        "choices": choices("linear", "cosine", "constant")})
    warmup_steps: int = field(default=0, metadata={"help": "steps of linear learning-rate warm-up"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    save_steps: int = field(default=50, metadata={"help": "checkpoint every this many steps (a stopped job resumes "
                                                          "from its last checkpoint)"})
    keep_checkpoints: bool = field(default=False, metadata={
        "help": "keep the checkpoints once the model is saved (a later run with more max_steps continues from "
                "the last)"})
    use_cpu: bool = field(default=False, metadata={"help": "train on the CPU even where a GPU exists"})
    bf16: str = field(default="auto", metadata={
        "help": "bf16 mixed precision: auto (where the hardware has it), true or false",
        "choices": choices("auto", "true", "false")})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute activations in the backward pass: less memory, about a third slower"})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank (0: train every weight, no LoRA)"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: str = field(default="all-linear", metadata={
        "help": "modules LoRA adapts: all-linear, or names separated by commas (q_proj,v_proj)"})
    eval_dataset: str = field(default="", metadata={
        "help": "rows evaluated after training (the snapshot's test split); results in evaluation.json"})

_CONVERT = {"int": int, "float": float, "bool": lambda s: s.strip().lower() in {"1", "true", "yes"}}


def config_parse(cls: type[T], argv: list[str] | None = None) -> T:
    """Build ``cls`` from ``--config file.json`` and ``--<field> value`` overrides, with --help."""
    parser = argparse.ArgumentParser(description=(cls.__doc__ or "").strip())
    parser.add_argument("--config", help="JSON file with any of the fields below")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        parser.add_argument(f"--{f.name}", dest=f.name, default=None, help=f.metadata.get("help", ""))
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    if args.config:
        values.update(json.loads(Path(args.config).read_text()))
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name, type_name in types.items():
        raw = getattr(args, name)
        if raw is not None:
            values[name] = _CONVERT.get(type_name, str)(raw)
    unknown = set(values) - set(types)
    if unknown:
        parser.error(f"unknown config fields: {', '.join(sorted(unknown))}")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        allowed = f.metadata.get("choices")
        if allowed and f.name in values and values[f.name] not in allowed:
            parser.error(f"{f.name}: expected one of {', '.join(allowed)}, got {values[f.name]!r}")
    return cls(**values)


class TokenCount:
    """Counts the tokens the trainer trains on: the sum of the attention masks (padding excluded) of the inputs
    of each training step, whatever the method calls them (``input_ids``, ``chosen_input_ids``, ...), which the
    Trainer's own ``num_input_tokens_seen`` does not see. It hooks ``training_step`` rather than the data
    collator, which the data loader calls a batch ahead."""

    def __init__(self) -> None:
        self.tokens = 0

    def count(self, inputs: dict) -> None:
        masks = [v for k, v in inputs.items() if k.endswith("attention_mask") and hasattr(v, "sum")]
        if masks:
            self.tokens += sum(int(v.sum()) for v in masks)
        else:
            self.tokens += sum(int(v.numel()) for k, v in inputs.items() if k.endswith("input_ids")
                               and hasattr(v, "numel"))

    def attach(self, trainer) -> None:  # noqa: ANN001
        step = trainer.training_step

        def counted(model, inputs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            self.count(inputs)
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = counted


def metrics_callback(path: str | Path, tokens: TokenCount | None = None):
    """A transformers TrainerCallback that appends every log entry to ``path`` as a JSON line.

    Training entries carry the learning rate (the Trainer logs it) and, given the ``tokens`` counter of the
    trainer's collator, ``tokens_per_s``: the tokens fed since the previous entry over the wall time since."""
    from transformers import TrainerCallback

    out = Path(path)

    class MetricsCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.mark = (time.perf_counter(), tokens.tokens if tokens else 0)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if not logs:
                return
            entry = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, int | float)}}
            if tokens is not None and "loss" in logs:
                now, seen = time.perf_counter(), tokens.tokens
                since, seen_before = getattr(self, "mark", (now, seen))
                if now > since and seen > seen_before:
                    entry["tokens_per_s"] = round((seen - seen_before) / (now - since), 2)
                self.mark = (now, seen)
            with out.open("a") as handle:
                handle.write(json.dumps(entry) + "\n")
            print(json.dumps({"event": "log", **entry}), flush=True)

    return MetricsCallback()


def say(event: str, **fields: Any) -> None:
    """A machine-readable progress line on stdout."""
    print(json.dumps({"event": event, **fields}), file=sys.stdout, flush=True)


def parent_watch() -> None:
    """Die with the worker that started this script, and take any process this one started along.

    The worker starts a trainer in a process group of its own (so that cancelling a job can stop the
    whole group) with ``TRAINER_PARENT_PID`` set. When that parent dies, SIGKILL included, the group is
    killed: at once on Linux (the kernel sends SIGTERM on the parent's death, ``PR_SET_PDEATHSIG``), and
    within a second elsewhere (a thread watches the parent pid). SIGTERM kills the group too.
    """
    parent = os.environ.get("TRAINER_PARENT_PID")
    if not parent:
        return  # run by hand

    def kill_group(*_: object) -> None:
        os.killpg(os.getpgrp(), signal.SIGKILL)

    signal.signal(signal.SIGTERM, kill_group)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != int(parent):
        kill_group()  # the parent died before we were watching

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != int(parent):
                kill_group()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def last_checkpoint(directory: str | os.PathLike) -> tuple[str, int] | None:
    """The newest complete ``checkpoint-<step>`` directory under ``directory`` (one with its trainer
    state written, the last file a checkpoint gets), and its step; None when there is none."""
    from pathlib import Path

    found = []
    for path in Path(directory).glob("checkpoint-*"):
        step = path.name.rsplit("-", 1)[-1]
        if step.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(step), str(path)))
    if not found:
        return None
    step, path = max(found)
    return path, step


def metrics_keep_until(path: str | os.PathLike, step: int) -> None:
    """Drop the logged metrics after ``step`` (a run resumed from that step logs them again)."""
    from pathlib import Path

    metrics = Path(path)
    if not metrics.exists():
        return
    kept = [line for line in metrics.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    metrics.write_text("".join(line + "\n" for line in kept))


@dataclass
class Run:
    """One training run of a script: its config, folders, the checkpoint it resumes from and its token
    counter (for ``tokens_per_s``)."""

    cfg: TrainConfig
    method: str
    out: Path
    checkpoints: Path
    resume: tuple[str, int] | None
    tokens: TokenCount = field(default_factory=TokenCount)

    def callbacks(self) -> list:
        return [metrics_callback(self.out / "metrics.jsonl", self.tokens)]


def run_start(cfg: TrainConfig, *, method: str) -> Run:
    """Make the output folder, find the checkpoint to resume from (dropping the metrics logged after it;
    a fresh run starts a fresh metrics file) and seed torch."""
    import torch

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
    return Run(cfg=cfg, method=method, out=out, checkpoints=checkpoints, resume=resume)


def bf16_use(cfg: TrainConfig) -> bool:
    """bf16 mixed precision: as asked, or (auto) on a GPU that has it."""
    if cfg.bf16 != "auto":
        return cfg.bf16 == "true"
    if cfg.use_cpu:
        return False
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def training_arguments(run: Run) -> dict[str, Any]:
    """The arguments every method passes to its TRL config (or transformers' TrainingArguments): a log entry
    per step, checkpoints for resuming, precision, no reporting to outside services."""
    cfg = run.cfg
    return dict(
        output_dir=str(run.checkpoints),
        learning_rate=cfg.learning_rate,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        seed=cfg.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to="none",
        use_cpu=cfg.use_cpu,
        bf16=bf16_use(cfg),
        fp16=False,
        activation_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def lora_config(cfg: TrainConfig, *, task_type: str = "CAUSAL_LM"):  # noqa: ANN201
    """A peft LoraConfig when ``lora_r`` > 0, else None (every weight trains). For a classification head
    (task types SEQ_CLS and TOKEN_CLS) peft trains the new head in full next to the adapters."""
    if cfg.lora_r <= 0:
        return None
    from peft import LoraConfig

    targets = cfg.lora_target_modules.strip()
    modules: str | list[str] = targets if targets == "all-linear" else [m.strip() for m in targets.split(",") if m]
    # the head of a classifier trains in full (peft's modules_to_save): no adapter on it
    head = ["score", "classifier"] if task_type != "CAUSAL_LM" else None
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=modules, exclude_modules=head, task_type=task_type)


def rows_load(path: str):  # noqa: ANN201
    """A snapshot file (JSONL or Parquet) as a datasets.Dataset."""
    from datasets import load_dataset

    kind = "parquet" if str(path).endswith(".parquet") else "json"
    return load_dataset(kind, data_files=str(path), split="train")


def tokenizer_load(path: str):  # noqa: ANN201
    """The base model's tokenizer, with a pad token (the end-of-sequence one where it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def is_main_process() -> bool:
    """True but in the second and later processes of an ``accelerate launch``."""
    return int(os.environ.get("RANK", "0")) == 0


def train_and_save(run: Run, trainer, tokenizer) -> Path:  # noqa: ANN001
    """Train (from the last checkpoint if there is one), save the model and tokenizer to the output folder
    and delete the checkpoints (unless asked to keep them): no run resumes from them once the model is saved.

    A LoRA model is saved merged into its base, so that the platform loads it like any other model."""
    run.tokens.attach(trainer)
    trainer.train(resume_from_checkpoint=run.resume[0] if run.resume else None)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if run.cfg.lora_r > 0 and hasattr(model, "merge_and_unload"):
        if trainer.is_world_process_zero():
            model.merge_and_unload().save_pretrained(str(run.out))
    else:
        trainer.save_model(str(run.out))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(run.out))
        if not run.cfg.keep_checkpoints:
            shutil.rmtree(run.checkpoints, ignore_errors=True)
    say("saved", output_dir=str(run.out))
    return run.out


def script_run(cls: type[T], main) -> None:  # noqa: ANN001
    """What a script does when run as ``python -m training.ml.<method> --config cfg.json``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parent_watch()
    main(config_parse(cls))
