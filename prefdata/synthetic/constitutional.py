"""Supervised Constitutional AI (Bai et al. 2022, arXiv:2212.08073, section 3): a response is critiqued
against a principle and revised, for k rounds, each round with a principle drawn from the constitution.
The final revision is an SFT target; the revision is preferred over the original in a pair.

The conversation grows turn by turn, as in the paper: the prompt and the response, then the critique
request and the critique, then the revision request and the revision.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class PrincipleText:
    name: str
    critique_request: str
    revision_request: str


def critique_messages(conversation: Conversation, response: str, principle: PrincipleText) -> Conversation:
    """Ask for a critique of ``response`` to ``conversation`` under ``principle``."""
    return [*conversation, {"role": "assistant", "content": response},
            {"role": "user", "content": f"Critique request: {principle.critique_request}"}]


def revision_messages(conversation: Conversation, response: str, principle: PrincipleText,
                      critique: str) -> Conversation:
    """Ask for a revision of ``response`` given its critique."""
    return [*critique_messages(conversation, response, principle), {"role": "assistant", "content": critique},
            {"role": "user", "content": f"Revision request: {principle.revision_request} "
                                        f"Answer with the revised response only."}]


def principles_draw(principles: Sequence[PrincipleText], rounds: int, rng: random.Random) -> list[PrincipleText]:
    """One principle per round, drawn at random as in the paper (without repeats while there are enough)."""
    if not principles:
        raise ValueError("the constitution has no principle")
    chosen: list[PrincipleText] = []
    while len(chosen) < rounds:
        chosen.extend(rng.sample(list(principles), min(len(principles), rounds - len(chosen))))
    return chosen


def clean_revision(text: str) -> str:
    """The revision out of a model's answer: a leading "Revision:" mark removed."""
    text = text.strip()
    for mark in ("Revision:", "Revised response:"):
        if text.lower().startswith(mark.lower()):
            text = text[len(mark) :].strip()
    return text
