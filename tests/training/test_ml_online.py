"""The online RL methods (GRPO, RLOO), run as the worker runs them (``python -m training.ml.<method> --config
cfg.json``, a subprocess) on a prompt-only snapshot written by prefdata: two steps with finite losses, the
weights moved, the model saved, and the live metrics (reward, KL, completion length, pass rate) logged."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefdata.records import PromptOnlyRow
from prefdata.targets import snapshot_folder_write
from training.ml.grpo import GRPOScriptConfig
from training.ml.online import PassRate, rewards_build
from training.ml.registry import launch_command, method_get

ROOT = Path(__file__).resolve().parents[2]


def user(text):
    return [{"role": "user", "content": text}]


QUESTIONS = [("What is 2 + 2?", "4"), ("What is 3 + 4?", "7"), ("What is 5 - 1?", "4"), ("What is 6 / 2?", "3")]


def snapshot(tmp_path, conversational=True):
    """Prompt-only rows with answers, conversations or plain text (a file holds one form)."""
    rows = [PromptOnlyRow(user(q) if conversational else f"{q} The answer is", answer=a, tests=[])
            for q, a in QUESTIONS]
    written = snapshot_folder_write(tmp_path / "snapshot", {"train": rows, "test": rows[:2]}, kind="prompt_only")
    return written.folder / "train.jsonl", written.folder / "test.jsonl"


def run(method, config, tmp_path):
    """The method's script on ``config``, as the worker starts it; its JSON events on stdout."""
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(launch_command(method, str(path)), cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"event"')]


def moved(base_dir, out_dir):
    base, trained = load_file(str(Path(base_dir) / "model.safetensors")), load_file(str(Path(out_dir) /
                                                                                          "model.safetensors"))
    return [k for k in set(base) & set(trained) if not torch.equal(base[k], trained[k])]


def config(tmp_path, tiny_model_dir, train, **extra):
    return {"dataset": str(train), "model": str(tiny_model_dir), "output_dir": str(tmp_path / "out"),
            "max_steps": 2, "batch_size": 4, "num_generations": 2, "max_completion_length": 8,
            "learning_rate": 1e-3, "use_cpu": True, "lr_scheduler_type": "constant", "beta": 0.1, **extra}


def steps_of(out):
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [m for m in metrics if "loss" in m]


def assert_trained(tiny_model_dir, out, steps):
    assert [m["step"] for m in steps] == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in steps), steps
    assert all(math.isfinite(m["reward"]) and math.isfinite(m["kl"]) for m in steps), steps
    # (RLOO's KL is a sampled log-ratio estimate: it may be below 0)
    assert steps[0]["kl"] == 0.0 != steps[1]["kl"], "the policy starts at the reference and moves away"
    assert all(0 < m["completions/mean_length"] <= 8 for m in steps), steps
    assert all(m["tokens_per_s"] > 0 for m in steps), steps
    assert moved(tiny_model_dir, out), "no weight changed"
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert (out / "tokenizer.json").exists() and not (out / "checkpoints").exists()


@pytest.fixture
def reward_model_dir(tmp_path, tiny_model_dir):
    """A reward model (a sequence classifier with one score) built on the tiny model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "reward-model"
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model.config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_grpo_trains_two_steps_logs_reward_kl_length_and_pass_rate_and_evaluates(tmp_path, tiny_model_dir,
                                                                                 reward_model_dir):
    train, test = snapshot(tmp_path)
    out = tmp_path / "out"
    # a random tiny model answers nothing right and never stops before max_completion_length: the verifiable
    # rewards are the same for a whole group (no advantage, nothing learnt); a reward model's scores vary
    events = run("grpo", config(tmp_path, tiny_model_dir, train, rewards="accuracy", reward_model=str(reward_model_dir),
                                reward_model_weight=2.0, eval_dataset=str(test)), tmp_path)
    start = next(e for e in events if e["event"] == "start")
    assert start["rewards"] == ["accuracy_reward", str(reward_model_dir)] and start["reward_weights"] == [1.0, 2.0]
    steps = steps_of(out)
    assert_trained(tiny_model_dir, out, steps)
    assert all(m["reward"] == pytest.approx(2.0 * m["rewards/reward-model/mean"], abs=1e-5) for m in steps)
    # the pass rate is the accuracy reward's mean, 0
    assert all(m["pass_rate"] == m["rewards/accuracy_reward/mean"] == 0.0 for m in steps), steps
    live = [e for e in events if e["event"] == "log" and "loss" in e]
    assert [e["pass_rate"] for e in live] == [m["pass_rate"] for m in steps], "the worker reads it live"
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["rows"] == 2 and evaluation["pass_rate"] == 0.0
    assert evaluation["mean_reward"] == evaluation["reward_accuracy"] == 0.0


def test_grpo_with_a_format_and_an_accuracy_reward_weighted(tmp_path, tiny_model_dir, reward_model_dir):
    train, _ = snapshot(tmp_path, conversational=False)
    out = tmp_path / "out"
    events = run("grpo", config(tmp_path, tiny_model_dir, train, rewards="format,accuracy", reward_weights="0.5,1.0",
                                reward_model=str(reward_model_dir), reward_model_weight=0.1, temperature=0.7),
                 tmp_path)
    start = next(e for e in events if e["event"] == "start")
    assert start["rewards"] == ["format_reward", "accuracy_reward", str(reward_model_dir)]
    assert start["reward_weights"] == [0.5, 1.0, 0.1]
    steps = steps_of(out)
    assert_trained(tiny_model_dir, out, steps)
    for m in steps:
        assert {"rewards/format_reward/mean", "rewards/accuracy_reward/mean", "pass_rate"} <= set(m)
        assert m["reward"] == pytest.approx(0.5 * m["rewards/format_reward/mean"] + m["rewards/accuracy_reward/mean"]
                                            + 0.1 * m["rewards/reward-model/mean"], abs=1e-5)


def test_rloo_trains_two_steps_against_a_reward_model_with_a_kl_penalty(tmp_path, tiny_model_dir,
                                                                        reward_model_dir):
    train, _ = snapshot(tmp_path)
    out = tmp_path / "out"
    events = run("rloo", config(tmp_path, tiny_model_dir, train, reward_model=str(reward_model_dir)), tmp_path)
    start = next(e for e in events if e["event"] == "start")
    assert start["rewards"] == [str(reward_model_dir)]
    steps = steps_of(out)
    assert_trained(tiny_model_dir, out, steps)
    # the reward model's score: a random head gives scores that are not all 0 or 1
    assert all(m["reward"] not in (0.0, 1.0) for m in steps), steps
    assert all("pass_rate" not in m for m in steps), "no accuracy reward, no pass rate"


def test_the_rewards_a_job_names_are_checked_before_training(tmp_path):
    def cfg(**values):
        return GRPOScriptConfig(dataset="d", model="m", output_dir="o", **values)

    built = rewards_build(cfg(rewards="accuracy, length", reward_weights="1,0.1", reward_model="rm", length_target=3))
    assert [getattr(f, "__name__", f) for f in built.funcs] == ["accuracy_reward", "length_penalty", "rm"]
    assert built.weights == [1.0, 0.1, 1.0] and built.pass_rate is not None
    assert built.funcs[1]([], ["x" * 40]) == [-1.0], "length_target reaches the length penalty"
    with pytest.raises(ValueError,
                       match="rewards: unknown bleu; known: accuracy, format, format_partial, code, length"):
        rewards_build(cfg(rewards="accuracy,bleu"))
    with pytest.raises(ValueError, match="reward_weights: 1 weights for 2 rewards"):
        rewards_build(cfg(rewards="accuracy,format", reward_weights="1"))
    with pytest.raises(ValueError, match="no reward"):
        rewards_build(cfg(rewards=""))
    with pytest.raises(ValueError, match="no reward"):
        rewards_build(method_get("rloo").config(dataset="d", model="m", output_dir="o"))


def test_the_pass_rate_is_the_share_of_completions_with_accuracy_one():
    tracker = PassRate()
    wrapped = tracker.wrap(lambda prompts, completions, **kw: [1.0, 0.0, None, 1.0])
    assert wrapped([], []) == [1.0, 0.0, None, 1.0]
    logs = {"loss": 0.1}
    tracker.callback().on_log(None, None, None, logs=logs)
    assert logs["pass_rate"] == pytest.approx(2 / 3) and tracker.scores == []
    empty = {"loss": 0.2}
    tracker.callback().on_log(None, None, None, logs=empty)
    assert "pass_rate" not in empty, "no completions scored since the last entry"


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_the_registry_takes_a_prompt_only_snapshot_for_online_methods_and_refuses_preferences(method):
    from django.core.exceptions import ValidationError

    from synth.models import ModelEndpoint
    from tests.factories import ProjectFactory
    from training.jobs import training_job_create
    from training.models import DatasetSnapshot

    def snapshot_of(fmt):
        return DatasetSnapshot.objects.create(project=ProjectFactory(), name=f"s-{fmt}", format=fmt,
                                              file="x.jsonl", sha256="0" * 64, rows=1)

    endpoint = ModelEndpoint.objects.create(name="base", path="unused")
    assert method_get(method).consumes == "prompt_only"
    job = training_job_create(base_endpoint=endpoint, snapshot=snapshot_of("prompt_only"), method=method,
                              hyperparameters={"max_steps": 2, "num_generations": 8, "rewards": "accuracy,format"},
                              start=False)
    assert (job.method, job.hyperparameters["num_generations"]) == (method, 8)
    with pytest.raises(ValidationError) as excinfo:
        training_job_create(base_endpoint=endpoint, snapshot=snapshot_of("preference"), method=method, start=False)
    assert f"{method_get(method).label} trains on prompt_only rows" in excinfo.value.message_dict["snapshot"][0]
    with pytest.raises(ValidationError) as excinfo:
        training_job_create(base_endpoint=endpoint, snapshot=snapshot_of("prompt_only"), method=method,
                            hyperparameters={"num_generations": "four"}, start=False)
    assert "num_generations: expected int" in excinfo.value.message_dict["hyperparameters"][0]


def test_a_cluster_bundle_writes_verl_parquet_a_reward_module_on_the_verifiers_and_the_commands(tmp_path):
    import importlib.util
    import subprocess as sp

    import pyarrow.parquet as pq

    from training.ml.cluster import cluster_bundle, cluster_run, engine_available

    rows = [PromptOnlyRow(user("What is 2 + 2?"), answer="4", tests=[]),
            PromptOnlyRow(user("What is 1/2 + 1/4?"), answer="3/4", tests=[]),
            PromptOnlyRow(user("Write add(a, b)."), answer="",
                          tests=["assert add(1, 2) == 3", "assert add(0, 0) == 0"])]
    written = snapshot_folder_write(tmp_path / "snap", {"train": rows, "test": rows[:1]}, kind="prompt_only")
    cfg = GRPOScriptConfig(dataset=str(written.folder / "train.jsonl"), model="base-model",
                           output_dir=str(tmp_path / "trained"), eval_dataset=str(written.folder / "test.jsonl"),
                           rewards="accuracy,format", reward_weights="1.0,0.25", num_generations=8, batch_size=16,
                           beta=0.01, epsilon=0.3, max_completion_length=512, max_steps=30)
    folder = tmp_path / "bundle"
    paths = cluster_bundle(cfg, folder)
    # 1. verl's Parquet: its RL schema, the ground truth of each row
    table = pq.read_table(paths["verl_train"])
    assert table.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert [r["ground_truth"] for r in table.column("reward_model").to_pylist()] == [
        "4", "3/4", '["assert add(1, 2) == 3", "assert add(0, 0) == 0"]']
    assert table.column("ability").to_pylist() == ["math", "math", "code"]
    assert pq.read_table(paths["verl_test"]).num_rows == 1
    assert [json.loads(line)["answer"] for line in paths["openrlhf_train"].read_text().splitlines()][:2] == ["4",
                                                                                                           "3/4"]
    # 2. the reward module, imported from the folder: the verifiers, weighted
    spec = importlib.util.spec_from_file_location("bundle_reward_fn", paths["reward_fn"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.compute_score("prefdata", "2 + 2 = 4. The answer is 4.", "4", {"split": "train"}) == 1.0
    assert module.compute_score("prefdata", "The answer is 5.", "4", {"split": "train"}) == 0.0
    assert module.compute_score("prefdata", "0.75", "3/4") == 1.0
    assert module.compute_score("prefdata", "<think>2 and 2</think> The answer is 4.", "4") == 1.25
    # 3. the commands: GRPO with the job's group size, KL, clipping, data and reward module
    def command(script):
        import shlex

        return " ".join(shlex.split(script.read_text().split("set -euo pipefail\n", 1)[1].replace("\\\n", " ")))

    verl = command(paths["run_verl"])
    for part in ["python3 -m verl.trainer.main_ppo", "algorithm.adv_estimator=grpo",
                 f"data.train_files={folder.resolve() / 'verl' / 'train.parquet'}",
                 f"custom_reward_function.path={folder.resolve() / 'reward_fn.py'}",
                 "custom_reward_function.name=compute_score", "actor_rollout_ref.rollout.n=8",
                 "actor_rollout_ref.actor.kl_loss_coef=0.01", "actor_rollout_ref.actor.clip_ratio=0.3",
                 "data.train_batch_size=2", "data.max_response_length=512", "trainer.total_training_steps=30",
                 "actor_rollout_ref.model.path=base-model"]:
        assert part in verl, part
    assert "trainer.logger=['console']" in verl and verl.endswith(" $@")
    openrlhf = command(paths["run_openrlhf"])
    for part in ["python3 -m openrlhf.cli.train_ppo_ray", "--advantage_estimator group_norm",
                 "--n_samples_per_prompt 8", "--init_kl_coef 0.01", "--eps_clip 0.3", "--label_key answer",
                 f"--remote_rm_url {folder.resolve() / 'reward_fn.py'}"]:
        assert part in openrlhf, part
    assert sp.run(["bash", "-n", str(paths["run_verl"])]).returncode == 0, "valid shell"
    # 4. the engines are an optional extra, not installed here: running refuses and says so
    assert not engine_available("verl") and not engine_available("openrlhf")
    with pytest.raises(RuntimeError, match="verl is not installed: it is an optional extra"):
        cluster_run(cfg, folder, engine="verl")
