"""Convert a GGUF file into a plain transformers checkpoint, once.

transformers can read GGUF (``gguf_file=...``) but dequantizes on every load, which takes
tens of seconds; we do it once and keep safetensors beside the file. Quantized GGUFs carry a
``quantization_config`` that would make ``save_pretrained`` write a quantized checkpoint we
cannot reload, so we drop it and rebuild the model from its config before saving.
No Django import: this runs in workers and in ``training/ml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def gguf_converted_dir(gguf_path: Path) -> Path:
    return gguf_path.with_suffix("").with_name(gguf_path.stem + "-hf")


def gguf_convert(gguf_path: str | Path, *, out_dir: str | Path | None = None) -> Path:
    """Return a directory with the model as safetensors, converting ``gguf_path`` if needed."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    out = Path(out_dir) if out_dir else gguf_converted_dir(gguf_path)
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=False)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    model.generation_config = loaded.generation_config
    # Write into a temporary folder and rename: a half-converted model is never picked up.
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
