"""Every training method, run as the worker runs it (``python -m training.ml.<method> --config cfg.json``, a
subprocess) on a snapshot written by prefdata: it trains two steps with finite losses, logs the learning rate
and tokens/s, moves the weights, saves a model the platform can load, resumes from its checkpoint, and
evaluates on the test split."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefdata.records import PreferenceRow, SFTRow, StepwiseRow, UnpairedRow
from prefdata.targets import snapshot_folder_write
from training.ml.common import config_parse
from training.ml.dpo import DPO_LOSS_TYPES, DPOScriptConfig
from training.ml.registry import METHODS, launch_command, method_get

ROOT = Path(__file__).resolve().parents[2]


def user(text):
    return [{"role": "user", "content": text}]


def assistant(text):
    return [{"role": "assistant", "content": text}]


PREFERENCE = [
    PreferenceRow(user("What is the capital of France?"), assistant("Paris."), assistant("Rome.")),
    PreferenceRow(user("Why is the sky blue?"), assistant("Air scatters blue light."), assistant("Paint.")),
    PreferenceRow(user("Capital of France?"), assistant("Paris."), assistant("Berlin.")),
    PreferenceRow(user("Sky colour?"), assistant("Blue."), assistant("Green.")),
]
ROWS = {
    "preference": PREFERENCE,
    "unpaired": [UnpairedRow(r.prompt, r.chosen, True) for r in PREFERENCE]
    + [UnpairedRow(r.prompt, r.rejected, False) for r in PREFERENCE],
    "sft": [SFTRow(messages=r.prompt + r.chosen) for r in PREFERENCE],
    "stepwise": [
        StepwiseRow("2 + 3 * 4 = ?", ["3 * 4 = 12", "2 + 12 = 14", "The answer is 14."], [True, True, True]),
        StepwiseRow("2 + 3 * 4 = ?", ["2 + 3 = 5", "5 * 4 = 20", "The answer is 20."], [False, False, False]),
        StepwiseRow("1 + 1 = ?", ["1 + 1 = 2", "The answer is 3."], [True, False]),
        StepwiseRow("2 * 2 = ?", ["2 * 2 = 4", "The answer is 4."], [True, True]),
    ],
}


def snapshot(tmp_path, kind):
    rows = ROWS[kind]
    written = snapshot_folder_write(tmp_path / f"snapshot-{kind}", {"train": rows, "test": rows[:2]}, kind=kind)
    return written.folder / "train.jsonl", written.folder / "test.jsonl"


def run(method, config, tmp_path, name="cfg"):
    """The method's script on ``config``, as the worker starts it; its JSON events on stdout."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(launch_command(method, str(path)), cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"event"')]


def weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


def moved(base_dir, out_dir):
    """The shared weights of the base and the trained model that differ (the trunk: a new head has none)."""
    base, trained = weights(base_dir), weights(out_dir)
    shared = set(base) & set(trained)
    assert any(k.startswith("model.layers.") for k in shared), sorted(trained)[:5]
    return [k for k in shared if not torch.equal(base[k], trained[k])]


EVALUATION_KEYS = {
    "sft": {"loss", "perplexity"},
    "reward": {"accuracy", "mean_margin"},
    "prm": {"step_accuracy", "first_error_accuracy"},
    "dpo": {"implicit_reward_accuracy", "implicit_margin"},
    "kto": {"implicit_reward_accuracy"},
    "orpo": {"implicit_reward_accuracy", "implicit_margin"},
    "simpo": {"implicit_reward_accuracy", "implicit_margin"},
}
MODEL_CLASSES = {"reward": "LlamaForSequenceClassification", "prm": "LlamaForTokenClassification"}


# Online methods (GRPO, RLOO: prompt-only rows, rewards) are run in tests/training/test_ml_online.py.
@pytest.mark.parametrize("method", [name for name, m in METHODS.items() if m.consumes != "prompt_only"])
def test_each_method_trains_saves_resumes_and_evaluates(tmp_path, tiny_model_dir, method):
    train, test = snapshot(tmp_path, METHODS[method].consumes)
    out = tmp_path / "out"
    config = {"dataset": str(train), "model": str(tiny_model_dir), "output_dir": str(out), "max_steps": 2,
              "batch_size": 2, "max_length": 64, "learning_rate": 1e-3, "save_steps": 1, "use_cpu": True,
              "keep_checkpoints": True, "lr_scheduler_type": "constant"}
    # 1. two steps, checkpoints kept
    events = run(method, config, tmp_path, "first")
    assert [e["event"] for e in events if e["event"] in {"start", "saved"}] == ["start", "saved"]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in steps)
    assert all("learning_rate" in m and m["tokens_per_s"] > 0 for m in steps), steps
    assert moved(tiny_model_dir, out), "no weight changed"
    saved = json.loads((out / "config.json").read_text())
    assert saved["architectures"] == [MODEL_CLASSES.get(method, "LlamaForCausalLM")]
    assert (out / "tokenizer.json").exists()
    first = weights(out)
    # 2. stopped after step 2: a run for three steps resumes from checkpoint-2 and trains step 3 only
    events = run(method, {**config, "max_steps": 3, "keep_checkpoints": False, "eval_dataset": str(test)},
                 tmp_path, "second")
    assert {"event": "resume", "checkpoint": str(out / "checkpoints" / "checkpoint-2"), "step": 2} in events
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]
    assert not (out / "checkpoints").exists(), "checkpoints are removed once the model is saved"
    assert any(not torch.equal(first[k], v) for k, v in weights(out).items()), "step 3 changed nothing"
    # 3. evaluated on the test split
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["rows"] == 2 and EVALUATION_KEYS[method] <= set(evaluation)
    assert all(math.isfinite(evaluation[k]) for k in EVALUATION_KEYS[method])
    assert {"event": "evaluation", **evaluation} in events


@pytest.mark.parametrize("method", ["dpo", "prm"])
def test_a_lora_run_saves_a_merged_model_whose_linear_weights_moved(tmp_path, tiny_model_dir, method):
    train, _ = snapshot(tmp_path, METHODS[method].consumes)
    out = tmp_path / "out"
    run(method, {"dataset": str(train), "model": str(tiny_model_dir), "output_dir": str(out), "max_steps": 2,
                 "max_length": 64, "learning_rate": 1e-2, "use_cpu": True, "lora_r": 4, "lora_alpha": 8}, tmp_path)
    assert not (out / "adapter_config.json").exists(), "merged into the base, loaded like any model"
    changed = moved(tiny_model_dir, out)
    assert changed and all(k.endswith("proj.weight") for k in changed), changed  # LoRA adapts linear layers only
    assert "model.embed_tokens.weight" not in changed
    if method == "prm":  # the new head is trained in full and saved with the merged trunk
        assert weights(out)["score.weight"].shape == (2, 64)


def test_the_launch_command_runs_the_script_or_accelerate_launch(tmp_path):
    import sys

    assert launch_command("kto", "job/config.json") == [sys.executable, "-m", "training.ml.kto", "--config",
                                                        "job/config.json"]
    assert launch_command(method_get("dpo"), "c.json", accelerate_config="zero3.yaml", num_processes=4) == [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", "zero3.yaml", "--num_processes", "4",
        "-m", "training.ml.dpo", "--config", "c.json"]
    with pytest.raises(ValueError, match="num_processes"):
        launch_command("dpo", "c.json", accelerate_config="a.yaml", num_processes=0)
    with pytest.raises(ValueError, match="unknown training method"):
        launch_command("ppo", "c.json")


def test_the_accelerate_launcher_accepts_the_built_command():
    """accelerate's own parser reads the arguments the command passes it."""
    from accelerate.commands.launch import launch_command_parser

    command = launch_command("sft", "c.json", accelerate_config="deepspeed.yaml", num_processes=2)
    args = launch_command_parser().parse_args(command[3:])
    assert (args.config_file, args.num_processes, args.module, args.training_script, args.training_script_args) == (
        "deepspeed.yaml", 2, True, "training.ml.sft", ["--config", "c.json"])


def test_every_dpo_loss_type_is_one_trl_offers():
    from trl import DPOConfig

    help_text = DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    assert all(f"'{loss}'" in help_text for loss in DPO_LOSS_TYPES)
    assert DPOScriptConfig.__dataclass_fields__["loss_type"].metadata["choices"] == DPO_LOSS_TYPES


def test_choices_are_enforced_before_a_job_is_queued_and_by_the_script(tmp_path):
    dpo = method_get("dpo")
    assert dpo.hyperparameters_check({"loss_type": "ipo", "label_smoothing": 0.1}) == {
        "loss_type": "ipo", "label_smoothing": 0.1}
    with pytest.raises(ValueError, match="loss_type: expected one of sigmoid, ipo"):
        dpo.hyperparameters_check({"loss_type": "dpo"})
    with pytest.raises(ValueError, match="label_mode: expected one of hard, soft, got 'fuzzy'"):
        method_get("prm").hyperparameters_check({"label_mode": "fuzzy"})
    with pytest.raises(SystemExit):
        config_parse(DPOScriptConfig, ["--dataset", "d", "--model", "m", "--output_dir", "o", "--bf16", "maybe"])


def test_every_method_has_help_for_each_field_and_the_shared_ones():
    for method in METHODS.values():
        fields = method.fields()
        assert {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "bf16", "use_cpu"} <= set(fields)
        # The test split's file is the platform's to set (a path field), never a job's hyper-parameter.
        assert "eval_dataset" in method.config.__dataclass_fields__ and "eval_dataset" not in fields
        assert all(f.metadata.get("help") for f in fields.values()), method.name
        assert method.defaults()["lora_r"] == 0 and method.defaults()["bf16"] == "auto"
    assert "experimental" in method_get("orpo").label and "experimental" in method_get("simpo").label


def test_prm_labels_only_the_separator_after_each_step(tiny_model_dir):
    from transformers import AutoTokenizer

    from training.ml.prm import IGNORE, features

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    separator_id = tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
    row = {"prompt": "What is 2 + 2?", "completions": ["2 + 2 = 4", "So the answer is 5"], "labels": [True, False]}
    hard = features(row, tokenizer=tokenizer, separator="\n", max_length=64, soft=False)
    labelled = [i for i, label in enumerate(hard["labels"]) if label != IGNORE]
    assert [hard["labels"][i] for i in labelled] == [1, 0]
    assert [hard["input_ids"][i] for i in labelled] == [separator_id, separator_id]
    assert labelled[-1] == len(hard["input_ids"]) - 1
    soft = features({**row, "labels": [0.75, 0.25]}, tokenizer=tokenizer, separator="\n", max_length=64, soft=True)
    assert [label for label in soft["labels"] if label != IGNORE] == [0.75, 0.25]
    # a step that does not fit in max_length is left out with its label
    short = features(row, tokenizer=tokenizer, separator="\n", max_length=labelled[0] + 2, soft=False)
    assert [label for label in short["labels"] if label != IGNORE] == [1]


def test_the_prm_training_set_keeps_unlabelled_tokens_ignored(tmp_path, tiny_model_dir):
    """Read from a snapshot whose labels are booleans, the labels stay -100 / 0 / 1 (not cast to booleans)."""
    from training.ml.common import rows_load, tokenizer_load
    from training.ml.prm import IGNORE, dataset_build

    train, _ = snapshot(tmp_path, "stepwise")
    dataset = dataset_build(rows_load(str(train)), tokenizer=tokenizer_load(str(tiny_model_dir)), separator="\n",
                            max_length=64, soft=False)
    for built, row in zip(dataset, ROWS["stepwise"], strict=True):
        assert set(built["labels"]) <= {IGNORE, 0, 1} and built["labels"].count(IGNORE) > len(row.labels)
        assert [label for label in built["labels"] if label != IGNORE] == [int(v) for v in row.labels]


def test_first_error_follows_processbench():
    from training.ml.evaluate import first_error

    assert first_error([True, True]) == -1 and first_error([True, False, False]) == 1 and first_error([False]) == 0
