"""The training methods: for each, the script that runs it, the record kind it trains on and its config.

Plain Python (no Django, no torch at import time): the admin, the API and the ``train`` command read
it to check a job before it is queued, and a job's hyper-parameters are only what its author set: the
rest comes from the method's config dataclass, whose defaults are the script's own.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

from training.ml.dpo import DPOScriptConfig
from training.ml.grpo import GRPOScriptConfig
from training.ml.kto import KTOScriptConfig
from training.ml.orpo import ORPOScriptConfig
from training.ml.prm import PRMScriptConfig
from training.ml.reward import RewardScriptConfig
from training.ml.rloo import RLOOScriptConfig
from training.ml.sft import SFTScriptConfig
from training.ml.simpo import SimPOScriptConfig

# Config fields the platform sets for every job (the snapshot file, the base model, the output, the test split).
PATH_FIELDS = ("dataset", "model", "output_dir", "eval_dataset")

_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    script: str  # the module run as ``python -m <script> --config <file>``
    consumes: str  # the record kind of the rows it trains on (``prefdata.records.RECORD_KINDS``)
    config: type  # its config dataclass: field help, types and defaults
    reference: str = ""

    def fields(self) -> dict[str, dataclasses.Field]:
        """The hyper-parameters a job may set: the config's fields but the paths."""
        return {f.name: f for f in dataclasses.fields(self.config) if f.name not in PATH_FIELDS}

    def defaults(self) -> dict[str, Any]:
        return {name: f.default for name, f in self.fields().items() if f.default is not dataclasses.MISSING}

    def hyperparameters_check(self, values: object) -> dict[str, Any]:
        """``values`` if they are hyper-parameters of this method with values of the right type; else
        ValueError naming each bad one."""
        if not isinstance(values, dict):
            raise ValueError("expected an object {name: value}")
        known = self.fields()
        problems = []
        for name, value in values.items():
            field = known.get(name)
            if field is None:
                problems.append(f"{name}: not a {self.label} hyper-parameter (known: {', '.join(sorted(known))})")
                continue
            types = _TYPES.get(str(field.type), (object,))
            allowed = field.metadata.get("choices")
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                problems.append(f"{name}: expected {field.type}, got {value!r}")
            elif allowed and value not in allowed:
                problems.append(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return dict(values)

    def effective(self, values: dict[str, Any]) -> dict[str, Any]:
        """What the script will run with: the defaults, then the job's own values."""
        return {**self.defaults(), **values}

    def help(self) -> str:
        return "; ".join(f"{name} ({f.default!r}): {f.metadata.get('help', '')}" for name, f in self.fields().items()
                         if f.default is not dataclasses.MISSING)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sft", "SFT", "training.ml.sft", "sft", SFTScriptConfig,
           "Supervised fine-tuning on demonstrations (TRL SFTTrainer)"),
    Method("reward", "Reward model", "training.ml.reward", "preference", RewardScriptConfig,
           "Bradley-Terry reward model (Ouyang et al. 2022, arXiv:2203.02155; TRL RewardTrainer)"),
    Method("prm", "Process reward model", "training.ml.prm", "stepwise", PRMScriptConfig,
           "Lightman et al. 2023, Let's Verify Step by Step, arXiv:2305.20050; Wang et al. 2023, Math-Shepherd, "
           "arXiv:2312.08935"),
    Method("dpo", "DPO", "training.ml.dpo", "preference", DPOScriptConfig,
           "Rafailov et al. 2023, Direct Preference Optimization, arXiv:2305.18290"),
    Method("kto", "KTO", "training.ml.kto", "unpaired", KTOScriptConfig,
           "Ethayarajh et al. 2024, KTO: Model Alignment as Prospect Theoretic Optimization, arXiv:2402.01306"),
    Method("orpo", "ORPO (experimental)", "training.ml.orpo", "preference", ORPOScriptConfig,
           "Hong et al. 2024, ORPO: Monolithic Preference Optimization without Reference Model, "
           "arXiv:2403.07691 (trl.experimental)"),
    Method("simpo", "SimPO (experimental)", "training.ml.simpo", "preference", SimPOScriptConfig,
           "Meng et al. 2024, SimPO: Simple Preference Optimization with a Reference-Free Reward, "
           "arXiv:2405.14734 (TRL's CPOTrainer, trl.experimental)"),
    Method("grpo", "GRPO", "training.ml.grpo", "prompt_only", GRPOScriptConfig,
           "Shao et al. 2024, DeepSeekMath (Group Relative Policy Optimization), arXiv:2402.03300; verifiable "
           "rewards as in Lambert et al. 2024, Tulu 3, arXiv:2411.15124"),
    Method("rloo", "RLOO", "training.ml.rloo", "prompt_only", RLOOScriptConfig,
           "Ahmadian et al. 2024, Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human "
           "Feedback, arXiv:2402.14740 (TRL RLOOTrainer)"),
)}


def method_get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown training method {name!r}; known: {', '.join(METHODS)}") from None


def method_choices() -> list[tuple[str, str]]:
    return [(m.name, m.label) for m in METHODS.values()]


def launch_command(method: Method | str, config_path: str, *, accelerate_config: str = "",
                   num_processes: int = 1) -> list[str]:
    """The command a worker runs for a job: the method's script on its config file, or, given an accelerate
    (or DeepSpeed, through accelerate) config file, the same script under ``accelerate launch`` on
    ``num_processes`` processes (one per GPU)."""
    script = (method_get(method) if isinstance(method, str) else method).script
    command = [sys.executable, "-m", script, "--config", str(config_path)]
    if not accelerate_config:
        return command
    if num_processes < 1:
        raise ValueError(f"num_processes: expected at least 1, got {num_processes}")
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
            "--num_processes", str(num_processes), *command[1:]]
