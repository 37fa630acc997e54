"""What the platform's training path costs over a bare TRL script: the same DPO run both ways, one run each.

    .venv/bin/python bench/training_overhead.py [--steps 50] [--rows 400] [--batch-size 8] [--max-length 64]
                                               [--model DIR] [--gpu]

1. builds the tiny test model (or takes ``--model``) and writes a synthetic preference snapshot with prefdata;
2. platform: the command a training job runs (``training.ml.registry.launch_command``: ``python -m
   training.ml.dpo --config cfg.json``) in a subprocess: metrics.jsonl with tokens/s, checkpoints every
   ``save_steps`` (the platform default), the model saved, checkpoints removed;
3. bare: a script of a few lines in a subprocess, TRL's DPOTrainer with the same model, data and settings (the
   same DPOConfig values: learning rate, steps, batch, length, beta, precision, a log entry per step), which
   saves the model and nothing else;
4. times each subprocess from start to exit, after an untimed start that warms the file cache for both.

The last line: ``platform_s=... bare_s=... overhead=...`` (overhead = platform / bare - 1).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BARE_SCRIPT = '''
import json, sys
import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

s = json.load(open(sys.argv[1]))
torch.manual_seed(s["seed"])
tokenizer = AutoTokenizer.from_pretrained(s["model"])
model = AutoModelForCausalLM.from_pretrained(s["model"], dtype=torch.float32)
args = DPOConfig(output_dir=s["output_dir"], beta=s["beta"], learning_rate=s["learning_rate"], max_steps=s["max_steps"],
                 per_device_train_batch_size=s["batch_size"], max_length=s["max_length"], seed=s["seed"],
                 logging_steps=1, save_strategy="no", report_to="none", use_cpu=s["use_cpu"], bf16=s["bf16"],
                 gradient_checkpointing=False, dataloader_num_workers=0, disable_tqdm=True)
trainer = DPOTrainer(model=model, args=args, train_dataset=load_dataset("json", data_files=s["dataset"], split="train"),
                     processing_class=tokenizer)
trainer.train()
trainer.save_model(s["output_dir"])
'''


def preference_rows(count: int, seed: int = 0) -> list:
    """Sums with the right answer chosen over a wrong one: short rows of a few lengths."""
    from prefdata.records import PreferenceRow

    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b = rng.randrange(100), rng.randrange(100)
        wrong = a + b + rng.choice([-10, -1, 1, 10])
        rows.append(PreferenceRow(f"What is {a} plus {b}?", f" {a} plus {b} is {a + b}.", f" It is {wrong}."))
    return rows


def timed(command: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                              env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                                   "PYTHONUNBUFFERED": "1"})
    elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{command[:4]} failed, see {log}:\n{log.read_text()[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--model", default="", help="a model folder (default: the tiny test model, built here)")
    parser.add_argument("--gpu", action="store_true", help="train on the GPU (bf16 where it has it)")
    args = parser.parse_args()

    from prefdata.targets import snapshot_folder_write
    from training.ml.common import TrainConfig, bf16_use
    from training.ml.dpo import DPOScriptConfig
    from training.ml.registry import launch_command

    work = Path(tempfile.mkdtemp(prefix="training-overhead-"))
    model = args.model
    if not model:
        from tests.conftest import build_tiny_model

        model = str(build_tiny_model(work / "tiny-model"))
    folder = snapshot_folder_write(work / "snapshot", preference_rows(args.rows), kind="preference").folder
    dataset = str(folder / "train.jsonl")
    defaults = DPOScriptConfig.__dataclass_fields__
    settings = {"model": model, "dataset": dataset, "max_steps": args.steps, "batch_size": args.batch_size,
                "max_length": args.max_length, "use_cpu": not args.gpu, "seed": 0,
                "beta": defaults["beta"].default, "learning_rate": defaults["learning_rate"].default}
    bf16 = bf16_use(TrainConfig(dataset="", model="", output_dir="", use_cpu=not args.gpu))

    platform_cfg = work / "platform.json"
    platform_cfg.write_text(json.dumps({**settings, "output_dir": str(work / "platform")}))
    bare_cfg = work / "bare.json"
    bare_cfg.write_text(json.dumps({**settings, "bf16": bf16, "output_dir": str(work / "bare")}))
    bare_script = work / "bare_dpo.py"
    bare_script.write_text(BARE_SCRIPT)

    timed([sys.executable, "-c", "import torch, trl, transformers, datasets"], work / "warm.log")
    bare_s = timed([sys.executable, str(bare_script), str(bare_cfg)], work / "bare.log")
    platform_s = timed(launch_command("dpo", str(platform_cfg)), work / "platform.log")

    metrics = [json.loads(line) for line in (work / "platform" / "metrics.jsonl").read_text().splitlines()]
    rates = [m["tokens_per_s"] for m in metrics if "tokens_per_s" in m]
    steps = [m["step"] for m in metrics if "loss" in m]
    assert steps == list(range(1, args.steps + 1)), "the platform run logged every step"
    print(json.dumps({"model": model if args.model else "tiny test model", "steps": args.steps, "rows": args.rows,
                      "batch_size": args.batch_size, "max_length": args.max_length, "gpu": args.gpu, "bf16": bf16,
                      "platform_median_tokens_per_s": sorted(rates)[len(rates) // 2] if rates else None,
                      "work": str(work)}))
    print(f"platform_s={platform_s:.2f} bare_s={bare_s:.2f} overhead={platform_s / bare_s - 1:+.1%}")


if __name__ == "__main__":
    main()
