"""Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300) with TRL's
GRPOTrainer: for each prompt a group of completions is sampled and scored, and each completion's advantage is
its reward minus the group's mean (over the group's spread), with a clipped policy loss and a KL penalty to the
base model. Rewards are verifiable (``training.ml.rewards``: accuracy, format, code tests, length), a reward
model, or both weighted (RLVR: Lambert et al. 2024, Tulu 3, arXiv:2411.15124).

    python -m training.ml.grpo --config cfg.json
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.ml.common import choices, script_run
from training.ml.online import OnlineConfig, online_train


@dataclass
class GRPOScriptConfig(OnlineConfig):
    """Train a causal LM on prompt-only rows with GRPO against verifiable rewards and/or a reward model."""

    scale_rewards: str = field(default="group", metadata={
        "help": "advantage scaling: group (reward minus group mean over the group's std, as in the paper), batch "
                "(over the batch's std) or none (Dr. GRPO, Liu et al. 2025, arXiv:2503.20783)",
        "choices": choices("group", "batch", "none")})


def main(cfg: GRPOScriptConfig) -> Path:
    from trl import GRPOConfig, GRPOTrainer

    return online_train(cfg, method="grpo", trainer_class=GRPOTrainer, config_class=GRPOConfig,
                        scale_rewards=cfg.scale_rewards)


if __name__ == "__main__":
    script_run(GRPOScriptConfig, main)
