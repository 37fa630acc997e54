"""Typed rows of every dataset kind the platform reads or writes, the vocabulary of its labels, and the
text helpers every reader and writer needs.

Two families:
- import records, what a reader makes of one record of a file: ``PairRecord`` (a prompt and two replies)
  and ``StepRecord`` (a problem and a solution split into steps, with ``StepRatings`` where the file
  carries step labels);
- export rows, what TRL trainers load (``datasets.load_dataset("json", ...)``): ``PreferenceRow``,
  ``UnpairedRow`` (KTO, outcome supervision), ``StepwiseRow`` (PRM), ``SFTRow`` and ``PromptOnlyRow``
  (GRPO / RLVR). Each gives the JSON object of its row (``to_dict``, key order included: it is part of a
  snapshot's bytes) and checks one read back (``from_dict``, a ``FieldError`` naming the field).

The export rows are TRL's dataset types ("Dataset formats and types" in TRL's documentation), each in
its standard (plain strings) or conversational ({role, content} messages) format: preference (explicit
prompt), unpaired preference, stepwise supervision, language modeling (``SFTRow`` with ``text`` or
``messages``), prompt-completion (``SFTRow`` with ``prompt`` and ``completion``) and prompt-only. TRL
takes a row's format from its first text field, so one row is all standard or all conversational
(``row_format``; ``from_dict`` refuses a mix). ``prefdata.targets`` writes the same rows for OpenRLHF and
verl.

The label vocabulary is the Django models' choices as plain values (a test keeps them equal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

# -- vocabulary ----------------------------------------------------------------------------------------------

ROLES = {"system", "user", "assistant", "tool"}
VERDICTS: tuple[str, ...] = ("A", "B", "tie", "both_bad")
# Llama 2's scale (Touvron et al. 2023): how much better the preferred reply is.
STRENGTHS: dict[int, str] = {1: "Negligibly better", 2: "Slightly better", 3: "Better", 4: "Significantly better"}
STEP_RATINGS: tuple[int | None, ...] = (1, 0, -1, None)  # +1 correct, 0 neutral, -1 wrong, None not labeled
FINISH_REASONS: tuple[str, ...] = ("solution", "found_error", "bad_problem", "gave_up")
SOLUTION, FOUND_ERROR, BAD_PROBLEM, GAVE_UP = FINISH_REASONS
OUTCOMES: tuple[str, ...] = ("correct", "incorrect", "")  # "" is not judged
CORRECT, INCORRECT, NOT_JUDGED = OUTCOMES
MODEL_NAME_MAX = 200  # the longest model name the platform stores


# -- text helpers --------------------------------------------------------------------------------------------


def text_clean(text: str) -> str:
    """Drop NUL characters: PostgreSQL text cannot hold them, and small models do emit them."""
    return text.replace("\x00", "") if "\x00" in text else text


def json_clean(value: object) -> object:
    """``value`` without NUL characters, which PostgreSQL's jsonb refuses (as text does)."""
    if isinstance(value, str):
        return text_clean(value)
    if isinstance(value, dict):
        return {text_clean(str(k)): json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_clean(v) for v in value]
    return value


def conversation_validate(messages: object, *, field: str = "prompt") -> list[dict[str, str]]:
    """Return ``messages`` as a clean conversation, or raise ValueError naming the field."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{field}: expected a non-empty list of {{role, content}} messages or a string")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"{field}[{i}]: expected an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"{field}[{i}].role: {role!r} is not one of {sorted(ROLES)}")
        if not isinstance(content, str):
            raise ValueError(f"{field}[{i}].content: expected a string")
        clean.append({"role": role, "content": text_clean(content)})
    return clean


class FieldError(ValueError):
    """A problem with one field of a row: ``field`` names it (the top-level key, or a path such as
    ``label.steps[2]``); the message says what is wrong, usually starting with that path."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field = field_name
        super().__init__(message)


# -- import records ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class PairRecord:
    """One pair to label: a conversation and two replies to its last turn."""

    prompt: list[dict[str, str]]
    response_a: str
    response_b: str
    model_a: str = ""
    model_b: str = ""
    metadata: dict = field(default_factory=dict)
    line: int = 0  # where it came from: the line, or the record (task) number of a JSON array
    # The source's names of the two replies, for the errors about them ("chosen", "rejected"): which
    # reply is stored as A is not the source's concern.
    fields: tuple[str, str] = ("response_a", "response_b")


@dataclass(slots=True)
class StepRatings:
    """Step labels carried by a file: one rating per step (``STEP_RATINGS``), how the labeling ended
    (``FINISH_REASONS``), the final answer's ``OUTCOMES`` value and the flagged steps."""

    ratings: list[int | None]
    finish_reason: str = SOLUTION
    outcome: str = ""
    flags: list[int] = field(default_factory=list)


@dataclass(slots=True)
class StepRecord:
    """One solution to label step by step."""

    prompt: list[dict[str, str]]
    steps: list[str]
    solution_text: str = ""
    reference_answer: str = ""
    ground_truth_solution: str = ""
    model_name: str = ""
    prompt_metadata: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    label: StepRatings | None = None
    line: int = 0


# -- export rows ---------------------------------------------------------------------------------------------

Text = str | list[dict[str, str]]  # a plain string, or a conversation of {role, content} messages


def _row(d: object) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise FieldError("(row)", f"(row): expected an object, got {type(d).__name__}")
    return d


def _required(d: Mapping[str, Any], name: str) -> Any:
    if name not in d:
        raise FieldError(name, f"{name}: missing")
    return d[name]


def _text(value: object, name: str) -> Text:
    """A string or a non-empty list of {role, content} messages, as given."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value:
        raise FieldError(name, f"{name}: expected a string or a non-empty list of {{role, content}} messages")
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise FieldError(name, f"{name}[{i}]: expected an object with role and content")
        if message.get("role") not in ROLES:
            raise FieldError(name, f"{name}[{i}].role: {message.get('role')!r} is not one of {sorted(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise FieldError(name, f"{name}[{i}].content: expected a string")
    return value


def _string(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise FieldError(name, f"{name}: expected a string")
    return value


def _boolean(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(name, f"{name}: expected true or false, got {value!r}")
    return value


def _strings(value: object, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FieldError(name, f"{name}: expected a list of strings")
    return value


def _form(value: object) -> str:
    return "conversational" if isinstance(value, list) else "standard"


def row_format(row: Mapping[str, Any], fields: tuple[str, ...] = ("prompt", "chosen", "rejected", "completion",
                                                                  "messages", "text")) -> str:
    """"standard" or "conversational": the format of a row's text ``fields`` (those it has), all one or
    the other, as TRL reads them (it decides on the first and applies the chat template to all); a
    ``FieldError`` names the first field in the other format."""
    present = [name for name in fields if row.get(name) is not None]
    if not present:
        raise FieldError("(row)", f"(row): none of {', '.join(fields)}")
    first = _form(row[present[0]])
    for name in present[1:]:
        if _form(row[name]) != first:
            raise FieldError(name, f"{name}: {_form(row[name])} where {present[0]} is {first}; TRL reads a row "
                                   "as all plain strings or all {role, content} messages")
    return first


@dataclass(frozen=True, slots=True)
class PreferenceRow:
    """TRL preference: a prompt, the chosen and the rejected reply, and optionally a margin (how much
    better the chosen one is, for reward models)."""

    kind: ClassVar[str] = "preference"
    prompt: Text
    chosen: Text
    rejected: Text
    margin: float | None = None

    def to_dict(self) -> dict[str, Any]:
        row = {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        if self.margin is not None:
            row["margin"] = self.margin
        return row

    @classmethod
    def from_dict(cls, d: object) -> PreferenceRow:
        d = _row(d)
        margin = d.get("margin")
        if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int | float)
                                   or not math.isfinite(margin)):
            raise FieldError("margin", f"margin: expected a finite number or null, got {margin!r}")
        row = cls(_text(_required(d, "prompt"), "prompt"), _text(_required(d, "chosen"), "chosen"),
                  _text(_required(d, "rejected"), "rejected"), margin)
        row_format(d)
        return row


@dataclass(frozen=True, slots=True)
class UnpairedRow:
    """TRL unpaired preference (KTO), also outcome supervision: one completion, good (True) or not."""

    kind: ClassVar[str] = "unpaired"
    prompt: Text
    completion: Text
    label: bool

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "completion": self.completion, "label": self.label}

    @classmethod
    def from_dict(cls, d: object) -> UnpairedRow:
        d = _row(d)
        row = cls(_text(_required(d, "prompt"), "prompt"), _text(_required(d, "completion"), "completion"),
                  _boolean(_required(d, "label"), "label"))
        row_format(d)
        return row


@dataclass(frozen=True, slots=True)
class StepwiseRow:
    """TRL stepwise supervision (process reward models): the steps of a solution and one label each."""

    kind: ClassVar[str] = "stepwise"
    prompt: Text
    completions: list[str]
    labels: list[bool]

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "completions": self.completions, "labels": self.labels}

    @classmethod
    def from_dict(cls, d: object) -> StepwiseRow:
        d = _row(d)
        prompt = _text(_required(d, "prompt"), "prompt")
        completions = _strings(_required(d, "completions"), "completions")
        labels = _required(d, "labels")
        if not isinstance(labels, list) or not all(isinstance(v, bool) for v in labels):
            raise FieldError("labels", "labels: expected a list of true / false")
        if len(labels) != len(completions):
            raise FieldError("labels", f"labels: {len(labels)} labels for {len(completions)} completions")
        return cls(prompt, completions, labels)


@dataclass(frozen=True, slots=True)
class SFTRow:
    """Supervised fine-tuning, one of three forms: a whole conversation (``messages``, TRL's conversational
    language modeling), a ``prompt`` and its ``completion`` (prompt-completion, the loss on the completion
    only), or plain ``text`` (standard language modeling)."""

    kind: ClassVar[str] = "sft"
    messages: list[dict[str, str]] | None = None
    prompt: Text | None = None
    completion: Text | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        pair = (self.prompt, self.completion)
        forms = (self.messages is not None) + (self.text is not None) + (pair != (None, None))
        if forms != 1 or (pair != (None, None) and None in pair):
            raise FieldError("messages", "messages: expected either messages, a prompt and a completion, or text")

    def to_dict(self) -> dict[str, Any]:
        if self.messages is not None:
            return {"messages": self.messages}
        if self.text is not None:
            return {"text": self.text}
        return {"prompt": self.prompt, "completion": self.completion}

    @classmethod
    def from_dict(cls, d: object) -> SFTRow:
        d = _row(d)
        if "messages" in d:
            messages = _text(d["messages"], "messages")
            if isinstance(messages, str):
                raise FieldError("messages", "messages: expected a non-empty list of {role, content} messages")
            return cls(messages=messages)
        if "text" in d and "prompt" not in d:
            return cls(text=_string(d["text"], "text"))
        row = cls(prompt=_text(_required(d, "prompt"), "prompt"),
                  completion=_text(_required(d, "completion"), "completion"))
        row_format(d)
        return row


@dataclass(frozen=True, slots=True)
class PromptOnlyRow:
    """A prompt for online methods (GRPO, RLVR), with what verifies a completion: the reference
    ``answer`` and / or ``tests`` (code run against a completion)."""

    kind: ClassVar[str] = "prompt_only"
    prompt: Text
    answer: str | None = None
    tests: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"prompt": self.prompt}
        if self.answer is not None:
            row["answer"] = self.answer
        if self.tests is not None:
            row["tests"] = self.tests
        return row

    @classmethod
    def from_dict(cls, d: object) -> PromptOnlyRow:
        d = _row(d)
        answer, tests = d.get("answer"), d.get("tests")
        return cls(_text(_required(d, "prompt"), "prompt"),
                   None if answer is None else _string(answer, "answer"),
                   None if tests is None else _strings(tests, "tests"))


# The record type each kind of dataset is made of: the training methods name the kind they consume.
RECORD_KINDS: dict[str, type] = {row.kind: row for row in (PreferenceRow, UnpairedRow, StepwiseRow, SFTRow,
                                                          PromptOnlyRow)}
