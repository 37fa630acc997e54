"""The database side of imports: pairs and step items read by ``prefdata.readers`` are stored here.

A file is read as a stream and stored in chunks (``chunk_size`` records at a time), so memory stays
constant whatever its size; all chunks go into ONE transaction, so a bad record anywhere gives a
``ReadError`` naming the file, line (or task) and field, and stores nothing.

The reader's limits and choices come as ``ReadOptions`` (by default: ``IMPORT_MAX_FIELD_BYTES`` from the
settings, identical replies and conversations that differ before the replies refused). ``ImportResult``
says what was left aside: top-level fields no rule of the format reads, pairs kept flagged or skipped.

Every pair becomes one Prompt, two Completions and one PairItem. On PostgreSQL the rows are written
with COPY after their ids are taken from the sequences (so the three tables can reference each other
without a round trip per row), one chunk being stored by a worker thread while the next is parsed
and encoded; elsewhere with ``bulk_create``.

Every step record becomes one Prompt (the problem as a one-message conversation, ``source`` = the file
name) and one StepItem (``split_rule="given"``: the steps come from the file). Where the file carries step
labels they become one StepLabel with ``annotator=None``, ``source="auto"`` and
``source_name="<format>:<file name>"`` (a dataset's labels, human or not, have no annotator here, and
``source="human"`` requires one).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.db.models.expressions import DatabaseDefault
from django.utils import timezone

from annotate.models import Completion, PairItem, Project, Prompt, StepItem, StepLabel
from prefdata.readers import DEFAULT_MAX_FIELD_BYTES, ReadError, ReadOptions, RowCounter, format_detect, read
from prefdata.readers.stream import to_read_error
from prefdata.records import PairRecord, StepRecord, json_clean

DEFAULT_CHUNK_SIZE = 5_000

DEFAULT_STEP_CHUNK_SIZE = 2_000

_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_SOURCE_MAX = Prompt._meta.get_field("source").max_length
_SOURCE_NAME_MAX = StepLabel._meta.get_field("source_name").max_length


@dataclass
class ImportResult:
    format: str
    rows: int  # records read: lines, CSV records, tasks, trees
    items: int  # pairs or step items stored
    ignored_fields: dict[str, int] = field(default_factory=dict)  # top-level field -> records holding it
    context_differs: int = 0  # pairs kept with metadata["context_differs"]
    identical_skipped: int = 0  # pairs left out: their two replies were the same text

    @classmethod
    def of(cls, fmt: str, counter: RowCounter, items: int) -> ImportResult:
        return cls(format=fmt, rows=counter.rows, items=items, ignored_fields=dict(sorted(counter.ignored.items())),
                   context_differs=counter.context_differs, identical_skipped=counter.identical_skipped)

    def summary(self) -> dict[str, Any]:
        """What an import job keeps and shows: records read, items stored, what was left aside."""
        return {"format": self.format, "records": self.rows, "items": self.items,
                "ignored_fields": self.ignored_fields, "context_differs_kept": self.context_differs,
                "identical_skipped": self.identical_skipped}

    def summary_lines(self) -> list[str]:
        """The summary in words, a line a fact worth telling (the command prints them)."""
        lines = []
        if self.ignored_fields:
            lines.append("ignored fields (not read by the format, not stored): " + ", ".join(
                f"{name} ({count} record{'s' if count != 1 else ''})" for name, count in self.ignored_fields.items()))
        if self.context_differs:
            lines.append(f"{self.context_differs} pair(s) kept with context_differs: their conversations differ "
                         "before the replies (the first one's is stored)")
        if self.identical_skipped:
            lines.append(f"{self.identical_skipped} pair(s) left out: their two replies were the same text")
        return lines


def import_read_options(**choices: str) -> ReadOptions:
    """The reader's options of an import: the field limit from the settings (``IMPORT_MAX_FIELD_BYTES``),
    and the choices made for it (``context_differs``, ``identical``)."""
    return ReadOptions(max_field_bytes=getattr(settings, "IMPORT_MAX_FIELD_BYTES", DEFAULT_MAX_FIELD_BYTES),
                       **choices)


# -- pairs to rows ----------------------------------------------------------------------------------------


def _encoding_error(chunk: list[PairRecord], *, name: str, task: bool) -> ReadError | None:
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
                return to_read_error(ValueError(f"{field_name}: not valid Unicode: {exc.reason}"),
                                     path=name, line=pair.line, unit="task" if task else None)
    return None


class _BulkCreateWriter:
    """Any backend that returns primary keys from bulk inserts (SQLite here)."""

    def __init__(self, *, project: Project, source: str, progress: Callable[[int], None] | None,
                 import_job_id: int | None = None) -> None:
        self.project, self.source, self.progress, self.import_job_id = project, source, progress, import_job_id

    def write(self, chunk: list[PairRecord], rows: int) -> None:
        prompts = Prompt.objects.bulk_create(
            [Prompt(project=self.project, messages=p.prompt, source=self.source, import_job_id=self.import_job_id,
                    metadata=json_clean(p.metadata) if p.metadata else {}) for p in chunk])
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
    return _json_dumps(json_clean(value)) if "\\u0000" in text else text


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

    def write(self, chunk: list[PairRecord], rows: int) -> None:
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

    def _encode(self, chunk: list[PairRecord], prompt_ids: list[int], completion_ids: list[int],
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


def _chunks(pairs: Iterator[PairRecord], size: int, counter: RowCounter) -> Iterator[tuple[list[PairRecord], int]]:
    """Lists of ``size`` pairs, each with the number of records read when it was complete."""
    while chunk := list(itertools.islice(pairs, size)):
        yield chunk, counter.rows


def items_import(*, project: Project, path: str | Path, fmt: str = "auto", display_name: str | None = None,
                 progress: Callable[[int], None] | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 field_map: Mapping[str, str] | None = None, import_job_id: int | None = None,
                 options: ReadOptions | None = None, mapping: Mapping[str, Any] | None = None) -> ImportResult:
    """Import a file of pairs into ``project``: all of it or, on any error, none of it.

    The file is read and stored ``chunk_size`` pairs at a time (a few chunks in memory), all in one
    transaction. ``progress(rows)`` is called after each stored chunk with the records stored so far
    (lines, CSV records, tasks or trees: the unit of ``ImportResult.rows``). It runs inside the import's
    transaction: what it writes through Django's default connection is seen by others only at commit
    (and rolled back with the import); an exception from it cancels the import. On PostgreSQL the next
    chunk is read while one is stored, so a bad record may be reported before the chunks ahead of it
    have all been reported stored. ``field_map`` names the source keys of ``prompt`` / ``response_a`` /
    ``response_b`` where they vary (Label Studio data, CSV header). ``import_job_id`` is stored on every
    prompt: which import brought it. ``options``: the reader's (default ``import_read_options()``).
    ``fmt`` "mapped" reads the file through ``mapping`` (``prefdata.readers.mapped.ColumnMapping``'s JSON).
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    name = display_name or Path(path).name
    options = options or import_read_options()
    if fmt == "auto":
        fmt = format_detect(path, kind="pairs", display_name=name, field_map=field_map, options=options)
    counter = RowCounter()
    chunks = _chunks(read(path, fmt, kind="pairs", display_name=name, field_map=field_map, counter=counter,
                          options=options, mapping=mapping), chunk_size, counter)
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
                raise ReadError(path=name, line=0, field="(file)", message="the file has no rows")
            with connection.wrap_database_errors:
                writer.close()
        finally:
            writer.discard()  # before the rollback, which needs the connection
    return ImportResult.of(fmt, counter, items)


# -- step items ---------------------------------------------------------------------------------------------


def _write(chunk: list[StepRecord], *, project: Project, source: str, source_name: str,
           import_job_id: int | None = None) -> None:
    prompts = Prompt.objects.bulk_create([
        Prompt(project=project, messages=p.prompt, source=source, import_job_id=import_job_id,
               metadata=json_clean({**p.prompt_metadata, "source_line": p.line})) for p in chunk])
    items = StepItem.objects.bulk_create([
        StepItem(project=project, prompt=prompt, steps=p.steps, solution_text=p.solution_text,
                 split_rule=StepItem.SplitRule.GIVEN, reference_answer=p.reference_answer,
                 ground_truth_solution=p.ground_truth_solution, model_name=p.model_name,
                 metadata=json_clean(p.metadata) if p.metadata else {})
        for p, prompt in zip(chunk, prompts, strict=True)])
    StepLabel.objects.bulk_create([
        StepLabel(item=item, annotator=None, source=StepLabel.Source.AUTO, source_name=source_name,
                  ratings=p.label.ratings, flags=p.label.flags, finish_reason=p.label.finish_reason,
                  outcome=p.label.outcome)
        for p, item in zip(chunk, items, strict=True) if p.label is not None])


def step_items_import(*, project: Project, path: str | Path, fmt: str = "auto", display_name: str | None = None,
                      progress: Callable[[int], None] | None = None, chunk_size: int = DEFAULT_STEP_CHUNK_SIZE,
                      import_job_id: int | None = None, options: ReadOptions | None = None,
                      mapping: Mapping[str, Any] | None = None) -> ImportResult:
    """Import a file of step items (and their labels) into a steps project: all of it or, on any error, none.

    The file is read and stored ``chunk_size`` records at a time (one chunk in memory), all in one
    transaction. ``progress(rows)`` is called after each stored chunk with the lines read so far; it runs
    inside the import's transaction (see ``items_import``). ``ImportResult.rows`` counts the records read,
    ``items`` the step items stored (a PRM800K row with no labeled step stores none). ``options``: the
    reader's (default ``import_read_options()``); ``mapping``: that of a "mapped" import (see ``items_import``).
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    name = display_name or Path(path).name
    options = options or import_read_options()
    if project.task_kind != Project.TaskKind.STEPS:
        raise ReadError(path=name, line=0, field="(project)",
                        message=f"project {project.name!r} is not a step-labels project")
    if fmt == "auto":
        fmt = format_detect(path, kind="steps", display_name=name, options=options)
    counter = RowCounter()
    records = read(path, fmt, kind="steps", display_name=name, counter=counter, options=options, mapping=mapping)
    source_name = f"{fmt}:{name}"[:_SOURCE_NAME_MAX]
    items = 0
    with transaction.atomic():
        while chunk := list(itertools.islice(records, chunk_size)):
            _write(chunk, project=project, source=name[:_SOURCE_MAX], source_name=source_name,
                   import_job_id=import_job_id)
            items += len(chunk)
            if progress is not None:
                progress(counter.rows)
        if counter.rows == 0:
            raise ReadError(path=name, line=0, field="(file)", message="the file has no rows")
    return ImportResult.of(fmt, counter, items)
