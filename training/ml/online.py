"""What the online RL scripts (GRPO, RLOO) share: their config fields, the rewards a job chooses, a pass-rate
metric, a token counter that sees generated tokens, the training run and the evaluation on the test split.

Online methods train on prompt-only rows (``prompt``, optional ``answer`` / ``tests`` / ``entry_point``): the
policy samples ``num_generations`` completions per prompt, each is scored by the chosen rewards (verifiers from
``training.ml.rewards`` and/or a reward model), and the policy moves towards the completions that score above
their group. No Django.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.ml.common import (
    Run,
    TokenCount,
    TrainConfig,
    is_main_process,
    lora_config,
    rows_load,
    run_start,
    say,
    tokenizer_load,
    train_and_save,
    training_arguments,
)

# the verifiable rewards a job names (``rewards`` field), as functions of training.ml.rewards
REWARD_NAMES = ("accuracy", "format", "format_partial", "code", "length")


@dataclass
class OnlineConfig(TrainConfig):
    """Fields of every online RL method: sampling, the clipped policy loss, the KL penalty and the rewards."""

    dataset: str = field(metadata={"help": "prompt-only JSONL or Parquet file (prompt, optional answer, tests)"})
    model: str = field(metadata={"help": "base model directory (the policy starts from it; the KL reference too)"})
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate"})
    batch_size: int = field(default=4, metadata={
        "help": "completions per device and step (a multiple of num_generations: batch_size / num_generations "
                "prompts a step)"})
    num_generations: int = field(default=4, metadata={
        "help": "group size: completions sampled per prompt, compared with each other"})
    max_completion_length: int = field(default=256, metadata={"help": "most tokens generated per completion"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the completions"})
    beta: float = field(default=0.04, metadata={
        "help": "KL coefficient: penalty on moving away from the reference (the base model); 0 loads no reference "
                "and logs no KL"})
    epsilon: float = field(default=0.2, metadata={
        "help": "clipping: how far the probability ratio of a token may move in one update (PPO's epsilon)"})
    rewards: str = field(default="accuracy", metadata={
        "help": "verifiable rewards, comma-separated: accuracy (final answer equals the row's answer), format "
                "(<think>...</think> then an answer), code (share of the row's tests passed, sandboxed), length "
                "(penalty past length_target tokens); empty: none"})
    reward_weights: str = field(default="", metadata={
        "help": "weights of the rewards, comma-separated, in the same order (empty: 1 each)"})
    reward_model: str = field(default="", metadata={
        "help": "a reward model (a scorer endpoint's name in a job; its directory to the script) scoring each "
                "completion; empty: none"})
    reward_model_weight: float = field(default=1.0, metadata={"help": "weight of the reward model's score"})
    length_target: int = field(default=128, metadata={
        "help": "length reward: no penalty up to this many tokens, then down to -1 at twice as many"})


def reward_names(cfg: OnlineConfig) -> list[str]:
    """The names in ``cfg.rewards``; ValueError for one that is not a known reward."""
    names = [n.strip() for n in cfg.rewards.split(",") if n.strip()]
    unknown = [n for n in names if n not in REWARD_NAMES]
    if unknown:
        raise ValueError(f"rewards: unknown {', '.join(unknown)}; known: {', '.join(REWARD_NAMES)}")
    return names


def reward_function(name: str, *, length_target: int = 128) -> Callable[..., list[float | None]]:
    """The reward of ``training.ml.rewards`` a job names (also used by the reward module of a cluster run)."""
    from training.ml import rewards

    if name == "length":
        return rewards.make_length_penalty(max_tokens=length_target)
    return {"accuracy": rewards.accuracy_reward, "format": rewards.format_reward,
            "format_partial": rewards.format_partial_reward, "code": rewards.code_reward}[name]


class PassRate:
    """The share of completions whose accuracy reward is 1 (rows without an answer left out), logged as
    ``pass_rate`` next to TRL's metrics: ``wrap`` the accuracy reward, put ``callback()`` before the metrics
    callback (callbacks see the same log entry in turn)."""

    def __init__(self) -> None:
        self.scores: list[float] = []

    def wrap(self, func: Callable[..., list[float | None]]) -> Callable[..., list[float | None]]:
        @functools.wraps(func)  # TRL names the reward's metrics after the function
        def recorded(*args: Any, **kwargs: Any) -> list[float | None]:
            values = func(*args, **kwargs)
            self.scores.extend(v for v in values if v is not None)
            return values

        return recorded

    def callback(self):  # noqa: ANN201
        from transformers import TrainerCallback

        tracker = self

        class PassRateCallback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
                # only entries of steps that generated (with steps_per_generation > 1 some reuse completions)
                if logs is not None and tracker.scores and "loss" in logs:
                    logs["pass_rate"] = sum(1.0 for v in tracker.scores if v >= 1.0) / len(tracker.scores)
                    tracker.scores.clear()

        return PassRateCallback()


class GenerationTokenCount(TokenCount):
    """Tokens an online step trains on: prompt and completion tokens of each batch (padding excluded). The
    trainers' ``training_step`` sees prompt rows, not token ids: the batch is counted where ``_prepare_inputs``
    hands it over after generation."""

    def attach(self, trainer) -> None:  # noqa: ANN001
        prepare = trainer._prepare_inputs

        def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            batch = prepare(*args, **kwargs)
            if trainer.model.training and isinstance(batch, dict):
                self.tokens += sum(int(batch[k].sum()) for k in ("prompt_mask", "completion_mask") if k in batch)
            return batch

        trainer._prepare_inputs = counted


@dataclass
class Rewards:
    """What the trainer is given: reward functions (or a reward model directory), their weights and the
    pass-rate tracker (None without an accuracy reward)."""

    funcs: list
    weights: list[float]
    pass_rate: PassRate | None


def rewards_build(cfg: OnlineConfig) -> Rewards:
    """The rewards ``cfg`` names, weighted, then the reward model when one is given. ValueError when there is
    none at all, or when the weights do not match the rewards."""
    names = reward_names(cfg)
    weights = [float(w) for w in cfg.reward_weights.split(",") if w.strip()] or [1.0] * len(names)
    if len(weights) != len(names):
        raise ValueError(f"reward_weights: {len(weights)} weights for {len(names)} rewards ({', '.join(names)})")
    pass_rate = PassRate() if "accuracy" in names else None
    funcs: list = []
    for name in names:
        func = reward_function(name, length_target=cfg.length_target)
        funcs.append(pass_rate.wrap(func) if name == "accuracy" and pass_rate else func)
    if cfg.reward_model:
        funcs.append(cfg.reward_model)  # TRL loads it as a sequence classifier with one label
        weights.append(cfg.reward_model_weight)
    if not funcs:
        raise ValueError("no reward: name verifiable rewards, a reward_model, or both")
    return Rewards(funcs=funcs, weights=weights, pass_rate=pass_rate)


def online_arguments(cfg: OnlineConfig, run: Run) -> dict[str, Any]:
    """The arguments GRPOConfig and RLOOConfig share: sampling, the loss, the KL penalty, the weights."""
    return dict(num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                temperature=cfg.temperature, beta=cfg.beta, epsilon=cfg.epsilon, **training_arguments(run))


def online_train(cfg: OnlineConfig, *, method: str, trainer_class: type, config_class: type,
                 **extra: Any) -> Path:
    """Train ``cfg.model`` on ``cfg.dataset`` with ``trainer_class`` (GRPOTrainer or RLOOTrainer), save it,
    and evaluate it on the test split when there is one. ``extra`` goes to the TRL config."""
    import torch
    from transformers import AutoModelForCausalLM

    rewards = rewards_build(cfg)  # refused before anything loads
    run = run_start(cfg, method=method)
    run.tokens = GenerationTokenCount()
    dataset = rows_load(cfg.dataset)
    say("start", method=method, rows=len(dataset), max_steps=cfg.max_steps,
        rewards=[r if isinstance(r, str) else r.__name__ for r in rewards.funcs], reward_weights=rewards.weights)
    tokenizer = tokenizer_load(cfg.model)
    # padded on the left: the trainers generate a batch of prompts at once
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    args = config_class(reward_weights=rewards.weights, **online_arguments(cfg, run), **extra)
    callbacks = ([rewards.pass_rate.callback()] if rewards.pass_rate else []) + run.callbacks()
    trainer = trainer_class(model=model, reward_funcs=rewards.funcs, args=args, train_dataset=dataset,
                            processing_class=tokenizer, peft_config=lora_config(cfg), callbacks=callbacks)
    out = train_and_save(run, trainer, tokenizer)
    if cfg.eval_dataset and is_main_process():
        from training.ml.evaluate import evaluation_write

        evaluation_write(out, online_evaluate(model_dir=str(out), rows=list(rows_load(cfg.eval_dataset)), cfg=cfg))
    return out


def online_evaluate(*, model_dir: str, rows: list[dict], cfg: OnlineConfig) -> dict[str, Any]:
    """Each test prompt answered once, greedily, by the trained model and scored by the verifiable rewards:
    the mean of each (``reward_<name>``), their weighted sum (``mean_reward``) and, with an accuracy reward,
    ``pass_rate``. The reward model, when there is one, is not run here."""
    import torch
    from transformers import AutoModelForCausalLM

    from training.ml.evaluate import prompt_text

    names = reward_names(cfg)
    weights = [float(w) for w in cfg.reward_weights.split(",") if w.strip()] or [1.0] * len(names)
    tokenizer = tokenizer_load(model_dir)
    tokenizer.padding_side = "left"
    device = "cuda" if torch.cuda.is_available() and not cfg.use_cpu else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    completions: list[str] = []
    for start in range(0, len(rows), 8):
        batch = rows[start:start + 8]
        encoded = tokenizer([prompt_text(tokenizer, r["prompt"]) for r in batch], return_tensors="pt",
                            padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            generated = model.generate(**encoded, max_new_tokens=cfg.max_completion_length, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id)
        completions += tokenizer.batch_decode(generated[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    columns = {k: [r.get(k) for r in rows] for k in rows[0] if k != "prompt"} if rows else {}
    prompts = [r["prompt"] for r in rows]
    metrics: dict[str, Any] = {"rows": len(rows)}
    total = 0.0
    for name, weight in zip(names, weights, strict=True):
        func = reward_function(name, length_target=cfg.length_target)
        values = [v for v in func(prompts, completions, **columns) if v is not None]
        mean = sum(values) / len(values) if values else math.nan
        metrics[f"reward_{name}"] = mean
        total += weight * (mean if values else 0.0)
        if name == "accuracy":
            metrics["pass_rate"] = sum(1.0 for v in values if v >= 1.0) / len(values) if values else math.nan
    metrics["mean_reward"] = total
    return metrics
