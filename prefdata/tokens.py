"""How a prompt and a solution's steps become token ids: one function the process reward model's training
script (``training.ml.prm``) and the step-scorer endpoint (``synth.backends.scorer``) share, so a trained PRM
is read at the very positions it was trained on. Plain Python over any tokenizer with the transformers
interface; no torch.
"""

from __future__ import annotations

from typing import Any


def is_conversational(value: object) -> bool:
    """A list of ``{"role", "content"}`` messages (TRL's conversational form)."""
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value)


def prompt_text(tokenizer: Any, prompt: object) -> str:
    """A prompt as the model reads it: a conversation through the chat template, up to the assistant's turn."""
    if is_conversational(prompt):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return str(prompt)


def steps_tokenize(tokenizer: Any, prompt: object, steps: list[str], *, separator: str,
                   max_length: int) -> tuple[list[int], list[int]]:
    """The token ids of a prompt and its steps, each step followed by the separator, and the position of each
    step's last separator token (the one a PRM labels and is read at). Steps past ``max_length`` are left
    out (fewer positions than steps)."""
    ids = tokenizer(prompt_text(tokenizer, prompt))["input_ids"][:max_length]
    separator_ids = tokenizer(separator, add_special_tokens=False)["input_ids"] if separator else []
    positions: list[int] = []
    for step in steps:
        step_ids = tokenizer(step, add_special_tokens=False)["input_ids"] + separator_ids
        if not step_ids or len(ids) + len(step_ids) > max_length:
            break
        ids = ids + step_ids
        positions.append(len(ids) - 1)
    return ids, positions
