"""Magpie (Xu et al. 2024, arXiv:2406.08464): an aligned chat model, given only its chat template up to the
start of a user turn, writes a user's instruction itself; the instruction is then answered as usual."""

from __future__ import annotations

from collections.abc import Callable

MARK = "\x00MAGPIE\x00"


def user_turn_prefix(render: Callable[[list[dict[str, str]]], str], *, system: str = "") -> str:
    """The text a chat template puts before a user message's content (after a system turn when
    ``system`` is given). ``render(messages)`` applies the template without a generation prompt; a user
    message holding a marker is rendered and the text is cut at the marker."""
    messages = [{"role": "system", "content": system}] if system else []
    text = render([*messages, {"role": "user", "content": MARK}])
    if MARK not in text:
        raise ValueError("the chat template does not show the user's message: no user-turn prefix to give")
    return text[: text.index(MARK)]


def clean_instruction(text: str) -> str:
    """The instruction the model wrote: stripped; what follows a role mark it may have gone on to is cut."""
    for mark in ("<|assistant|>", "<|im_start|>", "<|end|>", "<|im_end|>", "\nassistant\n", "\nAssistant:"):
        if mark in text:
            text = text[: text.index(mark)]
    return text.strip()
