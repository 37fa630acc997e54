"""The streaming layer every reader shares: open a file once, decompress it when it is gzip, and yield
its records with the number a person would look for (the line, or the record of a JSON array).

Plain files are read as they are, with no layer in between: JSON Lines is the hot path of imports.
A gzip file (magic bytes 1f 8b: hh-rlhf and most hub datasets ship as ``.jsonl.gz``) is read through a
decompressor whose output is capped at ``max_bytes``, so a gzip bomb is refused instead of filling
memory; nothing decompressed is ever written to disk.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from prefdata.records import FieldError

DEFAULT_MAX_BYTES = 8 << 30  # 8 GiB decompressed: far above any dataset imported in one file
GZIP_MAGIC = b"\x1f\x8b"

_json_loads = json.JSONDecoder().decode
_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class ReadError(ValueError):
    """A file that cannot be read, naming the file, the 1-based line (or record, or task) and the field."""

    def __init__(self, *, path: str, line: int, field: str, message: str) -> None:
        self.path, self.line, self.field = path, line, field
        super().__init__(f"{path}, line {line}, field {field!r}: {message}")


@dataclass
class RowCounter:
    """Records read so far (lines, CSV records, tasks, trees), shared with the caller of a reader."""

    rows: int = 0


class StreamError(Exception):
    """The file itself failed while it was read (a corrupt gzip, the decompressed size limit): the
    reader that catches it knows the line."""

    field = "(file)"


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


def jsonl_records(stream: BinaryIO, name: str) -> Iterator[tuple[int, object]]:
    """(line, value) of every non-blank line of a JSON Lines stream."""
    # Bytes, decoded line by line, so a bad encoding is reported on its own line.
    line_no = 0
    try:
        for line_no, raw in enumerate(stream, start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if raw.isspace() or not raw:
                continue
            try:
                row = _json_loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ReadError(path=name, line=line_no, field="(encoding)", message=f"not UTF-8: {exc}") from None
            except json.JSONDecodeError as exc:
                raise ReadError(path=name, line=line_no, field="(json)", message=str(exc)) from None
            # A "\ud800" escape with no partner decodes to a lone surrogate, which no database can store.
            if (b"\\ud" in raw or b"\\uD" in raw) and (bad := _lone_surrogate_field(row)):
                raise ReadError(path=name, line=line_no, field=bad,
                                message="not valid Unicode: a lone surrogate (\\ud800-\\udfff) escape")
            yield line_no, row
    except StreamError as exc:
        raise ReadError(path=name, line=line_no + 1, field=exc.field, message=str(exc)) from None


def _lone_surrogate_field(row: object) -> str | None:
    """The top-level key of ``row`` (or "(row)") whose text holds a lone surrogate, if any."""
    for key, value in row.items() if isinstance(row, dict) else [("(row)", row)]:
        try:
            _json_dumps(value).encode("utf-8")
        except UnicodeEncodeError:
            return str(key)
    return None


def array_records(stream: BinaryIO, name: str, unit: str = "record") -> Iterator[tuple[int, object]]:
    """(number, value) of every element of a JSON array, streamed (an export can be larger than memory).
    Errors name the element as the line, and say so: "``unit`` N: ..."."""
    import ijson

    items = ijson.items(stream, "item", use_float=True)
    number = 0
    while True:
        number += 1
        try:
            row = next(items)
        except StopIteration:
            return
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            raise ReadError(path=name, line=number, field="(json)",
                            message=f"{unit} {number}: invalid JSON: {exc}") from None
        except StreamError as exc:
            raise ReadError(path=name, line=number, field=exc.field, message=f"{unit} {number}: {exc}") from None
        yield number, row
