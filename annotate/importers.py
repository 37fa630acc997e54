"""Import pair items from files: our own JSONL and CSV, TRL preference, Anthropic hh-rlhf, Chatbot Arena
battles, OpenAssistant trees and Label Studio pairwise exports.

A file is read as a stream and stored in chunks (``chunk_size`` pairs at a time), so memory stays
constant whatever its size; all chunks go into ONE transaction, so a bad record anywhere gives an
``ImportError_`` naming the file, line (or task) and field, and stores nothing.

Every pair becomes one Prompt, two Completions and one PairItem. On PostgreSQL the rows are written
with COPY after their ids are taken from the sequences (so the three tables can reference each other
without a round trip per row), one chunk being stored by a worker thread while the next is parsed
and encoded; elsewhere with ``bulk_create``.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.db.models import Model
from django.db.models.expressions import DatabaseDefault
from django.utils import timezone

from annotate.models import Completion, PairItem, Project, Prompt
from annotate.services import conversation_validate
from annotate.text import text_clean

FORMATS = {
    "auto": "detect from the file's first record",
    "pairs": 'our JSONL: {"prompt", "response_a", "response_b", optional "model_a", "model_b", "metadata"}',
    "csv": "our CSV: header prompt,response_a,response_b[,model_a,model_b]; other columns go to the metadata",
    "trl-preference": 'TRL preference JSONL: {"prompt", "chosen", "rejected"} (strings or conversations), '
                      'or implicit prompt: {"chosen", "rejected"} full conversations sharing the prefix',
    "hh-rlhf": 'Anthropic hh-rlhf: {"chosen", "rejected"} transcripts of "Human:" / "Assistant:" turns',
    "arena": "Chatbot Arena battles JSONL: {model_a, model_b, winner, conversation_a, conversation_b}",
    "oasst": "OpenAssistant message trees JSONL: every two ranked assistant replies to a prompter message",
    "label-studio": "Label Studio JSON export (an array of tasks) of a Pairwise labeling config",
}
DEFAULT_CHUNK_SIZE = 5_000

# Label Studio task data keys vary with the labeling config: the first present is used, unless
# ``field_map`` names them.
LABEL_STUDIO_PROMPT_KEYS = ("prompt", "question", "text", "instruction", "input", "query", "context")
LABEL_STUDIO_ANSWER_KEYS = (
    ("answer1", "answer2"), ("response_a", "response_b"), ("answer_a", "answer_b"), ("response1", "response2"),
    ("completion_a", "completion_b"), ("output1", "output2"), ("text1", "text2"), ("left", "right"),
)
ARENA_WINNERS = {"model_a": "A", "model_b": "B", "tie": "tie", "tie (bothbad)": "both_bad"}
OASST_ROLES = {"prompter": "user", "assistant": "assistant"}
CSV_COLUMNS = ("prompt", "response_a", "response_b", "model_a", "model_b")

_json_loads = json.JSONDecoder().decode
_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_MODEL_NAME_MAX = Completion._meta.get_field("model_name").max_length
_SOURCE_MAX = Prompt._meta.get_field("source").max_length


class ImportError_(ValueError):  # noqa: N801 (the builtin name is taken)
    def __init__(self, *, path: str, line: int, field: str, message: str) -> None:
        self.path, self.line, self.field = path, line, field
        super().__init__(f"{path}, line {line}, field {field!r}: {message}")


@dataclass(slots=True)
class ParsedPair:
    prompt: list[dict[str, str]]
    response_a: str
    response_b: str
    model_a: str = ""
    model_b: str = ""
    metadata: dict = field(default_factory=dict)
    line: int = 0  # where it came from: the line, or the task number of a JSON array


@dataclass
class ImportResult:
    format: str
    rows: int  # records read: lines, CSV records, tasks, trees
    items: int  # pairs stored


class _RowError(ValueError):
    """A problem with one record, for a field whose name the message cannot carry."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field = field_name
        super().__init__(message)


# -- one record to pairs ----------------------------------------------------------------------------------

_TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_transcript_split(text: str) -> list[dict[str, str]]:
    """Split an hh-rlhf transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") into messages."""
    parts = _TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise ValueError('expected a transcript of "\\n\\nHuman: " / "\\n\\nAssistant: " turns')
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def _conversation(value: object, field_name: str = "prompt") -> list[dict[str, str]]:
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


def _model_name(value: object, field_name: str) -> str:
    if value is None:
        return ""
    name = text_clean(str(value))
    if len(name) > _MODEL_NAME_MAX:
        raise ValueError(f"{field_name}: longer than {_MODEL_NAME_MAX} characters")
    return name


def _split_final_reply(conversation: list[dict[str, str]], field_name: str) -> tuple[list[dict[str, str]], str]:
    """(the conversation before the final reply, the final reply) of a full conversation."""
    if conversation[-1]["role"] != "assistant":
        raise ValueError(f"{field_name}: the last message must be the assistant's reply")
    if len(conversation) < 2:
        raise ValueError(f"{field_name}: no prompt before the final reply")
    return conversation[:-1], conversation[-1]["content"]


def _preference_pair(prompt: list[dict], chosen: str, rejected: str, key: str, *,
                     model_chosen: str = "", model_rejected: str = "") -> ParsedPair:
    # Which side the preferred reply goes to is decided by a hash, so the stored A is not always
    # the preferred one; the source's preference is kept in the metadata.
    chosen_is_a = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[0] % 2 == 0
    chosen, rejected = text_clean(chosen), text_clean(rejected)
    if chosen_is_a:
        return ParsedPair(prompt, chosen, rejected, model_chosen, model_rejected, {"source_preference": "A"})
    return ParsedPair(prompt, rejected, chosen, model_rejected, model_chosen, {"source_preference": "B"})


def _require(row: dict, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in row:
            raise KeyError(name)


def _pairs_row(row: dict) -> ParsedPair:
    _require(row, ("prompt", "response_a", "response_b"))
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata: expected an object")
    return ParsedPair(
        _conversation(row["prompt"]),
        _reply_text(row["response_a"], "response_a"),
        _reply_text(row["response_b"], "response_b"),
        _model_name(row.get("model_a"), "model_a"),
        _model_name(row.get("model_b"), "model_b"),
        metadata,
    )


def _trl_row(row: dict) -> ParsedPair:
    _require(row, ("chosen", "rejected"))
    if "prompt" in row:
        prompt = _conversation(row["prompt"])
        chosen = _reply_text(row["chosen"], "chosen")
        rejected = _reply_text(row["rejected"], "rejected")
        return _preference_pair(prompt, chosen, rejected, f"{prompt[-1]['content']}\x00{chosen}\x00{rejected}")
    # Implicit prompt (TRL's "chosen/rejected with a shared prefix"): full conversations.
    if not isinstance(row["chosen"], list):
        raise KeyError("prompt")
    prompt, chosen = _split_final_reply(conversation_validate(row["chosen"], field="chosen"), "chosen")
    rejected_context, rejected = _split_final_reply(
        conversation_validate(row["rejected"], field="rejected"), "rejected")
    pair = _preference_pair(prompt, chosen, rejected, f"{prompt[-1]['content']}\x00{chosen}\x00{rejected}")
    if rejected_context != prompt:
        pair.metadata["context_differs"] = True
    return pair


def _hh_row(row: dict) -> ParsedPair:
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
        # A few real rows differ before the final reply (e.g. a "Humans:" typo inside a turn): the
        # conversation is taken from chosen, and the row is flagged rather than refused.
        pair.metadata["context_differs"] = True
    return pair


def _arena_row(row: dict) -> ParsedPair:
    _require(row, ("model_a", "model_b", "winner", "conversation_a", "conversation_b"))
    winner = ARENA_WINNERS.get(row["winner"]) if isinstance(row["winner"], str) else None
    if winner is None:
        raise ValueError(f"winner: {row['winner']!r} is not one of {sorted(ARENA_WINNERS)}")
    prompt, reply_a = _split_final_reply(conversation_validate(row["conversation_a"], field="conversation_a"),
                                         "conversation_a")
    context_b, reply_b = _split_final_reply(conversation_validate(row["conversation_b"], field="conversation_b"),
                                            "conversation_b")
    metadata: dict[str, Any] = {"source_preference": winner}
    for key, name in (("question_id", "source_id"), ("language", "language"), ("turn", "turn")):
        if row.get(key) is not None:
            metadata[name] = row[key]
    if context_b != prompt:
        # In multi-turn battles each model saw its own earlier replies: conversation_a's is kept.
        metadata["context_differs"] = True
    return ParsedPair(prompt, reply_a, reply_b, _model_name(row["model_a"], "model_a"),
                      _model_name(row["model_b"], "model_b"), metadata)


def _oasst_tree(row: dict) -> list[ParsedPair]:
    """Every two ranked assistant replies to a prompter message (rank 0 = best) make one pair, whose
    conversation is the path from the root to that prompter message. Deleted messages are skipped
    with their subtrees, equal ranks carry no preference and make no pair."""
    root = row.get("prompt")
    if not isinstance(root, dict):
        raise KeyError("prompt")
    tree_id = row.get("message_tree_id", "")
    pairs: list[ParsedPair] = []
    stack: list[tuple[dict, list[dict[str, str]], str]] = [(root, [], "prompt")]
    while stack:
        message, before, where = stack.pop()
        role = OASST_ROLES.get(message.get("role"))
        if role is None:
            raise _RowError(f"{where}.role", f"{message.get('role')!r} is not one of {sorted(OASST_ROLES)}")
        if not isinstance(message.get("text"), str):
            raise _RowError(f"{where}.text", "expected a string")
        conversation = [*before, {"role": role, "content": text_clean(message["text"])}]
        replies = message.get("replies") or []
        if not isinstance(replies, list) or not all(isinstance(r, dict) for r in replies):
            raise _RowError(f"{where}.replies", "expected a list of messages")
        live = [(i, r) for i, r in enumerate(replies) if not r.get("deleted")]
        if role == "user":
            ranked = []
            for i, reply in live:
                rank = reply.get("rank")
                if reply.get("role") != "assistant" or rank is None:
                    continue
                if not isinstance(rank, int) or isinstance(rank, bool):
                    raise _RowError(f"{where}.replies[{i}].rank", "expected an integer")
                if not isinstance(reply.get("text"), str):
                    raise _RowError(f"{where}.replies[{i}].text", "expected a string")
                ranked.append(reply)
            ranked.sort(key=lambda r: r["rank"])
            for better, worse in itertools.combinations(ranked, 2):
                if better["rank"] == worse["rank"]:
                    continue
                pair = _preference_pair(
                    conversation, better["text"], worse["text"],
                    f"{better.get('message_id', '')}\x00{worse.get('message_id', '')}\x00{better['text']}",
                    model_chosen=_model_name(better.get("model_name"), "model_name"),
                    model_rejected=_model_name(worse.get("model_name"), "model_name"))
                pair.metadata.update(source_id=tree_id, source_message_id=message.get("message_id", ""),
                                     source_ranks=[better["rank"], worse["rank"]])
                pairs.append(pair)
        # Reversed, so the pairs come out in the file's order.
        stack.extend((reply, conversation, f"{where}.replies[{i}]") for i, reply in reversed(live))
    return pairs


def _label_studio_task(task: object, keys: Mapping[str, str]) -> ParsedPair:
    if not isinstance(task, dict):
        raise ValueError("expected a task object")
    data = task.get("data")
    if not isinstance(data, dict):
        raise _RowError("data", "expected an object with the prompt and the two answers")
    selections: list[tuple[str, list | None]] = []
    for annotation in task.get("annotations") or []:
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        for result in annotation.get("result") or []:
            value = result.get("value") if isinstance(result, dict) else None
            if not isinstance(value, dict) or (result.get("type") != "pairwise" and "selected" not in value):
                continue
            if value.get("selected") not in ("left", "right"):
                raise _RowError("annotations.result.value.selected", f"{value.get('selected')!r} is not left or right")
            to_name = result.get("to_name")
            if isinstance(to_name, str):
                to_name = [name.strip() for name in to_name.split(",")]
            selections.append((value["selected"], to_name if isinstance(to_name, list) else None))

    prompt_key = keys.get("prompt") or next((k for k in LABEL_STUDIO_PROMPT_KEYS if k in data), "prompt")
    if prompt_key not in data:
        raise _RowError(f"data.{prompt_key}", f"missing (looked for {', '.join(LABEL_STUDIO_PROMPT_KEYS)})")
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
            raise _RowError(f"data.{key}", "missing")
    a_key, b_key = answer_keys
    pair = ParsedPair(conversation_validate(data[prompt_key], field=f"data.{prompt_key}"),
                      _reply_text(data[a_key], f"data.{a_key}"), _reply_text(data[b_key], f"data.{b_key}"))
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


_ROW_PARSERS: dict[str, Callable[[dict], ParsedPair]] = {
    "pairs": _pairs_row, "trl-preference": _trl_row, "hh-rlhf": _hh_row, "arena": _arena_row,
}


def parse_row(row: dict, fmt: str) -> ParsedPair:
    """One JSONL record of a one-pair-per-line format as a pair (raises KeyError / ValueError)."""
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    parser = _ROW_PARSERS.get(fmt)
    if parser is None:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return parser(row)


# -- files to pairs ---------------------------------------------------------------------------------------


def _detect(row: object) -> str:
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    if "response_a" in row:
        return "pairs"
    if "conversation_a" in row and "winner" in row:
        return "arena"
    if "message_tree_id" in row or (isinstance(row.get("prompt"), dict) and "replies" in row["prompt"]):
        return "oasst"
    if "prompt" in row and "chosen" in row:
        return "trl-preference"
    if "chosen" in row and isinstance(row["chosen"], str) and "\n\nHuman:" in row["chosen"]:
        return "hh-rlhf"
    if "chosen" in row and "rejected" in row and isinstance(row["chosen"], list):
        return "trl-preference"
    raise ValueError("unknown format: expected response_a/response_b, prompt/chosen/rejected, hh-rlhf, "
                     "Arena conversation_a/conversation_b or an OpenAssistant tree")


def _to_import_error(exc: Exception, *, path: str, line: int, task: bool = False) -> ImportError_:
    if isinstance(exc, KeyError):
        field_name, message = str(exc.args[0]), "missing"
    elif isinstance(exc, _RowError):
        field_name, message = exc.field, str(exc)
    else:
        message = str(exc)
        field_name = message.split(":", 1)[0].split("[", 1)[0] if ":" in message else "(row)"
    if task:
        message = f"task {line}: {message}"
    return ImportError_(path=path, line=line, field=field_name, message=message)


def _jsonl_records(path: str | Path, name: str) -> Iterator[tuple[int, object]]:
    # Bytes, decoded line by line, so a bad encoding is reported on its own line.
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if raw.isspace() or not raw:
                continue
            try:
                row = _json_loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ImportError_(path=name, line=line_no, field="(encoding)", message=f"not UTF-8: {exc}") from None
            except json.JSONDecodeError as exc:
                raise ImportError_(path=name, line=line_no, field="(json)", message=str(exc)) from None
            # A "\ud800" escape with no partner decodes to a lone surrogate, which no database can store.
            if (b"\\ud" in raw or b"\\uD" in raw) and (bad := _lone_surrogate_field(row)):
                raise ImportError_(path=name, line=line_no, field=bad,
                                   message="not valid Unicode: a lone surrogate (\\ud800-\\udfff) escape")
            yield line_no, row


def _lone_surrogate_field(row: object) -> str | None:
    """The top-level key of ``row`` (or "(row)") whose text holds a lone surrogate, if any."""
    for key, value in row.items() if isinstance(row, dict) else [("(row)", row)]:
        try:
            _json_dumps(value).encode("utf-8")
        except UnicodeEncodeError:
            return str(key)
    return None


def _first_char(path: str | Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1].decode("latin-1")


def format_detect(path: str | Path, *, display_name: str | None = None,
                  field_map: Mapping[str, str] | None = None) -> str:
    """The format of a file, from its first record: a JSON array is a Label Studio export, a first line
    that is not a JSON object a CSV header, otherwise the keys of the first JSON Lines record decide."""
    name = display_name or Path(path).name
    first = _first_char(path)
    if not first:
        raise ImportError_(path=name, line=0, field="(file)", message="the file has no rows")
    if first == "[":
        return "label-studio"
    if first != "{":
        renamed = {source: ours for ours, source in (field_map or {}).items()}
        try:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                header = {renamed.get(h.strip(), h.strip()) for h in next(csv.reader(handle), [])}
        except (csv.Error, UnicodeDecodeError):
            header = set()
        if set(CSV_COLUMNS[:3]) <= header:
            return "csv"
        raise ImportError_(path=name, line=1, field="(file)",
                           message="unknown format: not JSON Lines, a JSON array or a CSV with prompt,response_a,"
                                   "response_b columns")
    for line_no, row in _jsonl_records(path, name):
        try:
            return _detect(row)
        except ValueError as exc:
            raise ImportError_(path=name, line=line_no, field="(row)", message=str(exc)) from None
    raise ImportError_(path=name, line=0, field="(file)", message="the file has no rows")


@dataclass
class _Counter:
    rows: int = 0


def _read_jsonl(path: str | Path, name: str, fmt: str, counter: _Counter) -> Iterator[ParsedPair]:
    parser = _oasst_tree if fmt == "oasst" else _ROW_PARSERS[fmt]
    for line_no, row in _jsonl_records(path, name):
        counter.rows += 1
        try:
            if not isinstance(row, dict):
                raise ValueError("expected a JSON object")
            parsed = parser(row)
        except (KeyError, ValueError, TypeError) as exc:
            raise _to_import_error(exc, path=name, line=line_no) from None
        if isinstance(parsed, list):
            for pair in parsed:
                pair.line = line_no
                yield pair
        else:
            parsed.line = line_no
            yield parsed


def _read_csv(path: str | Path, name: str, counter: _Counter, field_map: Mapping[str, str]) -> Iterator[ParsedPair]:
    renamed = {source: ours for ours, source in field_map.items()}
    # Long responses are common; the csv module's default limit is 128 KiB a field.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = [renamed.get(h.strip(), h.strip()) for h in next(reader, [])]
            for column in CSV_COLUMNS[:3]:
                if column not in header:
                    raise ImportError_(path=name, line=1, field=column, message="missing column in the header")
            index = {column: header.index(column) for column in CSV_COLUMNS if column in header}
            extra = [(i, h) for i, h in enumerate(header) if h not in index]
            line_no = reader.line_num + 1
            for cells in reader:
                start, line_no = line_no, reader.line_num + 1
                if not any(cell.strip() for cell in cells):
                    continue
                counter.rows += 1
                if len(cells) != len(header):
                    raise ImportError_(path=name, line=start, field="(row)",
                                       message=f"expected {len(header)} columns, found {len(cells)}")
                try:
                    for column in CSV_COLUMNS[:3]:
                        if not cells[index[column]].strip():
                            raise ValueError(f"{column}: empty")
                    pair = ParsedPair(
                        _conversation(cells[index["prompt"]]),
                        text_clean(cells[index["response_a"]]), text_clean(cells[index["response_b"]]),
                        _model_name(cells[index["model_a"]], "model_a") if "model_a" in index else "",
                        _model_name(cells[index["model_b"]], "model_b") if "model_b" in index else "",
                        {h: text_clean(cells[i]) for i, h in extra if h and cells[i]},
                        start,
                    )
                except ValueError as exc:
                    raise _to_import_error(exc, path=name, line=start) from None
                yield pair
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ImportError_(path=name, line=reader.line_num + 1, field="(csv)", message=str(exc)) from None


def _read_label_studio(path: str | Path, name: str, counter: _Counter,
                       field_map: Mapping[str, str]) -> Iterator[ParsedPair]:
    import ijson  # streams the array: a Label Studio export can be larger than memory

    with open(path, "rb") as handle:
        tasks = ijson.items(handle, "item", use_float=True)
        while True:
            number = counter.rows + 1
            try:
                task = next(tasks)
            except StopIteration:
                return
            except (ijson.JSONError, UnicodeDecodeError) as exc:
                raise ImportError_(path=name, line=number, field="(json)",
                                   message=f"task {number}: invalid JSON: {exc}") from None
            counter.rows = number
            try:
                pair = _label_studio_task(task, field_map)
            except (KeyError, ValueError, TypeError) as exc:
                raise _to_import_error(exc, path=name, line=number, task=True) from None
            pair.line = number
            yield pair


def parse_file(path: str | Path, fmt: str = "auto", *, display_name: str | None = None,
               field_map: Mapping[str, str] | None = None, _counter: _Counter | None = None) -> Iterator[ParsedPair]:
    """The pairs of a file, one at a time; raises ImportError_ at the first bad record."""
    name = display_name or Path(path).name
    counter = _counter if _counter is not None else _Counter()
    if fmt == "auto":
        fmt = format_detect(path, display_name=name, field_map=field_map)
    if fmt == "csv":
        return _read_csv(path, name, counter, field_map or {})
    if fmt == "label-studio":
        return _read_label_studio(path, name, counter, field_map or {})
    if fmt in _ROW_PARSERS or fmt == "oasst":
        return _read_jsonl(path, name, fmt, counter)
    raise ImportError_(path=name, line=0, field="(format)",
                       message=f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


# -- pairs to rows ----------------------------------------------------------------------------------------



def _json_clean(value: object) -> object:
    """``value`` without NUL characters, which PostgreSQL's jsonb refuses (as text does)."""
    if isinstance(value, str):
        return text_clean(value)
    if isinstance(value, dict):
        return {text_clean(str(k)): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    return value


def _encoding_error(chunk: list[ParsedPair], *, name: str, task: bool) -> ImportError_ | None:
    """The first pair of ``chunk`` holding text that cannot be stored (a lone surrogate)."""
    for pair in chunk:
        fields: list[tuple[str, object]] = [
            ("prompt", [m["content"] for m in pair.prompt]), ("response_a", pair.response_a),
            ("response_b", pair.response_b), ("model_a", pair.model_a), ("model_b", pair.model_b),
            ("metadata", _json_dumps(pair.metadata)),
        ]
        for field_name, value in fields:
            try:
                for text in value if isinstance(value, list) else [value]:
                    text.encode("utf-8")
            except UnicodeEncodeError as exc:
                return _to_import_error(ValueError(f"{field_name}: not valid Unicode: {exc.reason}"),
                                        path=name, line=pair.line, task=task)
    return None


class _BulkCreateWriter:
    """Any backend that returns primary keys from bulk inserts (SQLite here)."""

    def __init__(self, *, project: Project, source: str, progress: Callable[[int], None] | None,
                 import_job_id: int | None = None) -> None:
        self.project, self.source, self.progress, self.import_job_id = project, source, progress, import_job_id

    def write(self, chunk: list[ParsedPair], rows: int) -> None:
        prompts = Prompt.objects.bulk_create(
            [Prompt(project=self.project, messages=p.prompt, source=self.source, import_job_id=self.import_job_id,
                    metadata=_json_clean(p.metadata) if p.metadata else {}) for p in chunk])
        completions = Completion.objects.bulk_create(
            [c for p, prompt in zip(chunk, prompts, strict=True) for c in (
                Completion(prompt=prompt, text=p.response_a, model_name=p.model_a),
                Completion(prompt=prompt, text=p.response_b, model_name=p.model_b),
            )])
        PairItem.objects.bulk_create(
            [PairItem(project=self.project, prompt=prompt, completion_a=completions[2 * i],
                      completion_b=completions[2 * i + 1]) for i, prompt in enumerate(prompts)])
        if self.progress is not None:
            self.progress(rows)

    def close(self) -> None:
        pass

    def discard(self) -> None:
        pass


_TEXT_OID, _BYTEA_OID, _JSON_OID, _JSONB_OID = 25, 17, 114, 3802


class _CopyTable:
    """Binary COPY of one model: the columns the importer fills per row, then every other column with
    what the ORM would store (its default, now() for auto_now(_add), NULL), except those left to a
    database default. Built from the model's fields, so a field added later needs no change here.

    Binary, because the server has less to parse and the client less to escape, and because it lets
    two things be encoded once: the constant columns are dumped to their binary form here and sent as
    raw bytes (declared bytea to psycopg, which passes bytes through), and a JSON value is sent as text
    behind jsonb's version byte, encoded by one call to the C JSON encoder.
    """

    def __init__(self, raw: Any, model: type[Model], columns: tuple[str, ...], now: object) -> None:
        from psycopg import pq

        qn = connection.ops.quote_name
        table = model._meta.db_table
        with raw.cursor() as cursor:
            cursor.execute("SELECT attname, atttypid::int FROM pg_attribute "
                           "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", [table])
            oids = dict(cursor.fetchall())
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, model._meta.pk.column])
            (self.sequence,) = cursor.fetchone()
            # Django declares foreign keys DEFERRABLE INITIALLY DEFERRED (checked at commit).
            cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f' "
                           "AND condeferrable AND condeferred", [table])
            self.deferred_constraints = [qn(name) for (name,) in cursor.fetchall()]

        json_columns = [c for c in columns if oids[c] in (_JSON_OID, _JSONB_OID)]
        names, types = list(columns), [_TEXT_OID if c in json_columns else oids[c] for c in columns]
        self.json_prefix = {c: "\x01" if oids[c] == _JSONB_OID else "" for c in json_columns}
        constants: list[bytes | None] = []
        for f in model._meta.concrete_fields:
            if f.column in columns:
                continue
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                value = now
            else:
                value = f.get_default()
                if isinstance(value, DatabaseDefault):
                    continue
            value = f.get_db_prep_save(value, connection)
            if value is not None:
                dumper = raw.adapters.get_dumper_by_oid(oids[f.column], pq.Format.BINARY)(type(value), raw)
                value = bytes(dumper.dump(value))
            names.append(f.column)
            types.append(_BYTEA_OID)
            constants.append(value)
        self.constants = tuple(constants)
        self.types = types
        self.sql = f"COPY {qn(table)} ({', '.join(qn(n) for n in names)}) FROM STDIN (FORMAT BINARY)"

    def encode(self, cursor: Any, rows: Iterable[tuple]) -> bytes:
        """The COPY data of ``rows``, kept rather than sent, so that a chunk can be encoded while the
        connection is busy with the one before. ``cursor`` only lends its adapters: nothing runs on it."""
        from psycopg import Copy
        from psycopg.copy import Writer

        blocks: list[Any] = []

        class Keep(Writer):
            def write(self, data: Any) -> None:
                blocks.append(data)

        with Copy(cursor, binary=True, writer=Keep()) as copy:
            copy.set_types(self.types)
            write = copy.write_row
            for row in rows:
                write(row)
        return b"".join(blocks)


def _jsonb_text(value: object) -> str:
    text = _json_dumps(value)
    # jsonb refuses the escape \u0000 as text refuses NUL: drop NULs (an escaped backslash followed by
    # "u0000" also matches; cleaning then changes nothing).
    return _json_dumps(_json_clean(value)) if "\\u0000" in text else text


class _PostgresCopyWriter:
    """Binary COPY, with ids taken first from each table's sequence, so prompts, completions and items
    can reference each other (safe alongside other writers: every nextval is unique).

    The foreign keys are checked at the end of each COPY (SET CONSTRAINTS ... IMMEDIATE) rather than
    at commit: the server's queue of pending checks (7 a pair) stays one chunk long instead of growing
    with the file, and a violation is reported by the chunk that caused it.

    Pipelined over two threads, because the server's work on a chunk (above all its foreign-key checks,
    which no client setting can make cheaper) takes longer than the parsing and encoding of one: a chunk
    is encoded to COPY data here while a worker thread sends the previous one and waits for the server
    to store and check it. Only one thread uses the connection at a time: this one (to take ids, and
    in ``progress``) only while no chunk is in flight.
    """

    def __init__(self, *, project: Project, source: str, progress: Callable[[int], None] | None,
                 import_job_id: int | None = None) -> None:
        from psycopg.types.string import BytesBinaryDumper

        self.project_id, self.source, self.progress, self.import_job_id = project.pk, source, progress, import_job_id
        now = timezone.now()
        connection.ensure_connection()
        self.raw = connection.connection
        self.prompts = _CopyTable(self.raw, Prompt,
                                  ("id", "project_id", "messages", "source", "metadata", "import_job_id"), now)
        self.completions = _CopyTable(self.raw, Completion, ("id", "prompt_id", "text", "model_name"), now)
        self.items = _CopyTable(self.raw, PairItem,
                                ("id", "project_id", "prompt_id", "completion_a_id", "completion_b_id"), now)
        self.constraints = ", ".join(self.prompts.deferred_constraints + self.completions.deferred_constraints
                                     + self.items.deferred_constraints)
        # Encoding only: never executes. The constant columns are declared bytea: pass their bytes
        # through with psycopg's C dumper (the default one for bytea, which also unwraps dbapi20.Binary,
        # is Python code).
        self.encoding_cursor = self.raw.cursor()
        self.encoding_cursor.adapters.register_dumper(bytes, BytesBinaryDumper)
        self.encoded: tuple[tuple[bytes, ...], int] | None = None  # a chunk's COPY data and rows, not sent yet
        self.in_flight: tuple[Future, int] | None = None
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="items-import-copy")
        if self.constraints:
            with self.raw.cursor() as cursor:
                cursor.execute(f"SET CONSTRAINTS {self.constraints} IMMEDIATE")

    def write(self, chunk: list[ParsedPair], rows: int) -> None:
        """Send the chunk encoded at the previous call, then encode this one while that one is stored."""
        self._wait()  # the connection is free from here until _send
        ids = self._ids(len(chunk))
        self._send()
        self.encoded = (self._encode(chunk, *ids), rows)

    def close(self) -> None:
        """Store the last chunk, then give the foreign keys back their declared (deferred) checking,
        for the rest of the transaction."""
        self._wait()
        self._send()
        self._wait()
        self.worker.shutdown()
        if self.constraints:
            with self.raw.cursor() as cursor:
                cursor.execute(f"SET CONSTRAINTS {self.constraints} DEFERRED")

    def discard(self) -> None:
        """After an error: let the chunk in flight end (its error, if any, is not the one reported), so
        that the connection is free for the rollback."""
        self.in_flight = None
        self.worker.shutdown(wait=True)

    def _wait(self) -> None:
        if self.in_flight is not None:
            future, rows = self.in_flight
            self.in_flight = None
            future.result()
            if self.progress is not None:
                self.progress(rows)

    def _send(self) -> None:
        if self.encoded is not None:
            data, rows = self.encoded
            self.encoded = None
            # Encoding holds the GIL for tens of milliseconds: started at once, it kept the worker from
            # starting its COPY for up to the switch interval (5 ms) twice a chunk, with the server
            # idle. Wait until the server has the first table's rows to work on.
            started = threading.Event()
            self.in_flight = (self.worker.submit(self._store, data, started), rows)
            started.wait()

    def _ids(self, n: int) -> tuple[list[int], list[int], list[int]]:
        with self.raw.cursor() as cursor:
            cursor.execute(
                "SELECT ARRAY(SELECT nextval(%s::regclass) FROM generate_series(1, %s)), "
                "ARRAY(SELECT nextval(%s::regclass) FROM generate_series(1, %s)), "
                "ARRAY(SELECT nextval(%s::regclass) FROM generate_series(1, %s))",
                [self.prompts.sequence, n, self.completions.sequence, 2 * n, self.items.sequence, n])
            return cursor.fetchone()

    def _store(self, data: tuple[bytes, ...], started: threading.Event) -> None:
        """In the worker thread: COPY a chunk's data; each COPY ends with its foreign-key checks.
        ``started`` is set once the first COPY's data is sent (or on an error before)."""
        try:
            with self.raw.cursor() as cursor:
                for table, table_data in zip((self.prompts, self.completions, self.items), data, strict=True):
                    with cursor.copy(table.sql) as copy:
                        copy.write(table_data)
                        started.set()
        finally:
            started.set()

    def _encode(self, chunk: list[ParsedPair], prompt_ids: list[int], completion_ids: list[int],
                item_ids: list[int]) -> tuple[bytes, bytes, bytes]:
        source, project_id, dumps, cursor = self.source, self.project_id, _json_dumps, self.encoding_cursor
        import_job_id = self.import_job_id
        messages_prefix = self.prompts.json_prefix["messages"]
        metadata_prefix = self.prompts.json_prefix["metadata"]
        empty_metadata = metadata_prefix + "{}"
        rest = self.prompts.constants
        prompts = self.prompts.encode(cursor, (
            # Message contents are NUL-free already (conversation_validate): the fast dumps will do.
            (prompt_id, project_id, messages_prefix + dumps(p.prompt), source,
             metadata_prefix + _jsonb_text(p.metadata) if p.metadata else empty_metadata, import_job_id, *rest)
            for prompt_id, p in zip(prompt_ids, chunk, strict=True)))
        rest = self.completions.constants
        ids = iter(completion_ids)
        completions = self.completions.encode(cursor, (
            row for prompt_id, p in zip(prompt_ids, chunk, strict=True) for row in (
                (next(ids), prompt_id, p.response_a, p.model_a, *rest),
                (next(ids), prompt_id, p.response_b, p.model_b, *rest))))
        rest = self.items.constants
        items = self.items.encode(cursor, (
            (item_id, project_id, prompt_id, completion_ids[2 * i], completion_ids[2 * i + 1], *rest)
            for i, (item_id, prompt_id) in enumerate(zip(item_ids, prompt_ids, strict=True))))
        return prompts, completions, items


def _chunks(pairs: Iterator[ParsedPair], size: int, counter: _Counter) -> Iterator[tuple[list[ParsedPair], int]]:
    """Lists of ``size`` pairs, each with the number of records read when it was complete."""
    while chunk := list(itertools.islice(pairs, size)):
        yield chunk, counter.rows


def items_import(*, project: Project, path: str | Path, fmt: str = "auto", display_name: str | None = None,
                 progress: Callable[[int], None] | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 field_map: Mapping[str, str] | None = None, import_job_id: int | None = None) -> ImportResult:
    """Import a file of pairs into ``project``: all of it or, on any error, none of it.

    The file is read and stored ``chunk_size`` pairs at a time (a few chunks in memory), all in one
    transaction. ``progress(rows)`` is called after each stored chunk with the records stored so far
    (lines, CSV records, tasks or trees: the unit of ``ImportResult.rows``). It runs inside the import's
    transaction: what it writes through Django's default connection is seen by others only at commit
    (and rolled back with the import); an exception from it cancels the import. On PostgreSQL the next
    chunk is read while one is stored, so a bad record may be reported before the chunks ahead of it
    have all been reported stored. ``field_map`` names the source keys of ``prompt`` / ``response_a`` /
    ``response_b`` where they vary (Label Studio data, CSV header). ``import_job_id`` is stored on every
    prompt: which import brought it.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    name = display_name or Path(path).name
    if fmt == "auto":
        fmt = format_detect(path, display_name=name, field_map=field_map)
    counter = _Counter()
    chunks = _chunks(parse_file(path, fmt, display_name=name, field_map=field_map, _counter=counter),
                     chunk_size, counter)
    writer_class = _PostgresCopyWriter if connection.vendor == "postgresql" else _BulkCreateWriter
    items = 0
    with transaction.atomic():
        writer = writer_class(project=project, source=name[:_SOURCE_MAX], progress=progress,
                              import_job_id=import_job_id)
        try:
            for chunk, rows in chunks:
                try:
                    with connection.wrap_database_errors:  # psycopg's errors from COPY as Django's, as the ORM raises
                        writer.write(chunk, rows)
                except UnicodeEncodeError:
                    error = _encoding_error(chunk, name=name, task=fmt == "label-studio")
                    if error is None:
                        raise
                    raise error from None
                items += len(chunk)
            if counter.rows == 0:
                raise ImportError_(path=name, line=0, field="(file)", message="the file has no rows")
            with connection.wrap_database_errors:
                writer.close()
        finally:
            writer.discard()  # before the rollback, which needs the connection
    return ImportResult(format=fmt, rows=counter.rows, items=items)
