"""Science at small scale: GRPO teaches the demo model a format. The reward is ``training.ml.rewards``'
format reward alone, by default the shaped one (0.25 for ``<think>``, 0.25 more for ``</think>`` after it, 1.0
for ``<think>reasoning</think>`` then an answer; ``--reward format``: 1.0 or 0.0, which the demo model, never
writing the tags at first, gets no signal from), on a few short questions whose prompt asks for that format;
the mean reward of the last 5 steps should be above the first 5.

    VAR_DIR=/tmp/gen-var .venv/bin/python bench/grpo_format.py [--steps 20] [--generations 8]

1. The model: ``--model``, else the demo model found as ``bench/generation.py`` finds it (``manage.py demo``'s
   copy, else the GGUF in the local cache, converted once under ``VAR_DIR/models``). Nothing is downloaded.
2. The job: the platform's GRPO script (``training.ml.grpo.main``) on a prompt-only file of the questions, one
   prompt a step with ``--generations`` completions, no KL reference (``beta`` 0: faster on this CPU), on the
   CPU, written to a temporary folder.
3. Each step's mean reward comes from the run's ``metrics.jsonl``, as the platform reads it.
The last line holds the figures: ``first5_reward=... last5_reward=... improved=True|False``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "What is 7 plus 5?", "Which is heavier, a kilogram of iron or a gram of feathers?", "What is 9 times 3?",
    "Name the largest planet.", "What colour do you get by mixing blue and yellow?", "What is 15 minus 6?",
    "How many legs does a spider have?", "What is the capital of Italy?",
]
INSTRUCTION = ("First think step by step inside <think> and </think> tags, then give the answer after the "
               "closing tag. Question: ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a transformers directory or a .gguf file (default: the demo model)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--generations", type=int, default=8, help="group size (completions per prompt)")
    parser.add_argument("--max-completion-length", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--reward", default="format_partial", choices=["format", "format_partial"],
                        help="format: 1 for the whole format, else 0; format_partial: 0.25 a tag on the way to it")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "bench"))
    from generation import model_dir, model_find

    found = model_find(args.model)
    if found is None:
        sys.exit("no demo model here (run `manage.py demo` once, or pass --model): nothing is downloaded")
    model = model_dir(found)

    from prefdata.records import PromptOnlyRow
    from prefdata.targets import snapshot_folder_write
    from training.ml.grpo import GRPOScriptConfig
    from training.ml.grpo import main as grpo_main

    work = Path(tempfile.mkdtemp(prefix="grpo-format-"))
    rows = [PromptOnlyRow([{"role": "user", "content": INSTRUCTION + q}], answer="", tests=[]) for q in QUESTIONS]
    written = snapshot_folder_write(work / "snapshot", {"train": rows}, kind="prompt_only")
    cfg = GRPOScriptConfig(dataset=str(written.folder / "train.jsonl"), model=str(model),
                           output_dir=str(work / "out"), rewards=args.reward, max_steps=args.steps,
                           batch_size=args.generations, num_generations=args.generations,
                           max_completion_length=args.max_completion_length, learning_rate=args.learning_rate,
                           lr_scheduler_type="constant", beta=0.0, temperature=1.0, use_cpu=True, save_steps=10_000)
    started = time.perf_counter()
    grpo_main(cfg)
    seconds = time.perf_counter() - started
    metrics = [json.loads(line) for line in (work / "out" / "metrics.jsonl").read_text().splitlines()]
    rewards = [m["reward"] for m in metrics if "reward" in m and "loss" in m]
    for step, reward in enumerate(rewards, 1):
        print(f"step {step:3d}  mean_reward={reward:.3f}")
    first5, last5 = sum(rewards[:5]) / len(rewards[:5]), sum(rewards[-5:]) / len(rewards[-5:])
    print(f"steps={len(rewards)} seconds={seconds:.0f} model={Path(model).name}")
    print(f"first5_reward={first5:.3f} last5_reward={last5:.3f} improved={last5 > first5}")


if __name__ == "__main__":
    main()
