"""A GRPO job for a Ray cluster: instead of training here with TRL, write what verl or OpenRLHF needs to train
the same job on many GPUs, with the platform's own verifiers as the reward.

``cluster_bundle(cfg, folder)`` writes:

- ``verl/train.parquet`` (and ``verl/test.parquet`` with a test split): the prompts in verl's RL schema, written
  by ``prefdata.targets`` (``reward_model.ground_truth``: the answer, else the tests as a JSON list);
- ``openrlhf/train.jsonl`` (and ``test.jsonl``): the same prompts for OpenRLHF's ``train_ppo_ray``;
- ``reward_fn.py``: verl's ``compute_score(data_source, solution_str, ground_truth, extra_info)`` and
  OpenRLHF's ``reward_func(queries, prompts, labels)``, both the job's weighted verifiable rewards
  (``training.ml.rewards``, which call ``prefdata.verifiers``);
- ``run_verl.sh`` and ``run_openrlhf.sh``: the commands, with the job's group size, KL coefficient, clipping,
  sampling and learning rate.

``cluster_run`` runs one of them where that engine is installed (an optional extra, not a dependency of the
platform). No Django, no torch.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
from pathlib import Path

from training.ml.online import OnlineConfig, reward_names

ENGINES = ("verl", "openrlhf")
PROJECT_ROOT = Path(__file__).resolve().parents[2]

REWARD_MODULE = '''"""Reward of a GRPO job for verl (compute_score) and OpenRLHF (reward_func): the verifiers here.

Written by training.ml.cluster; the rewards and their weights are the job's.
"""

import json
import sys

PROJECT = {project!r}
if PROJECT not in sys.path:
    sys.path.insert(0, PROJECT)

from training.ml.online import reward_function  # noqa: E402

REWARDS = {rewards!r}  # (name, weight)
LENGTH_TARGET = {length_target!r}


def _columns(ground_truth, extra_info):
    """The reward functions' columns: verl's ground truth is the answer, or the tests as a JSON list of strings."""
    if isinstance(ground_truth, str) and ground_truth.lstrip().startswith("["):
        try:
            tests = json.loads(ground_truth)
        except ValueError:
            tests = None
        if isinstance(tests, list) and tests and all(isinstance(t, str) for t in tests):
            return {{"tests": [tests], "entry_point": [(extra_info or {{}}).get("entry_point")]}}
    return {{"answer": [ground_truth]}}


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """The weighted sum of the job's rewards for one completion (a reward that does not apply counts 0)."""
    columns = _columns(ground_truth, extra_info)
    total = 0.0
    for name, weight in REWARDS:
        value = reward_function(name, length_target=LENGTH_TARGET)([None], [solution_str], **columns)[0]
        if value is not None:
            total += weight * value
    return float(total)


def reward_func(queries, prompts, labels, **kwargs):
    """OpenRLHF's custom reward (--remote_rm_url this file): queries are prompt + response."""
    import torch

    scores = [compute_score("prefdata", query[len(prompt):] if query.startswith(prompt) else query, label)
              for query, prompt, label in zip(queries, prompts, labels)]
    rewards = torch.tensor(scores, dtype=torch.float32)
    return {{"rewards": rewards, "scores": rewards, "extra_logs": {{}}}}
'''


def _prompt_rows(path: str) -> list[dict]:
    """A prompt-only snapshot file's rows, reduced to the fields of ``PromptOnlyRow``."""
    from training.ml.common import rows_load

    return [{k: row[k] for k in ("prompt", "answer", "tests") if row.get(k) is not None}
            for row in rows_load(path)]


def _splits(cfg: OnlineConfig) -> dict[str, list[dict]]:
    splits = {"train": _prompt_rows(cfg.dataset)}
    if cfg.eval_dataset:
        splits["test"] = _prompt_rows(cfg.eval_dataset)
    return splits


def prompts_per_step(cfg: OnlineConfig) -> int:
    """Prompts in one step: the completions of a step over the group size (at least one)."""
    return max(1, cfg.batch_size * cfg.gradient_accumulation_steps // cfg.num_generations)


def verl_command(cfg: OnlineConfig, folder: Path) -> list[str]:
    """verl's GRPO (``algorithm.adv_estimator=grpo``): the KL to the reference as a loss term (low-variance KL,
    as DeepSeekMath), the group's rollouts from vLLM, the reward from ``reward_fn.py``."""
    prompts = prompts_per_step(cfg)
    command = [
        "python3", "-m", "verl.trainer.main_ppo",
        "algorithm.adv_estimator=grpo",
        f"data.train_files={folder / 'verl' / 'train.parquet'}",
        f"data.val_files={folder / 'verl' / ('test.parquet' if cfg.eval_dataset else 'train.parquet')}",
        f"data.train_batch_size={prompts}",
        f"data.max_prompt_length={cfg.max_length}",
        f"data.max_response_length={cfg.max_completion_length}",
        f"actor_rollout_ref.model.path={cfg.model}",
        f"actor_rollout_ref.actor.optim.lr={cfg.learning_rate}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts}",
        f"actor_rollout_ref.actor.clip_ratio={cfg.epsilon}",
        f"actor_rollout_ref.actor.use_kl_loss={cfg.beta > 0}",
        f"actor_rollout_ref.actor.kl_loss_coef={cfg.beta}",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
        f"actor_rollout_ref.rollout.n={cfg.num_generations}",
        f"actor_rollout_ref.rollout.temperature={cfg.temperature}",
        "actor_rollout_ref.rollout.name=vllm",
        "algorithm.use_kl_in_reward=False",
        f"custom_reward_function.path={folder / 'reward_fn.py'}",
        "custom_reward_function.name=compute_score",
        f"trainer.total_training_steps={cfg.max_steps}",
        f"trainer.save_freq={cfg.save_steps}",
        f"trainer.default_local_dir={cfg.output_dir}",
        f"data.seed={cfg.seed}",
        "trainer.logger=['console']",
    ]
    if cfg.reward_model:
        command += ["reward_model.enable=True", f"reward_model.model.path={cfg.reward_model}"]
    return command


def openrlhf_command(cfg: OnlineConfig, folder: Path) -> list[str]:
    """OpenRLHF's ``train_ppo_ray`` with GRPO's group-normalized advantages and the KL as a loss term."""
    prompts = prompts_per_step(cfg)
    command = [
        "python3", "-m", "openrlhf.cli.train_ppo_ray",
        "--pretrain", cfg.model,
        "--prompt_data", str(folder / "openrlhf" / "train.jsonl"),
        "--input_key", "prompt", "--label_key", "answer", "--apply_chat_template",
        "--advantage_estimator", "group_norm",
        "--n_samples_per_prompt", str(cfg.num_generations),
        "--rollout_batch_size", str(prompts),
        "--train_batch_size", str(prompts * cfg.num_generations),
        "--micro_rollout_batch_size", str(cfg.batch_size),
        "--micro_train_batch_size", str(cfg.batch_size),
        "--generate_max_len", str(cfg.max_completion_length),
        "--prompt_max_len", str(cfg.max_length),
        "--temperature", str(cfg.temperature),
        "--actor_learning_rate", str(cfg.learning_rate),
        "--eps_clip", str(cfg.epsilon),
        "--init_kl_coef", str(cfg.beta), "--use_kl_loss", "--kl_estimator", "k3",
        "--max_epochs", "1", "--seed", str(cfg.seed),
        "--save_path", cfg.output_dir,
    ]
    # the verifiable rewards in reward_fn.py, or a reward model (OpenRLHF takes one or the other)
    if cfg.reward_model and not reward_names(cfg):
        command += ["--reward_pretrain", cfg.reward_model]
    else:
        command += ["--remote_rm_url", str(folder / "reward_fn.py")]
    return command


def _script(command: list[str]) -> str:
    lines = [shlex.quote(part) for part in command]
    head = "#!/usr/bin/env bash\n# Written by training.ml.cluster; run on the head node of a Ray cluster.\n"
    return head + "set -euo pipefail\n" + " \\\n  ".join(lines) + ' "$@"\n'


def cluster_bundle(cfg: OnlineConfig, folder: str | Path) -> dict[str, Path]:
    """Write the data, the reward module and the verl / OpenRLHF commands of the GRPO job ``cfg`` to
    ``folder``; the paths written, by name. ValueError for unknown rewards, or none at all."""
    from prefdata.targets import snapshot_folder_write

    names = reward_names(cfg)
    weights = [float(w) for w in cfg.reward_weights.split(",") if w.strip()] or [1.0] * len(names)
    if len(weights) != len(names):
        raise ValueError(f"reward_weights: {len(weights)} weights for {len(names)} rewards ({', '.join(names)})")
    if not names and not cfg.reward_model:
        raise ValueError("no reward: name verifiable rewards, a reward_model, or both")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    splits = _splits(cfg)
    paths: dict[str, Path] = {}
    for engine in ENGINES:
        written = snapshot_folder_write(folder / engine, splits, kind="prompt_only", target=engine,
                                        file_format="parquet" if engine == "verl" else "jsonl")
        for name in written.files:
            paths[f"{engine}_{name.rsplit('.', 1)[0]}"] = written.folder / name
    reward_fn = folder / "reward_fn.py"
    reward_fn.write_text(REWARD_MODULE.format(project=str(PROJECT_ROOT), rewards=list(zip(names, weights, strict=True)),
                                              length_target=cfg.length_target))
    paths["reward_fn"] = reward_fn
    for engine, command in (("verl", verl_command(cfg, folder)), ("openrlhf", openrlhf_command(cfg, folder))):
        script = folder / f"run_{engine}.sh"
        script.write_text(_script(command))
        script.chmod(0o755)
        paths[f"run_{engine}"] = script
    (folder / "config.json").write_text(json.dumps(cfg.__dict__, indent=2))
    paths["config"] = folder / "config.json"
    return paths


def engine_available(engine: str) -> bool:
    """Whether ``engine`` (verl or openrlhf, an optional extra) is importable here."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    return importlib.util.find_spec(engine) is not None


def cluster_run(cfg: OnlineConfig, folder: str | Path, *, engine: str = "verl") -> int:
    """Write the bundle and run the engine's command; RuntimeError where the engine is not installed."""
    if not engine_available(engine):
        raise RuntimeError(f"{engine} is not installed: it is an optional extra (pip install {engine}); the "
                           f"bundle in {folder} can be run on a cluster that has it")
    paths = cluster_bundle(cfg, folder)
    return subprocess.run(["bash", str(paths[f"run_{engine}"])], check=False).returncode
