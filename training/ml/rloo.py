"""REINFORCE Leave-One-Out (Ahmadian et al. 2024, Back to Basics, arXiv:2402.14740) with TRL's RLOOTrainer:
online RL against a reward model with a KL penalty to the reference (the base model). Each of a prompt's k
completions is scored and its baseline is the mean reward of the other k - 1. Verifiable rewards can be added
to the reward model's score, weighted.

    python -m training.ml.rloo --config cfg.json
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.ml.common import script_run
from training.ml.online import OnlineConfig, online_train


@dataclass
class RLOOScriptConfig(OnlineConfig):
    """Train a causal LM on prompt-only rows with RLOO against a reward model (plus any verifiable rewards)."""

    rewards: str = field(default="", metadata={
        "help": "verifiable rewards added to the reward model's score, comma-separated: accuracy, format, code, "
                "length; empty: the reward model alone"})
    reward_model: str = field(default="", metadata={
        "help": "the reward model directory (sequence classifier, one score) the policy is trained against"})
    beta: float = field(default=0.05, metadata={
        "help": "KL coefficient: penalty on moving away from the reference (the base model); 0 loads no reference "
                "and logs no KL"})


def main(cfg: RLOOScriptConfig) -> Path:
    from trl import RLOOConfig, RLOOTrainer

    return online_train(cfg, method="rloo", trainer_class=RLOOTrainer, config_class=RLOOConfig)


if __name__ == "__main__":
    script_run(RLOOScriptConfig, main)
