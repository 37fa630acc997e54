"""Self-Instruct (Wang et al. 2023, arXiv:2212.10560): new instructions from a pool of seed tasks.

1. Show the model a few tasks of the pool, numbered, and let it continue the list (``prompt``).
2. Read the new tasks out of its answer (``parse``).
3. Keep a task only if it passes the filters (``filter_reason``) and its ROUGE-L against every task of the
   pool is below 0.7 (``metrics.rouge_l_max``); kept tasks join the pool.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from prefdata.synthetic.text import words

ROUGE_THRESHOLD = 0.7

PROMPT_HEADER = "Come up with a series of tasks:\n"

# Tasks a text model cannot do (the paper's list): it sees no image, file, map or sound, and draws nothing.
UNANSWERABLE = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
                "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram")

# Answers and instructions that refuse rather than do.
REFUSALS = ("i'm sorry", "i am sorry", "sorry, but", "as an ai", "as a language model", "i cannot",
            "i can't", "i can not", "i am unable", "i'm unable", "i apologize")

_NUMBERED = re.compile(r"^\s*(?:task\s*)?\d+\s*[.:)]\s*", re.IGNORECASE)


def prompt(tasks: Sequence[str]) -> str:
    """The numbered tasks, then the next number for the model to continue from."""
    lines = [PROMPT_HEADER] + [f"Task {i}: {task.strip()}" for i, task in enumerate(tasks, start=1)]
    return "\n".join(lines) + f"\nTask {len(tasks) + 1}:"


def parse(text: str) -> list[str]:
    """The tasks in an answer: one per line (or per "Task n:" mark), numbers stripped, empty lines dropped."""
    text = re.sub(r"(?i)\s*\btask\s*\d+\s*:", "\n", text)
    out = []
    for line in text.splitlines():
        line = _NUMBERED.sub("", line).strip()
        if line:
            out.append(line)
    return out


def is_refusal(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in REFUSALS)


def filter_reason(task: str, *, min_words: int = 3, max_words: int = 150) -> str | None:
    """Why a generated task is dropped, or None to keep it: the paper's filters (too short or too long,
    asks for what a text model cannot do, starts with punctuation or a non-ASCII character) and a refusal."""
    tokens = words(task)
    stripped = task.strip()
    if len(tokens) < min_words:
        return "too_short"
    if len(tokens) > max_words:
        return "too_long"
    lowered = " ".join(tokens)
    if any(re.search(rf"\b{re.escape(word)}\b", lowered) for word in UNANSWERABLE):
        return "unanswerable"
    if is_refusal(stripped):
        return "refusal"
    if not stripped[0].isalnum() or not stripped[0].isascii():
        return "bad_start"
    return None
