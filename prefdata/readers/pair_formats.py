"""Pair formats: one record of a file to pairs (``PairRecord``), for our own JSONL and CSV, TRL preference,
Anthropic hh-rlhf, Chatbot Arena battles, OpenAssistant trees and Label Studio pairwise exports.

A row parser raises KeyError (a missing key), ``FieldError`` or ValueError ("field: message"); the
reader turns it into a ``ReadError`` naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from prefdata.readers.stream import (
    DEFAULT_OPTIONS,
    LineTooLong,
    ReadError,
    ReadOptions,
    RowCounter,
    StreamError,
    array_records,
    stream_open,
    to_read_error,
)
from prefdata.records import MODEL_NAME_MAX, FieldError, PairRecord, conversation_validate, text_clean

# Label Studio task data keys vary with the labeling config: the first present is used, unless
# ``field_map`` names them.
LABEL_STUDIO_PROMPT_KEYS = ("prompt", "question", "text", "instruction", "input", "query", "context")
LABEL_STUDIO_ANSWER_KEYS = (
    ("answer1", "answer2"), ("response_a", "response_b"), ("answer_a", "answer_b"), ("response1", "response2"),
    ("completion_a", "completion_b"), ("output1", "output2"), ("text1", "text2"), ("left", "right"),
)
ARENA_WINNERS = {"model_a": "A", "model_b": "B", "tie": "tie", "tie (bothbad)": "both_bad"}
# Arena fields kept in the prompt's metadata, under our names.
ARENA_METADATA = (("question_id", "source_id"), ("language", "language"), ("turn", "turn"),
                  ("judge", "source_judge"), ("anony", "anony"), ("tstamp", "source_tstamp"))
ARENA_FIELDS = frozenset(("model_a", "model_b", "winner", "conversation_a", "conversation_b",
                          *(key for key, _ in ARENA_METADATA)))
OASST_ROLES = {"prompter": "user", "assistant": "assistant"}
CSV_COLUMNS = ("prompt", "response_a", "response_b", "model_a", "model_b")


# -- one record to pairs ----------------------------------------------------------------------------------

_TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_transcript_split(text: str) -> list[dict[str, str]]:
    """Split an hh-rlhf transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") into messages."""
    parts = _TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise ValueError('expected a transcript of "\\n\\nHuman: " / "\\n\\nAssistant: " turns')
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def prompt_conversation(value: object, field_name: str = "prompt") -> list[dict[str, str]]:
    if isinstance(value, str):  # the common case, without conversation_validate's loop
        return [{"role": "user", "content": text_clean(value)}]
    return conversation_validate(value, field=field_name)


def _reply_text(value: object, field_name: str) -> str:
    if isinstance(value, str):
        return text_clean(value)
    conversation = conversation_validate(value, field=field_name)
    if conversation[-1]["role"] != "assistant":
        raise ValueError(f"{field_name}: the last message must be the assistant's reply")
    return conversation[-1]["content"]


def model_name_clean(value: object, field_name: str) -> str:
    if value is None:
        return ""
    name = text_clean(str(value))
    if len(name) > MODEL_NAME_MAX:
        raise ValueError(f"{field_name}: longer than {MODEL_NAME_MAX} characters")
    return name


def _split_final_reply(conversation: list[dict[str, str]], field_name: str) -> tuple[list[dict[str, str]], str]:
    """(the conversation before the final reply, the final reply) of a full conversation."""
    if conversation[-1]["role"] != "assistant":
        raise ValueError(f"{field_name}: the last message must be the assistant's reply")
    if len(conversation) < 2:
        raise ValueError(f"{field_name}: no prompt before the final reply")
    return conversation[:-1], conversation[-1]["content"]


def _preference_pair(prompt: list[dict], chosen: str, rejected: str, key: str, *,
                     model_chosen: str = "", model_rejected: str = "",
                     fields: tuple[str, str] = ("chosen", "rejected")) -> PairRecord:
    # Which side the preferred reply goes to is decided by a hash, so the stored A is not always
    # the preferred one; the source's preference is kept in the metadata.
    chosen_is_a = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[0] % 2 == 0
    chosen, rejected = text_clean(chosen), text_clean(rejected)
    if chosen_is_a:
        return PairRecord(prompt, chosen, rejected, model_chosen, model_rejected, {"source_preference": "A"},
                          fields=fields)
    return PairRecord(prompt, rejected, chosen, model_rejected, model_chosen, {"source_preference": "B"},
                      fields=fields)


def _margin(value: object) -> float:
    """TRL's optional ``margin``: how much better the chosen reply is (a finite number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldError("margin", f"margin: expected a finite number, got {value!r}")
    return float(value)


def _require(row: dict, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in row:
            raise KeyError(name)


def pairs_row(row: dict) -> PairRecord:
    _require(row, ("prompt", "response_a", "response_b"))
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata: expected an object")
    return PairRecord(
        prompt_conversation(row["prompt"]),
        _reply_text(row["response_a"], "response_a"),
        _reply_text(row["response_b"], "response_b"),
        model_name_clean(row.get("model_a"), "model_a"),
        model_name_clean(row.get("model_b"), "model_b"),
        metadata,
    )


def trl_row(row: dict) -> PairRecord:
    """TRL preference, explicit or implicit prompt; a ``margin`` is kept as ``metadata["source_margin"]``,
    beside ``source_preference``."""
    _require(row, ("chosen", "rejected"))
    if "prompt" in row:
        prompt = prompt_conversation(row["prompt"])
        chosen = _reply_text(row["chosen"], "chosen")
        rejected = _reply_text(row["rejected"], "rejected")
        pair = _preference_pair(prompt, chosen, rejected, f"{prompt[-1]['content']}\x00{chosen}\x00{rejected}")
    else:
        # Implicit prompt (TRL's "chosen/rejected with a shared prefix"): full conversations.
        if not isinstance(row["chosen"], list):
            raise KeyError("prompt")
        prompt, chosen = _split_final_reply(conversation_validate(row["chosen"], field="chosen"), "chosen")
        rejected_context, rejected = _split_final_reply(
            conversation_validate(row["rejected"], field="rejected"), "rejected")
        pair = _preference_pair(prompt, chosen, rejected, f"{prompt[-1]['content']}\x00{chosen}\x00{rejected}")
        if rejected_context != prompt:
            pair.metadata["context_differs"] = True
    if row.get("margin") is not None:
        pair.metadata["source_margin"] = _margin(row["margin"])
    return pair


def hh_row(row: dict) -> PairRecord:
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
    prompt = conversation_validate(chosen[:-1], field="chosen")
    pair = _preference_pair(prompt, chosen[-1]["content"], rejected[-1]["content"], row["chosen"] + row["rejected"])
    if rejected[:-1] != chosen[:-1]:
        # A few real rows differ before the final reply (e.g. a "Humans:" typo inside a turn): refused,
        # or kept with the conversation taken from chosen and flagged (ReadOptions.context_differs).
        pair.metadata["context_differs"] = True
    return pair


def arena_row(row: dict) -> PairRecord:
    _require(row, ("model_a", "model_b", "winner", "conversation_a", "conversation_b"))
    winner = ARENA_WINNERS.get(row["winner"]) if isinstance(row["winner"], str) else None
    if winner is None:
        raise ValueError(f"winner: {row['winner']!r} is not one of {sorted(ARENA_WINNERS)}")
    prompt, reply_a = _split_final_reply(conversation_validate(row["conversation_a"], field="conversation_a"),
                                         "conversation_a")
    context_b, reply_b = _split_final_reply(conversation_validate(row["conversation_b"], field="conversation_b"),
                                            "conversation_b")
    metadata: dict[str, Any] = {"source_preference": winner}
    for key, name in ARENA_METADATA:
        if row.get(key) is not None:
            metadata[name] = row[key]
    if context_b != prompt:
        # In multi-turn battles each model saw its own earlier replies: refused, or kept with
        # conversation_a's and flagged (ReadOptions.context_differs).
        metadata["context_differs"] = True
    return PairRecord(prompt, reply_a, reply_b, model_name_clean(row["model_a"], "model_a"),
                      model_name_clean(row["model_b"], "model_b"), metadata,
                      fields=("conversation_a", "conversation_b"))


def oasst_tree(row: dict) -> list[PairRecord]:
    """Every two ranked assistant replies to a prompter message (rank 0 = best) make one pair, whose
    conversation is the path from the root to that prompter message. Deleted messages are skipped
    with their subtrees, equal ranks carry no preference and make no pair."""
    root = row.get("prompt")
    if not isinstance(root, dict):
        raise KeyError("prompt")
    tree_id = row.get("message_tree_id", "")
    pairs: list[PairRecord] = []
    stack: list[tuple[dict, list[dict[str, str]], str]] = [(root, [], "prompt")]
    while stack:
        message, before, where = stack.pop()
        role = OASST_ROLES.get(message.get("role"))
        if role is None:
            raise FieldError(f"{where}.role", f"{message.get('role')!r} is not one of {sorted(OASST_ROLES)}")
        if not isinstance(message.get("text"), str):
            raise FieldError(f"{where}.text", "expected a string")
        conversation = [*before, {"role": role, "content": text_clean(message["text"])}]
        replies = message.get("replies") or []
        if not isinstance(replies, list) or not all(isinstance(r, dict) for r in replies):
            raise FieldError(f"{where}.replies", "expected a list of messages")
        live = [(i, r) for i, r in enumerate(replies) if not r.get("deleted")]
        if role == "user":
            ranked = []
            for i, reply in live:
                rank = reply.get("rank")
                if reply.get("role") != "assistant" or rank is None:
                    continue
                if not isinstance(rank, int) or isinstance(rank, bool):
                    raise FieldError(f"{where}.replies[{i}].rank", "expected an integer")
                if not isinstance(reply.get("text"), str):
                    raise FieldError(f"{where}.replies[{i}].text", "expected a string")
                ranked.append((i, reply))
            ranked.sort(key=lambda r: r[1]["rank"])
            for (i_better, better), (i_worse, worse) in itertools.combinations(ranked, 2):
                if better["rank"] == worse["rank"]:
                    continue
                pair = _preference_pair(
                    conversation, better["text"], worse["text"],
                    f"{better.get('message_id', '')}\x00{worse.get('message_id', '')}\x00{better['text']}",
                    model_chosen=model_name_clean(better.get("model_name"), "model_name"),
                    model_rejected=model_name_clean(worse.get("model_name"), "model_name"),
                    fields=(f"{where}.replies[{i_better}].text", f"{where}.replies[{i_worse}].text"))
                pair.metadata.update(source_id=tree_id, source_message_id=message.get("message_id", ""),
                                     source_ranks=[better["rank"], worse["rank"]])
                pairs.append(pair)
        # Reversed, so the pairs come out in the file's order.
        stack.extend((reply, conversation, f"{where}.replies[{i}]") for i, reply in reversed(live))
    return pairs


def label_studio_task(task: object, keys: Mapping[str, str], ignored: Callable[[Iterable[str]], None] | None = None
                      ) -> PairRecord:
    """A Label Studio task to a pair; ``ignored`` is told the task's data fields left unread."""
    if not isinstance(task, dict):
        raise ValueError("expected a task object")
    data = task.get("data")
    if not isinstance(data, dict):
        raise FieldError("data", "expected an object with the prompt and the two answers")
    selections: list[tuple[str, list | None]] = []
    for annotation in task.get("annotations") or []:
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        for result in annotation.get("result") or []:
            value = result.get("value") if isinstance(result, dict) else None
            if not isinstance(value, dict) or (result.get("type") != "pairwise" and "selected" not in value):
                continue
            if value.get("selected") not in ("left", "right"):
                raise FieldError("annotations.result.value.selected", f"{value.get('selected')!r} is not left or right")
            to_name = result.get("to_name")
            if isinstance(to_name, str):
                to_name = [name.strip() for name in to_name.split(",")]
            selections.append((value["selected"], to_name if isinstance(to_name, list) else None))

    prompt_key = keys.get("prompt") or next((k for k in LABEL_STUDIO_PROMPT_KEYS if k in data), "prompt")
    if prompt_key not in data:
        raise FieldError(f"data.{prompt_key}", f"missing (looked for {', '.join(LABEL_STUDIO_PROMPT_KEYS)})")
    if keys.get("response_a") or keys.get("response_b"):
        answer_keys = (keys.get("response_a", "response_a"), keys.get("response_b", "response_b"))
    else:
        candidates = list(LABEL_STUDIO_ANSWER_KEYS)
        if selections and selections[0][1] and len(selections[0][1]) == 2:
            candidates.insert(0, tuple(selections[0][1]))  # the Pairwise tag's toName, when it names data keys
        answer_keys = (next((c for c in candidates if c[0] in data and c[1] in data), None)
                       or next((c for c in candidates if c[0] in data or c[1] in data), candidates[0]))
    for key in answer_keys:
        if key not in data:
            raise FieldError(f"data.{key}", "missing")
    a_key, b_key = answer_keys
    pair = PairRecord(conversation_validate(data[prompt_key], field=f"data.{prompt_key}"),
                      _reply_text(data[a_key], f"data.{a_key}"), _reply_text(data[b_key], f"data.{b_key}"),
                      fields=(f"data.{a_key}", f"data.{b_key}"))
    if ignored is not None and len(data) > 3:
        ignored(sorted(f"data.{k}" for k in data if k not in (prompt_key, a_key, b_key)))
    if task.get("id") is not None:
        pair.metadata["source_id"] = task["id"]
    # "left" is the first object the Pairwise tag compares; unless toName says otherwise, that is A.
    preferences = []
    for selected, to_name in selections:
        left_is_a = not (to_name and len(to_name) == 2 and to_name[0] == b_key)
        preferences.append("A" if (selected == "left") == left_is_a else "B")
    if len(set(preferences)) == 1:
        pair.metadata["source_preference"] = preferences[0]
    if len(preferences) > 1:
        pair.metadata["source_preferences"] = preferences  # one per annotation, agreeing or not
    return pair


# -- files to pairs: CSV and Label Studio (the record formats are read in ``prefdata.readers.formats``) -----


def _text_lines(stream: BinaryIO, limit: int) -> Iterator[str]:
    """The lines of a UTF-8 stream (without its byte-order mark), none read past ``limit`` bytes: a longer
    one raises ``LineTooLong``. For the csv module, which takes any iterator of lines."""
    first = True
    for raw in iter(partial(stream.readline, limit + 1), b""):
        if len(raw) > limit and raw[-1] != 10:
            raise LineTooLong(limit)
        if first:
            first = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        yield raw.decode("utf-8")


def csv_header_fits(stream: BinaryIO, field_map: Mapping[str, str],
                    line_limit: int = DEFAULT_OPTIONS.max_line_bytes) -> bool:
    """Whether the stream starts with a CSV header naming our three columns (after ``field_map``)."""
    renamed = {source: ours for ours, source in field_map.items()}
    try:
        header = {renamed.get(h.strip(), h.strip()) for h in next(csv.reader(_text_lines(stream, line_limit)), [])}
    except (csv.Error, UnicodeDecodeError):
        header = set()
    return set(CSV_COLUMNS[:3]) <= header


def read_csv(path: str | Path, name: str, counter: RowCounter, field_map: Mapping[str, str], *,
             max_bytes: int | None = None, options: ReadOptions = DEFAULT_OPTIONS) -> Iterator[PairRecord]:
    """Our CSV: a header with prompt, response_a and response_b (``field_map`` renames them), model_a and
    model_b optional, any other column into the metadata. Lines are counted as in a text editor (a quoted
    cell may span several). No line is read past ``options.max_line_bytes``; a cell holding a NUL or
    longer than ``options.max_field_bytes`` is refused, naming its column."""
    renamed = {source: ours for ours, source in field_map.items()}
    # A cell may span lines (quoted): the csv module's own limit (characters, the default 128 KiB) is set
    # to a line's, and each cell is checked against the field limit below.
    csv.field_size_limit(options.max_line_bytes)
    too_long = _cell_too_long(options.max_field_bytes)
    with stream_open(path, max_bytes=max_bytes) as stream:
        reader = csv.reader(_text_lines(stream, options.max_line_bytes))
        try:
            source_header = [h.strip() for h in next(reader, [])]
            header = [renamed.get(h, h) for h in source_header]
            for column in CSV_COLUMNS[:3]:
                if column not in header:
                    raise ReadError(path=name, line=1, field=column, message="missing column in the header")
            index = {column: header.index(column) for column in CSV_COLUMNS if column in header}
            extra = [(i, h) for i, h in enumerate(header) if h not in index]
            line_no = reader.line_num + 1
            for cells in reader:
                start, line_no = line_no, reader.line_num + 1
                if not any(cell.strip() for cell in cells):
                    continue
                counter.rows += 1
                if len(cells) != len(header):
                    raise ReadError(path=name, line=start, field="(row)",
                                    message=f"expected {len(header)} columns, found {len(cells)}")
                try:
                    for i, cell in enumerate(cells):
                        if "\x00" in cell:
                            raise FieldError(source_header[i], _nul_message(source_header[i]))
                        if too_long(cell):
                            raise FieldError(source_header[i], f"{source_header[i]}: longer than "
                                                               f"{options.max_field_bytes:,} bytes (the limit of a "
                                                               "field): refused")
                    for column in CSV_COLUMNS[:3]:
                        if not cells[index[column]].strip():
                            raise ValueError(f"{column}: empty")
                    pair = PairRecord(
                        prompt_conversation(cells[index["prompt"]]),
                        text_clean(cells[index["response_a"]]), text_clean(cells[index["response_b"]]),
                        model_name_clean(cells[index["model_a"]], "model_a") if "model_a" in index else "",
                        model_name_clean(cells[index["model_b"]], "model_b") if "model_b" in index else "",
                        {h: text_clean(cells[i]) for i, h in extra if h and cells[i]},
                        start,
                    )
                except ValueError as exc:
                    raise to_read_error(exc, path=name, line=start) from None
                yield pair
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ReadError(path=name, line=reader.line_num + 1, field="(csv)", message=str(exc)) from None
        except StreamError as exc:
            raise ReadError(path=name, line=reader.line_num + 1, field=exc.field, message=str(exc)) from None


def _nul_message(path: str) -> str:
    return f"{path}: holds a NUL character, which cannot be stored as written: refused"


def _cell_too_long(limit: int) -> Callable[[str], bool]:
    def test(text: str) -> bool:
        return len(text) > limit or (len(text) * 4 > limit and len(text.encode("utf-8")) > limit)
    return test


def read_label_studio(path: str | Path, name: str, counter: RowCounter, field_map: Mapping[str, str], *,
                      max_bytes: int | None = None, options: ReadOptions = DEFAULT_OPTIONS) -> Iterator[PairRecord]:
    """A Label Studio JSON export: an array of tasks, streamed; a task's number is its "line"."""
    with stream_open(path, max_bytes=max_bytes) as stream:
        for number, task in array_records(stream, name, "task", options=options):
            counter.rows = number
            try:
                pair = label_studio_task(task, field_map, counter.ignore)
            except (KeyError, ValueError, TypeError) as exc:
                raise to_read_error(exc, path=name, line=number, unit="task") from None
            pair.line = number
            yield pair


# -- every pair, whatever its format -----------------------------------------------------------------------


def pairs_checked(records: Iterable[PairRecord], *, name: str, unit: str | None, options: ReadOptions,
                  counter: RowCounter, context_differs: bool = False) -> Iterator[PairRecord]:
    """The pairs of ``records`` that may be stored (``pair_admit``)."""
    for pair in records:
        if pair_admit(pair, name=name, unit=unit, options=options, counter=counter, context_differs=context_differs):
            yield pair


def pair_admit(pair: PairRecord, *, name: str, unit: str | None, options: ReadOptions, counter: RowCounter,
               context_differs: bool = False) -> bool:
    """Whether the pair may be stored. Two replies of the same text (white space at either end aside)
    are refused (a ``ReadError``), or left out with ``options.identical`` "skip"; where the format flags
    pairs whose conversations differ before the replies (``context_differs``), those are refused, or kept
    with ``options.context_differs`` "keep". Both are counted in ``counter``."""
    a, b = pair.response_a, pair.response_b
    first, second = pair.fields
    if a == b or a.strip() == b.strip():
        if options.identical == "skip":
            counter.identical_skipped += 1
            return False
        raise to_read_error(FieldError(second, f"{second}: the same text as {first}: a pair needs two different "
                                               "replies (refused; identical=skip leaves such pairs out)"),
                            path=name, line=pair.line, unit=unit)
    if context_differs and pair.metadata.get("context_differs"):
        if options.context_differs != "keep":
            raise to_read_error(FieldError(second, f"{second}: the conversation before the final reply differs "
                                                   f"from {first}'s (refused; context_differs=keep keeps such "
                                                   f"pairs, flagged, with {first}'s conversation)"),
                                path=name, line=pair.line, unit=unit)
        counter.context_differs += 1
    return True
