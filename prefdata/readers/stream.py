"""The streaming layer every reader shares: open a file once, decompress it when it is gzip, and yield
its records with the number a person would look for (the line, or the record of a JSON array).

Plain files are read as they are, with no layer in between: JSON Lines is the hot path of imports.
A gzip file (magic bytes 1f 8b: hh-rlhf and most hub datasets ship as ``.jsonl.gz``) is read through a
decompressor whose output is capped at ``max_bytes``, so a gzip bomb is refused instead of filling
memory; nothing decompressed is ever written to disk.

A record is read whole only when it is within ``ReadOptions``' limits: a line (or a JSON array's record)
longer than ``max_line_bytes`` is refused once that many bytes are read, so memory stays flat whatever
the file holds. What a JSON parser would accept but the file cannot have meant is refused with its line
and field: an object with the same key twice, NaN and infinities, a NUL character (``\\u0000``), a text
longer than ``max_field_bytes``, nesting deeper than ``max_depth``. The checks cost next to nothing on
the hot path: each is looked for in the raw line first (a byte count or search in C) and the decoded
record is walked only when the line could hold the problem.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from prefdata.records import FieldError

DEFAULT_MAX_BYTES = 8 << 30  # 8 GiB decompressed: far above any dataset imported in one file
DEFAULT_MAX_FIELD_BYTES = 1 << 20  # 1 MiB of UTF-8 a text: a long reasoning trace fits
LINE_FIELDS = 16  # a line may hold this many fields at the limit (a prompt and two replies, JSON escapes)
DEFAULT_MAX_DEPTH = 100  # levels of nested arrays and objects in one record
GZIP_MAGIC = b"\x1f\x8b"
CONTEXT_DIFFERS = ("reject", "keep")  # a pair whose two conversations differ before the replies
IDENTICAL = ("reject", "skip")  # a pair whose two replies are the same text


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How a file is read: its limits, and what becomes of pairs some sources hold.

    ``max_field_bytes`` bounds every text (UTF-8 bytes), ``max_line_bytes`` a line of JSON Lines or CSV
    and a record of a JSON array (0: ``LINE_FIELDS`` times the field limit), ``max_depth`` the nesting of
    a record. ``context_differs``: a pair whose conversations differ before the final replies (hh-rlhf,
    TRL implicit prompt, Arena) is refused ("reject") or kept with ``metadata["context_differs"]``
    ("keep"). ``identical``: a pair whose two replies are the same text is refused ("reject") or left
    out ("skip"); both are counted in the ``RowCounter``.
    """

    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES
    max_line_bytes: int = 0
    max_depth: int = DEFAULT_MAX_DEPTH
    context_differs: str = "reject"
    identical: str = "reject"

    def __post_init__(self) -> None:
        if self.max_field_bytes < 1 or self.max_line_bytes < 0 or self.max_depth < 2:
            raise ValueError("max_field_bytes must be at least 1, max_line_bytes 0 or more, max_depth at least 2")
        if not self.max_line_bytes:
            object.__setattr__(self, "max_line_bytes", LINE_FIELDS * self.max_field_bytes)
        if self.context_differs not in CONTEXT_DIFFERS:
            raise ValueError(f"context_differs: {self.context_differs!r} is not one of {', '.join(CONTEXT_DIFFERS)}")
        if self.identical not in IDENTICAL:
            raise ValueError(f"identical: {self.identical!r} is not one of {', '.join(IDENTICAL)}")


DEFAULT_OPTIONS = ReadOptions()


class _NotANumber(ValueError):
    """NaN, Infinity or -Infinity: Python's json accepts them, JSON does not, and no column can store them."""


def _refuse_constant(name: str) -> object:
    raise _NotANumber(name)


def _finite_float(text: str) -> float:
    # A literal too large for a float (1e999) is read as an infinity, which no column can store either.
    value = float(text)
    if not math.isfinite(value):
        raise _NotANumber(text)
    return value


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def _pairs_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


# parse_constant is called for NaN and the infinities only, parse_float for numbers with a fraction or an
# exponent only: the C scanner does the rest as fast as without them.
_json_loads = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float).decode
# Only for a line that may hold a key twice (see _duplicate_key): a Python call per object.
_json_loads_checked = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float,
                                       object_pairs_hook=_pairs_without_duplicates).decode
_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# An escape of NUL or of a surrogate (a regular expression finds it faster than bytes' "in" does).
_nul_or_surrogate_escape = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])").search
# A key's closing quote, white space and colon: one for each member of every object in the line (and
# maybe more, inside texts).
_KEY_END = re.compile(rb'"[ \t\r\n]*:')


class ReadError(ValueError):
    """A file that cannot be read, naming the file, the 1-based line (or record, or task) and the field."""

    def __init__(self, *, path: str, line: int, field: str, message: str) -> None:
        self.path, self.line, self.field = path, line, field
        super().__init__(f"{path}, line {line}, field {field!r}: {message}")


@dataclass
class RowCounter:
    """Records read so far (lines, CSV records, tasks, trees), shared with the caller of a reader, with
    what the reader left aside: top-level fields no rule of the format reads (name -> records), pairs
    kept with ``context_differs`` and pairs skipped for identical replies (``ReadOptions``)."""

    rows: int = 0
    ignored: dict[str, int] = field(default_factory=dict)
    context_differs: int = 0
    identical_skipped: int = 0

    def ignore(self, names) -> None:
        for name in names:
            self.ignored[name] = self.ignored.get(name, 0) + 1


class StreamError(Exception):
    """The file itself failed while it was read (a corrupt gzip, the decompressed size limit): the
    reader that catches it knows the line."""

    field = "(file)"


class LineTooLong(StreamError):
    """A line (or a JSON array's record) longer than ``max_line_bytes``, refused before it is read whole."""

    field = "(line)"

    def __init__(self, limit: int) -> None:
        super().__init__(f"longer than {limit:,} bytes (the limit of a line or record: refused unread)")


def to_read_error(exc: Exception, *, path: str, line: int, unit: str | None = None) -> ReadError:
    """A row parser's KeyError (a missing key), FieldError or ValueError ("field: message") as a ReadError.
    ``unit`` ("task", "record") prefixes the message where the line is the number of a JSON array's element."""
    if isinstance(exc, KeyError):
        field_name, message = str(exc.args[0]), "missing"
    elif isinstance(exc, FieldError):
        field_name, message = exc.field, str(exc)
    else:
        message = str(exc)
        field_name = message.split(":", 1)[0].split("[", 1)[0] if ":" in message else "(row)"
    if unit:
        message = f"{unit} {line}: {message}"
    return ReadError(path=path, line=line, field=field_name, message=message)


class _Capped(io.RawIOBase):
    """The decompressed bytes of a gzip file, refusing to give more than ``limit`` of them."""

    def __init__(self, source: gzip.GzipFile, limit: int) -> None:
        self.source, self.limit, self.total = source, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        # Never more than the limit: the bytes before it are all given (so the error comes with the line
        # that crosses it); once they are, one more byte tells whether the data goes on.
        room = self.limit - self.total
        try:
            n = self.source.readinto(memoryview(buffer)[:max(room, 1)] if room < len(buffer) else buffer)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise StreamError(f"not a valid gzip file: {exc}") from None
        self.total += n
        if self.total > self.limit:
            raise StreamError(f"more than {self.limit:,} bytes once decompressed (the limit): refused")
        return n


@contextmanager
def stream_open(path: str | Path, *, max_bytes: int | None = None) -> Iterator[BinaryIO]:
    """The bytes of the file, decompressed when it is gzip (at most ``max_bytes``, default
    ``DEFAULT_MAX_BYTES``; past it, reading raises StreamError). The stream can ``peek``."""
    with open(path, "rb") as handle:
        if handle.peek(2)[:2] != GZIP_MAGIC:
            yield handle
            return
        limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
        with gzip.GzipFile(fileobj=handle, mode="rb") as source:
            yield io.BufferedReader(_Capped(source, limit), buffer_size=1 << 16)  # type: ignore[arg-type]


def first_char(stream: BinaryIO) -> str:
    """The first character of the stream that is not white space or a byte-order mark ("" if none in
    the first 4 KiB), without consuming anything."""
    head = stream.peek(4096)[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")  # type: ignore[attr-defined]
    return head[:1].decode("latin-1")


def jsonl_records(stream: BinaryIO, name: str, options: ReadOptions = DEFAULT_OPTIONS) -> Iterator[tuple[int, object]]:
    """(line, value) of every non-blank line of a JSON Lines stream, within ``options``' limits."""
    # Bytes, decoded line by line, so a bad encoding is reported on its own line. A line is read up to
    # one byte past the limit: a longer one is refused without being read whole.
    line_limit, field_limit, depth_limit = options.max_line_bytes, options.max_field_bytes, options.max_depth
    line_no = 0
    try:
        for line_no, raw in enumerate(iter(partial(stream.readline, line_limit + 1), b""), start=1):
            if len(raw) > line_limit and raw[-1] != 10:
                raise ReadError(path=name, line=line_no, field=LineTooLong.field, message=str(LineTooLong(line_limit)))
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if raw.isspace() or not raw:
                continue
            try:
                text = raw.decode("utf-8")
                row = _json_loads(text)
            except UnicodeDecodeError as exc:
                raise ReadError(path=name, line=line_no, field="(encoding)", message=f"not UTF-8: {exc}") from None
            except json.JSONDecodeError as exc:
                raise ReadError(path=name, line=line_no, field="(json)", message=str(exc)) from None
            except _NotANumber as exc:
                raise ReadError(path=name, line=line_no, field="(json)", message=_not_a_number(exc)) from None
            except RecursionError:
                raise ReadError(path=name, line=line_no, field="(json)", message=_too_deep(depth_limit)) from None
            if type(row) is dict:
                # Every member of an object is a key and a colon, and a record nests no deeper than its
                # colons and "[" allow: counted in C, the decoded record is walked only where the line
                # could hold a key twice or nest too deeply.
                colons = raw.count(b":")
                if colons > len(row):
                    members, depth = _shape(row)
                    if depth > depth_limit:
                        raise ReadError(path=name, line=line_no, field="(json)", message=_too_deep(depth_limit))
                    if colons > members and len(_KEY_END.findall(raw)) > members and (key := _duplicate_key(text)):
                        raise ReadError(path=name, line=line_no, field=key, message=_duplicate(key))
                elif b"[" in raw and colons + raw.count(b"[") >= depth_limit and _shape(row)[1] > depth_limit:
                    raise ReadError(path=name, line=line_no, field="(json)", message=_too_deep(depth_limit))
            # NUL and lone surrogates come only from escapes (JSON refuses raw control characters).
            if _nul_or_surrogate_escape(raw):
                if bad := _text_problem(row, _has_nul):
                    raise ReadError(path=name, line=line_no, field=bad[0], message=_nul(bad[1]))
                # A "\ud800" escape with no partner decodes to a lone surrogate, which no database can store.
                if bad := _text_problem(row, _has_lone_surrogate):
                    raise ReadError(path=name, line=line_no, field=bad[0],
                                    message=f"{bad[1]}: not valid Unicode: a lone surrogate (\\ud800-\\udfff) escape")
            # No text is longer once decoded than its JSON in the line.
            if len(raw) > field_limit and (bad := _text_problem(row, _too_long(field_limit))):
                raise ReadError(path=name, line=line_no, field=bad[0], message=_long(bad[1], field_limit))
            yield line_no, row
    except StreamError as exc:
        raise ReadError(path=name, line=line_no + 1, field=exc.field, message=str(exc)) from None


# -- what a record may not hold ------------------------------------------------------------------------------


def _not_a_number(exc: _NotANumber) -> str:
    what = exc.args[0]
    if what in ("NaN", "Infinity", "-Infinity"):
        return f"{what} is not a JSON value (NaN and infinities are refused: no column can store them)"
    return f"the number {what[:40]} is too large for a float, an infinity (refused: no column can store it)"


def _too_deep(limit: int) -> str:
    return f"nested more than {limit} levels deep: refused"


def _duplicate(key: str) -> str:
    return f"the key {key!r} appears twice in one object (which one was meant cannot be told): refused"


def _nul(path: str) -> str:
    return f"{path}: holds a NUL character (\\u0000), which cannot be stored as written: refused"


def _long(path: str, limit: int) -> str:
    return f"{path}: longer than {limit:,} bytes (the limit of a field): refused"


def _shape(value: object) -> tuple[int, int]:
    """(members of all its objects, levels of nesting) of a decoded JSON value, walked level by level."""
    members, depth, level = 0, 0, [value]
    while level:
        depth += 1
        below = []
        for container in level:
            if type(container) is dict:
                members += len(container)
                container = container.values()
            for v in container:  # type: ignore[union-attr]
                if type(v) is dict or type(v) is list:
                    below.append(v)
        level = below
    return members, depth


def _duplicate_key(text: str) -> str | None:
    """The first key found twice in one object of the JSON ``text``, if any (decoded again, checked)."""
    try:
        _json_loads_checked(text)
    except _DuplicateKey as exc:
        return exc.key
    return None


def _has_nul(text: str) -> bool:
    return "\x00" in text


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _too_long(limit: int):
    def test(text: str) -> bool:
        # UTF-8 takes 1 to 4 bytes a character: encode only where the length cannot tell.
        return len(text) > limit or (len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit)
    return test


def _text_problem(row: object, test) -> tuple[str, str] | None:
    """(the top-level field, the path) of the first text of ``row`` (a key or a string value) for which
    ``test`` is true, or None. Walked without recursion; the record's depth is checked before."""
    stack: list[tuple[str, str, object]] = (
        [(str(k), str(k), v) for k, v in reversed(row.items())] if isinstance(row, dict) else [("(row)", "(row)", row)])
    while stack:
        top, path, value = stack.pop()
        if isinstance(value, str):
            if test(value):
                return top, path
        elif isinstance(value, dict):
            for k, v in reversed(value.items()):
                if test(k):
                    return top, f"{path} (a key)"
                stack.append((top, f"{path}.{k}", v))
        elif isinstance(value, list):
            stack.extend((top, f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    if isinstance(row, dict):
        for k in row:
            if test(k):
                return str(k), f"{k} (a key)"
    return None


# -- JSON arrays ---------------------------------------------------------------------------------------------


class _RecordBudget:
    """The stream as ijson reads it (in 64 KiB blocks), refusing more than ``limit`` bytes for one record:
    the bytes read since the last complete record are counted, so a record larger than the limit is
    refused before it is in memory."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.limit, self.used = stream, limit, 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.used += len(data)
        if self.used > self.limit + _ARRAY_BLOCK:
            raise LineTooLong(self.limit)
        return data


_ARRAY_BLOCK = 1 << 16
_CONSTANT = re.compile(r"\bNaN\b|\bInfinity\b")
_SCALARS = frozenset(("string", "number", "boolean", "null"))


class _RecordError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        self.field = field_name
        super().__init__(message)


def _array_record(events: Iterator[tuple[str, object]], event: str, value: object, options: ReadOptions) -> object:
    """One element of a JSON array built from ijson's events (``event``, ``value`` its first), checked as
    it is built: a key twice in an object, a NUL character, a text over the field limit, too deep.
    (ijson's own builder makes a path string per level for every event: quadratic memory in the depth.)"""
    limit, depth_limit = options.max_field_bytes, options.max_depth
    too_long = _too_long(limit)
    quarter = limit // 4  # a text of at most this many characters is within the limit
    if event in _SCALARS:
        if event == "string":
            _text_check(value, "(row)", quarter, too_long, limit)  # type: ignore[arg-type]
        return value
    root: Any = {} if event == "start_map" else []
    top, is_map, key, root_key = root, event == "start_map", None, "(row)"
    stack: list[tuple[Any, bool, Any]] = []  # the containers above ``top``, with their current key
    for event, value in events:
        if event == "map_key":
            if value in top:
                raise _RecordError(str(value), _duplicate(str(value)))
            if top is root:
                root_key = str(value)
            if "\x00" in value or len(value) > quarter:  # type: ignore[operator, arg-type]
                _text_check(value, root_key, quarter, too_long, limit, key=True)  # type: ignore[arg-type]
            key = value
        elif event == "string":
            if "\x00" in value or len(value) > quarter:  # type: ignore[operator, arg-type]
                _text_check(value, root_key, quarter, too_long, limit)  # type: ignore[arg-type]
            if is_map:
                top[key] = value
            else:
                top.append(value)
        elif event == "number" or event == "boolean" or event == "null":
            if is_map:
                top[key] = value
            else:
                top.append(value)
        elif event == "start_map" or event == "start_array":
            new: Any = {} if event == "start_map" else []
            if is_map:
                top[key] = new
            else:
                top.append(new)
            stack.append((top, is_map, key))
            if len(stack) >= depth_limit:
                raise _RecordError("(json)", _too_deep(depth_limit))
            top, is_map, key = new, event == "start_map", None
        else:  # end_map, end_array
            if not stack:
                return root
            top, is_map, key = stack.pop()
    raise _RecordError("(json)", "incomplete JSON")


def _text_check(text: str, field_name: str, quarter: int, too_long, limit: int, *, key: bool = False) -> None:
    what = f"{field_name} (a key)" if key else field_name
    if "\x00" in text:
        raise _RecordError(field_name, _nul(what))
    if len(text) > quarter and too_long(text):
        raise _RecordError(field_name, _long(what, limit))


def array_records(stream: BinaryIO, name: str, unit: str = "record",
                  options: ReadOptions = DEFAULT_OPTIONS) -> Iterator[tuple[int, object]]:
    """(number, value) of every element of a JSON array, streamed (an export can be larger than memory),
    each within ``options``' limits. Errors name the element as the line, and say so: "``unit`` N: ..."."""
    import ijson

    budget = _RecordBudget(stream, options.max_line_bytes)
    events = ijson.basic_parse(budget, buf_size=_ARRAY_BLOCK, use_float=True)
    number = 0
    try:
        first = next(events, None)
        if first is None:
            return
        if first[0] != "start_array":
            raise _RecordError("(json)", "expected a JSON array")
        while True:
            number += 1
            event, value = next(events)
            if event == "end_array":
                return
            row = _array_record(events, event, value, options)
            budget.used = 0
            yield number, row
    except (ijson.JSONError, UnicodeDecodeError, StopIteration) as exc:
        message = str(exc) or "incomplete JSON"
        if _CONSTANT.search(message):  # yajl shows the text around the error
            message = f"NaN and infinities are not JSON values (no column can store them): {message}"
        raise ReadError(path=name, line=number or 1, field="(json)",
                        message=f"{unit} {number or 1}: invalid JSON: {message}") from None
    except _RecordError as exc:
        raise ReadError(path=name, line=number, field=exc.field, message=f"{unit} {number}: {exc}") from None
    except StreamError as exc:
        raise ReadError(path=name, line=number or 1, field=exc.field,
                        message=f"{unit} {number or 1}: {exc}") from None
