"""Import pair items from files: our own JSONL, TRL preference JSONL and Anthropic hh-rlhf.

Every row is parsed and validated before anything is written, and the whole file is stored in one
transaction: a bad file gives an ImportError_ naming the file, line and field, and stores nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from annotate.models import Completion, PairItem, Project, Prompt
from annotate.services import conversation_validate
from annotate.text import text_clean

FORMATS = {
    "auto": "detect from the first row",
    "pairs": 'our JSONL: {"prompt", "response_a", "response_b", optional "model_a", "model_b"}',
    "trl-preference": 'TRL preference JSONL: {"prompt", "chosen", "rejected"} (strings or conversations)',
    "hh-rlhf": 'Anthropic hh-rlhf: {"chosen", "rejected"} transcripts of "Human:" / "Assistant:" turns',
}


class ImportError_(ValueError):  # noqa: N801 (the builtin name is taken)
    def __init__(self, *, path: str, line: int, field: str, message: str) -> None:
        self.path, self.line, self.field = path, line, field
        super().__init__(f"{path}, line {line}, field {field!r}: {message}")


@dataclass
class ParsedPair:
    prompt: list[dict[str, str]]
    response_a: str
    response_b: str
    model_a: str = ""
    model_b: str = ""
    metadata: dict = field(default_factory=dict)


@dataclass
class ImportResult:
    format: str
    rows: int
    items: int


_TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_transcript_split(text: str) -> list[dict[str, str]]:
    """Split an hh-rlhf transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") into messages."""
    parts = _TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise ValueError('expected a transcript of "\\n\\nHuman: " / "\\n\\nAssistant: " turns')
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def _reply_text(value: object, field_name: str) -> str:
    if isinstance(value, str):
        return text_clean(value)
    conversation = conversation_validate(value, field=field_name)
    if conversation[-1]["role"] != "assistant":
        raise ValueError(f"{field_name}: the last message must be the assistant's reply")
    return conversation[-1]["content"]


def _detect(row: object) -> str:
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    if "response_a" in row:
        return "pairs"
    if "prompt" in row and "chosen" in row:
        return "trl-preference"
    if "chosen" in row and isinstance(row["chosen"], str) and "\n\nHuman:" in row["chosen"]:
        return "hh-rlhf"
    raise ValueError("unknown format: expected response_a/response_b, prompt/chosen/rejected or hh-rlhf")


def _preference_pair(prompt: list[dict], chosen: str, rejected: str, key: str) -> ParsedPair:
    # Which side the preferred reply goes to is decided by a hash, so the stored A is not always
    # the preferred one; the source's preference is kept in the metadata.
    chosen_is_a = hashlib.sha256(key.encode()).digest()[0] % 2 == 0
    chosen, rejected = text_clean(chosen), text_clean(rejected)
    a, b = (chosen, rejected) if chosen_is_a else (rejected, chosen)
    return ParsedPair(prompt=prompt, response_a=a, response_b=b,
                      metadata={"source_preference": "A" if chosen_is_a else "B"})


def parse_row(row: dict, fmt: str) -> ParsedPair:
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    if fmt == "pairs":
        for name in ("prompt", "response_a", "response_b"):
            if name not in row:
                raise KeyError(name)
        return ParsedPair(
            prompt=conversation_validate(row["prompt"]),
            response_a=_reply_text(row["response_a"], "response_a"),
            response_b=_reply_text(row["response_b"], "response_b"),
            model_a=str(row.get("model_a", "")), model_b=str(row.get("model_b", "")),
            metadata=row.get("metadata") or {},
        )
    if fmt == "trl-preference":
        for name in ("prompt", "chosen", "rejected"):
            if name not in row:
                raise KeyError(name)
        prompt = conversation_validate(row["prompt"])
        chosen = _reply_text(row["chosen"], "chosen")
        rejected = _reply_text(row["rejected"], "rejected")
        return _preference_pair(prompt, chosen, rejected, json.dumps(row, sort_keys=True))
    if fmt == "hh-rlhf":
        for name in ("chosen", "rejected"):
            if not isinstance(row.get(name), str):
                raise KeyError(name)
        try:
            chosen = hh_transcript_split(row["chosen"])
        except ValueError as exc:
            raise ValueError(f"chosen: {exc}") from None
        try:
            rejected = hh_transcript_split(row["rejected"])
        except ValueError as exc:
            raise ValueError(f"rejected: {exc}") from None
        if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
            raise ValueError("chosen/rejected: the transcript must end with an Assistant turn")
        prompt = chosen[:-1]
        pair = _preference_pair(prompt, chosen[-1]["content"], rejected[-1]["content"], row["chosen"] + row["rejected"])
        if rejected[:-1] != prompt:
            # A few real rows differ before the final reply (e.g. a "Humans:" typo inside a turn): the
            # conversation is taken from chosen, and the row is flagged rather than refused.
            pair.metadata["context_differs"] = True
        return pair
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def format_detect(path: str | Path, *, display_name: str | None = None) -> str:
    """The format of a file, from its first row."""
    name = display_name or Path(path).name
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                return _detect(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ImportError_(path=name, line=line_no, field="(json)", message=str(exc)) from None
            except (ValueError, TypeError) as exc:
                raise ImportError_(path=name, line=line_no, field="(row)", message=str(exc)) from None
    raise ImportError_(path=name, line=0, field="(file)", message="the file has no rows")


def parse_file(path: str | Path, fmt: str = "auto", *, display_name: str | None = None) -> Iterator[ParsedPair]:
    name = display_name or Path(path).name
    if fmt == "auto":
        fmt = format_detect(path, display_name=name)
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ImportError_(path=name, line=line_no, field="(json)", message=str(exc)) from None
            try:
                yield parse_row(row, fmt)
            except KeyError as exc:
                raise ImportError_(path=name, line=line_no, field=str(exc.args[0]), message="missing") from None
            except ValueError as exc:
                message = str(exc)
                field_name = message.split(":", 1)[0].split("[", 1)[0] if ":" in message else "(row)"
                raise ImportError_(path=name, line=line_no, field=field_name, message=message) from None


def items_import(*, project: Project, path: str | Path, fmt: str = "auto",
                 display_name: str | None = None) -> ImportResult:
    """Import a file of pairs into ``project``: all of it or, on any error, none of it."""
    name = display_name or Path(path).name
    if fmt == "auto":
        fmt = format_detect(path, display_name=name)
    parsed = list(parse_file(path, fmt, display_name=name))
    with transaction.atomic():
        prompts = Prompt.objects.bulk_create(
            [Prompt(project=project, messages=p.prompt, source=name, metadata=p.metadata) for p in parsed]
        )
        completions = Completion.objects.bulk_create(
            [c for p, prompt in zip(parsed, prompts, strict=True) for c in (
                Completion(prompt=prompt, text=p.response_a, model_name=p.model_a),
                Completion(prompt=prompt, text=p.response_b, model_name=p.model_b),
            )]
        )
        items = PairItem.objects.bulk_create(
            [PairItem(project=project, prompt=prompt, completion_a=completions[2 * i],
                      completion_b=completions[2 * i + 1]) for i, prompt in enumerate(prompts)]
        )
    return ImportResult(format=fmt, rows=len(parsed), items=len(items))
