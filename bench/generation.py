"""Generation throughput on the demo model: batched sampling against one prompt at a time, with the same
prompts and the same settings, one run each (after a short warm-up).

    VAR_DIR=/tmp/gen-var .venv/bin/python bench/generation.py [--prompts 16] [--batch-size 16] [--max-new-tokens 48]

1. The model: ``--model`` (a transformers directory or a .gguf file), else the demo model where
   ``manage.py demo`` keeps it (``MODELS_ROOT/smollm2``), else the GGUF in the local cache
   (``~/.cache/prefdata/models``). Nothing is downloaded: with no model found, it says so and stops. A GGUF
   is converted once to safetensors under ``VAR_DIR/models`` (about 40 s).
2. Prompts: ``--prompts`` short instructions of different kinds (the same list both ways).
3. Batched: one ``TransformersBackend.generate`` call over all prompts, ``--batch-size`` rows per forward
   pass (left-padded, as synthesis jobs run). Sequential: one call per prompt (batch size 1).
4. Tokens are those generated (each reply re-tokenized), so both sides count the same thing; greedy
   decoding by default (``--temperature 0``) so both sides generate the same kind of text.
The last line holds the figures: ``batched_tok_per_s=... sequential_tok_per_s=... ratio=...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

PROMPTS = [
    "What is the capital of France?", "Give me three tips for sleeping better.",
    "Explain why the sky is blue in two sentences.", "Write a haiku about autumn.",
    "What is 17 times 23?", "Name three primary colours.", "Summarize the plot of Romeo and Juliet.",
    "How do I boil an egg?", "Translate 'good morning' into Spanish.", "What is photosynthesis?",
    "List four planets of the solar system.", "Why do we have seasons?", "Suggest a name for a pet turtle.",
    "What does a CPU do?", "Give a synonym for happy.", "How many days are in a leap year?",
    "Write one sentence about the sea.", "What is the boiling point of water?", "Describe a cat in five words.",
    "What is a prime number?", "Recommend a book for a long trip.", "How does a rainbow form?",
    "What is the largest ocean?", "Give an example of a verb.",
]


def model_find(arg: str | None) -> Path | None:
    """The model to load (a directory or a .gguf), without downloading anything."""
    if arg:
        return Path(arg)
    var = Path(os.environ.get("VAR_DIR", ROOT / "var"))
    models = Path(os.environ.get("MODELS_ROOT", var / "models"))
    candidates = [models / "smollm2" / (Path(DEMO_FILE).stem + "-hf"), models / "smollm2" / DEMO_FILE,
                  Path.home() / ".cache" / "prefdata" / "models" / DEMO_FILE]
    return next((p for p in candidates if p.exists()), None)


def model_dir(path: Path) -> Path:
    """A transformers directory: the path itself, or its GGUF converted once under VAR_DIR/models."""
    if path.is_dir():
        return path
    sys.path.insert(0, str(ROOT))
    from synth.backends.gguf import gguf_convert

    var = Path(os.environ.get("VAR_DIR", ROOT / "var"))
    return gguf_convert(path, out_dir=var / "models" / "smollm2" / (path.stem + "-hf"))


def tokens_of(backend, replies: list[list[str]]) -> int:
    return sum(len(backend.tokenizer(t, add_special_tokens=False)["input_ids"]) for r in replies for t in r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a transformers directory or a .gguf file (default: the demo model)")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    found = model_find(args.model)
    if found is None:
        sys.exit("No demo model here: run `manage.py demo` once (it fetches it), or give --model. Nothing is "
                 "downloaded by this benchmark.")
    sys.path.insert(0, str(ROOT))
    import torch

    from synth.backends.base import Sampling
    from synth.backends.local import TransformersBackend

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    backend = TransformersBackend(str(model_dir(found)))
    print(f"model: {found} (loaded in {time.perf_counter() - start:.1f}s), torch threads {torch.get_num_threads()}")
    prompts = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(args.prompts)]

    def sampling(batch_size: int) -> Sampling:
        return Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=0.95, n=1, seed=0,
                        batch_size=batch_size)

    backend.generate(prompts[:2], sampling(2))  # warm-up: first-call allocations, not measured

    start = time.perf_counter()
    batched = backend.generate(prompts, sampling(args.batch_size))
    batched_s = time.perf_counter() - start
    batched_tokens = tokens_of(backend, batched)

    start = time.perf_counter()
    sequential = [backend.generate([p], sampling(1))[0] for p in prompts]
    sequential_s = time.perf_counter() - start
    sequential_tokens = tokens_of(backend, sequential)

    print(f"prompts={len(prompts)} max_new_tokens={args.max_new_tokens} temperature={args.temperature} "
          f"batch_size={args.batch_size}")
    print(f"batched: {batched_tokens} tokens in {batched_s:.2f}s; sequential: {sequential_tokens} tokens in "
          f"{sequential_s:.2f}s")
    print(f"example: {PROMPTS[0]!r} -> {str(batched[0][0])[:80]!r}")
    batched_rate, sequential_rate = batched_tokens / batched_s, sequential_tokens / sequential_s
    print(f"batched_tok_per_s={batched_rate:.1f} sequential_tok_per_s={sequential_rate:.1f} "
          f"ratio={batched_rate / sequential_rate:.2f}")


if __name__ == "__main__":
    main()
