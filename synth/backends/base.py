"""The interface every model backend implements: plain types, imported by the backends (never the
other way round: ``synth.backends.loader`` picks and caches a backend)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_p: float = 0.95
    n: int = 1
    seed: int | None = None
    batch_size: int = 8

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "batch_size"}


class Reply(str):
    """A generated reply: the text itself, with why generation stopped where the backend knows it
    ("length": cut at ``max_new_tokens``; "stop": the model ended it; "" unknown)."""

    finish_reason: str

    def __new__(cls, text: str, finish_reason: str = "") -> Reply:
        reply = super().__new__(cls, text)
        reply.finish_reason = finish_reason
        return reply


class Backend(Protocol):
    name: str

    def generate(self, conversations: list[Conversation], sampling: Sampling) -> list[list[str]]:
        """For each conversation, ``sampling.n`` assistant replies (``Reply``: a str with its finish reason)."""
        ...

    def score(self, conversations: list[Conversation], candidates: list[list[str]]) -> list[list[float]]:
        """For each conversation, the summed log-probability of each candidate assistant reply prefix."""
        ...
