"""Any table of records, mapped column by column: JSON Lines, a JSON array, CSV or Parquet to pairs or steps.

A file no format of the registry knows (LLMBar's ``input``, ``output_1``, ``output_2``, ``label``) is
imported by naming, for each field of ours, the column that holds it (``ColumnMapping``)::

    mapping = ColumnMapping.from_dict({"columns": {"prompt": "input", "response_a": "output_1",
                                                   "response_b": "output_2", "gold": "label"},
                                       "gold_values": {"1": "A", "2": "B"}}, kind="pairs")
    for pair in read(path, MAPPED, kind="pairs", mapping=mapping):   # prefdata.readers.read
        ...

A column is a top-level key, or a dotted path into nested JSON (``chosen.1.content``: a key, then a list
index). Pairs keep the sides as the file gives them (response A is A); the gold column's values become a
verdict through ``gold_values`` ("1" -> "A"; without a value map, A / B / tie / both_bad as written) kept as
``metadata["source_preference"]``, as every format with a preference keeps it. Steps come from a list
column, or from a text column split by ``split`` (``prefdata.steps.SPLIT_RULES``); ratings from a list
column of 1 / 0 / -1 / null, one per step.

The rows are read on the one streaming layer, within ``ReadOptions``' limits, and every error is a
``ReadError`` naming the file, the line (a CSV's line as a text editor counts them; the record of a JSON
array; the row of a Parquet file) and the file's column. Parquet is read a batch at a time (``pyarrow``,
imported only here and only for Parquet), the mapped columns only.

``preview`` reads the first rows of a file at once (bounded), for the page and the API: what the file is,
its columns, its first cells, the mapping suggested or the errors of the one given.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefdata.readers.pair_formats import (
    _cell_too_long,
    _nul_message,
    _reply_text,
    _text_lines,
    model_name_clean,
    prompt_conversation,
)
from prefdata.readers.step_formats import _steps
from prefdata.readers.stream import (
    DEFAULT_OPTIONS,
    ReadError,
    ReadOptions,
    RowCounter,
    StreamError,
    _long,
    _nul,
    _text_problem,
    _too_long,
    array_records,
    first_char,
    jsonl_records,
    stream_open,
    to_read_error,
)
from prefdata.records import (
    FOUND_ERROR,
    SOLUTION,
    STEP_RATINGS,
    VERDICTS,
    FieldError,
    PairRecord,
    StepRatings,
    StepRecord,
    text_clean,
)
from prefdata.steps import SPLIT_RULES, steps_split

MAPPED = "mapped"
CONTAINERS = ("jsonl", "json", "csv", "parquet")
PARQUET_MAGIC = b"PAR1"
PARQUET_BATCH = 1024
PREVIEW_ROWS = 20
PREVIEW_CELL_CHARS = 200
PREVIEW_VALUES = 20  # distinct values of a column shown for its value map
TEXT_SPLIT_RULES = tuple(rule for rule in SPLIT_RULES if rule != "given")
DEFAULT_SPLIT = "blank_lines"

# Our fields a column can be mapped to, per kind: name -> (required, what it is).
TARGETS: dict[str, dict[str, tuple[bool, str]]] = {
    "pairs": {
        "prompt": (True, "prompt (text or a conversation)"),
        "response_a": (True, "response A (text, or a conversation ending with the reply)"),
        "response_b": (True, "response B"),
        "model_a": (False, "model A"),
        "model_b": (False, "model B"),
        "gold": (False, "gold verdict (mapped to A / B / tie / both_bad by the value map)"),
        "id": (False, "source id (kept in the metadata)"),
    },
    "steps": {
        "prompt": (True, "prompt (the problem: text or a conversation)"),
        "steps": (True, "steps (a list of texts, or a text split by the split rule)"),
        "ratings": (False, "ratings (a list of 1 / 0 / -1 / null, one per step)"),
        "reference_answer": (False, "reference answer"),
        "model": (False, "model"),
        "id": (False, "source id (kept in the metadata)"),
    },
}
# Column names recognised at once for a field (the suggestion of a preview), in order of preference.
_SUGGEST: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt", "input", "instruction", "question", "problem", "query", "text", "context"),
    "response_a": ("response_a", "output_1", "output_a", "answer_a", "answer1", "response1", "completion_a",
                   "chosen"),
    "response_b": ("response_b", "output_2", "output_b", "answer_b", "answer2", "response2", "completion_b",
                   "rejected"),
    "model_a": ("model_a", "generator_1", "model1"),
    "model_b": ("model_b", "generator_2", "model2"),
    "gold": ("label", "winner", "preference", "gold", "verdict", "gold_label", "choice"),
    "id": ("id", "question_id", "uid"),
    "steps": ("steps", "solution", "completions", "reasoning", "response", "output"),
    "ratings": ("ratings", "labels", "step_labels"),
    "reference_answer": ("reference_answer", "answer", "target", "ground_truth"),
    "model": ("model", "generator", "model_name"),
}


class MappingError(ValueError):
    """A mapping that cannot be used, naming the field of ours (or "gold_values", "split") it concerns."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field = field_name
        super().__init__(message)


def value_key(value: object) -> str:
    """A cell's value as the text a value map is keyed by: 1, 1.0 and "1" are "1"; true is "true"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds each field of ours (``columns``: field -> column or dotted path), the value map
    of the gold column (``gold_values``: the cell's text -> a verdict) and, for steps held as one text,
    the rule that splits it (``split``)."""

    kind: str
    columns: dict[str, str]
    gold_values: dict[str, str] = field(default_factory=dict)
    split: str = DEFAULT_SPLIT

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, kind: str) -> ColumnMapping:
        """A mapping from its JSON form (``to_dict``), checked: every required field mapped, no unknown one,
        every gold value a verdict, a known split rule. Raises ``MappingError``."""
        if kind not in TARGETS:
            raise MappingError("(kind)", f"unknown kind {kind!r}; known: {', '.join(TARGETS)}")
        if not isinstance(data, Mapping):
            raise MappingError("(mapping)", "expected an object with columns, gold_values and split")
        unknown = set(data) - {"columns", "gold_values", "split"}
        if unknown:
            raise MappingError("(mapping)", f"unknown key(s) {', '.join(sorted(unknown))}: expected columns, "
                                            "gold_values, split")
        raw_columns = data.get("columns") or {}
        if not isinstance(raw_columns, Mapping):
            raise MappingError("columns", "columns: expected an object of field: column")
        targets = TARGETS[kind]
        columns: dict[str, str] = {}
        for target, source in raw_columns.items():
            if target not in targets:
                raise MappingError(str(target), f"{target}: not a field of {kind} (fields: {', '.join(targets)})")
            if source is None or (isinstance(source, str) and not source.strip()):
                continue  # "not mapped"
            if not isinstance(source, str) or len(source) > 300 or "\x00" in source:
                raise MappingError(target, f"{target}: expected a column name")
            columns[target] = source.strip()
        for target, (required, what) in targets.items():
            if required and target not in columns:
                raise MappingError(target, f"{target}: not mapped: choose the column that holds the {what}")
        raw_values = data.get("gold_values") or {}
        if not isinstance(raw_values, Mapping):
            raise MappingError("gold_values", "gold_values: expected an object of value: verdict")
        gold_values: dict[str, str] = {}
        for value, verdict in raw_values.items():
            if verdict in (None, ""):
                continue
            if verdict not in VERDICTS:
                raise MappingError("gold_values", f"gold_values: {value!r} maps to {verdict!r}, not one of "
                                                  f"{', '.join(VERDICTS)}")
            gold_values[value_key(value)] = verdict
        if gold_values and "gold" not in columns:
            raise MappingError("gold", "gold: a value map is given but no column is mapped to the gold verdict")
        split = data.get("split") or DEFAULT_SPLIT
        if split not in TEXT_SPLIT_RULES:
            raise MappingError("split", f"split: {split!r} is not one of {', '.join(TEXT_SPLIT_RULES)}")
        return cls(kind=kind, columns=columns, gold_values=gold_values, split=split)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"columns": dict(self.columns)}
        if self.gold_values:
            data["gold_values"] = dict(self.gold_values)
        if self.kind == "steps":
            data["split"] = self.split
        return data

    @property
    def top_columns(self) -> set[str]:
        """The top-level columns the mapping reads (a dotted path's first part, unless a column is named so)."""
        return {source.split(".", 1)[0] for source in self.columns.values()}


def pairs_parse(text: str) -> dict[str, str]:
    """``"prompt=input,response_a=output_1"`` (a command's ``--map``) -> {"prompt": "input", ...}."""
    result: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise MappingError("(mapping)", f"{part!r}: expected name=value")
        result[name.strip()] = value.strip()
    return result


# -- containers and their rows -----------------------------------------------------------------------------


def container_detect(path: str | Path, *, max_bytes: int | None = None) -> str:
    """"parquet", "json" (an array), "jsonl" or "csv", from the file's first bytes (gzip decompressed)."""
    with open(path, "rb") as handle:
        if handle.read(4) == PARQUET_MAGIC:
            return "parquet"
    with stream_open(path, max_bytes=max_bytes) as stream:
        try:
            first = first_char(stream)
        except StreamError:
            return "jsonl"  # reading it reports the error with its line
    return {"[": "json", "{": "jsonl"}.get(first, "csv")


def table_rows(path: str | Path, name: str, *, container: str | None = None, options: ReadOptions = DEFAULT_OPTIONS,
               max_bytes: int | None = None, columns: set[str] | None = None) -> Iterator[tuple[int, dict]]:
    """(line, row) of every record of the file, a row being an object of column -> value. ``columns``:
    the only ones a Parquet file need read (all where None)."""
    container = container or container_detect(path, max_bytes=max_bytes)
    if container == "parquet":
        yield from _parquet_rows(path, name, options, columns)
        return
    if container == "csv":
        yield from _csv_rows(path, name, options, max_bytes)
        return
    with stream_open(path, max_bytes=max_bytes) as stream:
        if container == "json":
            rows, unit = array_records(stream, name, options=options), "record"
        else:
            rows, unit = jsonl_records(stream, name, options), None
        for number, row in rows:
            if not isinstance(row, dict):
                raise ReadError(path=name, line=number, field="(row)",
                                message=f"{unit + ' ' + str(number) + ': ' if unit else ''}expected a JSON object")
            yield number, row


def _csv_rows(path: str | Path, name: str, options: ReadOptions, max_bytes: int | None) -> Iterator[tuple[int, dict]]:
    csv.field_size_limit(options.max_line_bytes)
    too_long = _cell_too_long(options.max_field_bytes)
    with stream_open(path, max_bytes=max_bytes) as stream:
        reader = csv.reader(_text_lines(stream, options.max_line_bytes))
        try:
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise ReadError(path=name, line=1, field="(header)", message="no header row: the first line must "
                                                                             "name the columns")
            seen: set[str] = set()
            for column in header:
                if column in seen:
                    raise ReadError(path=name, line=1, field=column, message=f"the column {column!r} is named twice "
                                                                             "in the header")
                seen.add(column)
            line_no = reader.line_num + 1
            for cells in reader:
                start, line_no = line_no, reader.line_num + 1
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) != len(header):
                    raise ReadError(path=name, line=start, field="(row)",
                                    message=f"expected {len(header)} columns, found {len(cells)}")
                for column, cell in zip(header, cells, strict=True):
                    if "\x00" in cell:
                        raise ReadError(path=name, line=start, field=column, message=_nul_message(column))
                    if too_long(cell):
                        raise ReadError(path=name, line=start, field=column,
                                        message=_long(column, options.max_field_bytes))
                yield start, dict(zip(header, cells, strict=True))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ReadError(path=name, line=reader.line_num + 1, field="(csv)", message=str(exc)) from None
        except StreamError as exc:
            raise ReadError(path=name, line=reader.line_num + 1, field=exc.field, message=str(exc)) from None


def _parquet_rows(path: str | Path, name: str, options: ReadOptions,
                  columns: set[str] | None) -> Iterator[tuple[int, dict]]:
    """Rows of a Parquet file a batch at a time (never the whole table), the given columns only; every
    text checked as a JSON record's is (NUL, the field limit)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise ReadError(path=name, line=0, field="(file)", message="reading Parquet needs pyarrow") from None
    too_long = _too_long(options.max_field_bytes)
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        wanted = None if columns is None else [c for c in names if c in columns]
        number = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH, columns=wanted):
            for row in batch.to_pylist():
                number += 1
                if bad := _text_problem(row, lambda text: "\x00" in text):
                    raise ReadError(path=name, line=number, field=bad[0], message=_nul(bad[1]))
                if bad := _text_problem(row, too_long):
                    raise ReadError(path=name, line=number, field=bad[0],
                                    message=_long(bad[1], options.max_field_bytes))
                yield number, row
    except ReadError:
        raise
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise ReadError(path=name, line=0, field="(file)", message=f"not a readable Parquet file: {exc}") from None


# -- a row to a record ---------------------------------------------------------------------------------------


_MISSING = object()


def column_value(row: Mapping[str, Any], source: str) -> Any:
    """The value at ``source``: the column of that name, else a dotted path (keys, list indexes). Raises
    KeyError(source) when there is none."""
    if source in row:
        return row[source]
    value: Any = row
    for part in source.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(source)
    return value


def _get(row: Mapping[str, Any], mapping: ColumnMapping, target: str, default: Any = _MISSING) -> Any:
    source = mapping.columns.get(target)
    if source is None:
        return default
    try:
        value = column_value(row, source)
    except KeyError:
        if default is not _MISSING:
            return default
        raise KeyError(source) from None
    return value


def _text_value(value: object, source: str) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and not value.strip():
        raise FieldError(source, f"{source}: empty")
    return value


def gold_verdict(value: object, mapping: ColumnMapping, source: str) -> str | None:
    """The verdict a gold cell maps to (None for an empty cell); an unmapped value raises FieldError."""
    key = value_key(value)
    if mapping.gold_values:
        verdict = mapping.gold_values.get(key)
        if verdict is None and key == "":
            return None
    else:
        verdict = next((v for v in VERDICTS if v.lower() == key.lower()), None) if key else None
        if key == "":
            return None
    if verdict is None:
        known = ", ".join(f"{k}→{v}" for k, v in mapping.gold_values.items()) or ", ".join(VERDICTS)
        raise FieldError(source, f"{source}: the value {key[:80]!r} maps to no verdict (mapped: {known})")
    return verdict


def pair_from_row(row: Mapping[str, Any], mapping: ColumnMapping) -> PairRecord:
    """One row to a pair: response A is the file's A. Errors name the file's column."""
    columns = mapping.columns
    prompt_source = columns["prompt"]
    a_source, b_source = columns["response_a"], columns["response_b"]
    pair = PairRecord(
        prompt_conversation(_text_value(_get(row, mapping, "prompt"), prompt_source), prompt_source),
        _reply_text(_text_value(_get(row, mapping, "response_a"), a_source), a_source),
        _reply_text(_text_value(_get(row, mapping, "response_b"), b_source), b_source),
        model_name_clean(_get(row, mapping, "model_a", None), columns.get("model_a", "model_a")),
        model_name_clean(_get(row, mapping, "model_b", None), columns.get("model_b", "model_b")),
        fields=(a_source, b_source),
    )
    if "gold" in columns:
        verdict = gold_verdict(_get(row, mapping, "gold"), mapping, columns["gold"])
        if verdict is not None:
            pair.metadata["source_preference"] = verdict
    source_id = _get(row, mapping, "id", None)
    if source_id is not None:
        pair.metadata["source_id"] = source_id if isinstance(source_id, int | str) else value_key(source_id)
    return pair


def _rating_value(value: object, where: str) -> int | None:
    if isinstance(value, bool):
        return 1 if value else -1
    if isinstance(value, str):
        value = {"": None, "+": 1, "-": -1, "1": 1, "+1": 1, "0": 0, "-1": -1}.get(value.strip(), value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value not in STEP_RATINGS or isinstance(value, float):
        raise FieldError(where, f"{where}: {value!r} is not one of 1, 0, -1, null")
    return value  # type: ignore[return-value]


def step_from_row(row: Mapping[str, Any], mapping: ColumnMapping) -> StepRecord:
    """One row to a solution: steps from a list column, or a text column split by ``mapping.split``."""
    columns = mapping.columns
    prompt_source, steps_source = columns["prompt"], columns["steps"]
    prompt = prompt_conversation(_text_value(_get(row, mapping, "prompt"), prompt_source), prompt_source)
    raw_steps = _get(row, mapping, "steps")
    if isinstance(raw_steps, str):
        text = text_clean(raw_steps)
        steps = steps_split(text, mapping.split)
        if not steps:
            raise FieldError(steps_source, f"{steps_source}: empty")
    else:
        steps = _steps(raw_steps, steps_source)
        text = "\n\n".join(steps)
    reference = _get(row, mapping, "reference_answer", None)
    record = StepRecord(prompt, steps, solution_text=text,
                        reference_answer="" if reference is None else text_clean(value_key(reference)),
                        model_name=model_name_clean(_get(row, mapping, "model", None), columns.get("model", "model")))
    if mapping.kind == "steps" and isinstance(raw_steps, str):
        record.metadata["split_rule"] = mapping.split
    source_id = _get(row, mapping, "id", None)
    if source_id is not None:
        record.prompt_metadata["source_id"] = source_id if isinstance(source_id, int | str) else value_key(source_id)
    if "ratings" in columns:
        ratings_source = columns["ratings"]
        ratings = _get(row, mapping, "ratings")
        if ratings is not None:
            if isinstance(ratings, str):  # a CSV cell: a JSON list
                try:
                    ratings = json.loads(ratings)
                except ValueError:
                    raise FieldError(ratings_source, f"{ratings_source}: expected a list of ratings") from None
            if not isinstance(ratings, list) or len(ratings) != len(steps):
                raise FieldError(ratings_source,
                                 f"{ratings_source}: expected a list of {len(steps)} ratings, one per step")
            values = [_rating_value(r, f"{ratings_source}[{i}]") for i, r in enumerate(ratings)]
            record.label = StepRatings(values, FOUND_ERROR if -1 in values else SOLUTION)
    return record


def read_mapped(path: str | Path, mapping: ColumnMapping, *, name: str, counter: RowCounter,
                max_bytes: int | None = None, options: ReadOptions = DEFAULT_OPTIONS) -> Iterator[Any]:
    """The records of a file read through ``mapping``: ``PairRecord`` (identical replies not yet checked:
    ``pairs_checked``) or ``StepRecord``. Columns no field is mapped to are counted as ignored."""
    container = container_detect(path, max_bytes=max_bytes)
    used = mapping.top_columns
    parse = pair_from_row if mapping.kind == "pairs" else step_from_row
    unit = "record" if container == "json" else ("row" if container == "parquet" else None)
    for number, row in table_rows(path, name, container=container, options=options, max_bytes=max_bytes,
                                  columns=used):
        counter.rows += 1
        if not row.keys() <= used:
            counter.ignore(sorted(k for k in row.keys() - used))
        try:
            record = parse(row, mapping)
        except (KeyError, ValueError, TypeError) as exc:
            if isinstance(exc, KeyError):
                exc = FieldError(str(exc.args[0]), f"{exc.args[0]}: missing (the column is not in this row)")
            raise to_read_error(exc, path=name, line=number, unit=unit) from None
        record.line = number
        yield record


# -- preview ------------------------------------------------------------------------------------------------


@dataclass
class Preview:
    """The first rows of a file, read at once: what the file is (``container``; the registry's format when
    one recognises it), its ``columns``, the first ``rows`` (each cell as text, truncated), the distinct
    ``values`` of the columns (for a value map), a ``suggested`` mapping, and the ``errors`` of the
    mapping or format given over those rows (file, line, field, message)."""

    container: str = ""
    detected_format: str | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    values: dict[str, list[str]] = field(default_factory=dict)
    suggested: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    records_checked: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"container": self.container, "detected_format": self.detected_format, "columns": self.columns,
                "rows": self.rows, "lines": self.lines, "values": self.values, "suggested": self.suggested,
                "errors": self.errors, "records_checked": self.records_checked}


def cell_text(value: object, limit: int = PREVIEW_CELL_CHARS) -> str:
    """A cell as text to show (JSON for what is not text), cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def error_dict(exc: ReadError | MappingError, path: str = "") -> dict[str, Any]:
    if isinstance(exc, ReadError):
        return {"file": exc.path, "line": exc.line, "field": exc.field, "message": str(exc)}
    return {"file": path, "line": 0, "field": exc.field, "message": str(exc)}


def mapping_suggest(columns: list[str], kind: str) -> dict[str, str]:
    """A first guess of the mapping from the column names (exact names, any case)."""
    lower = {c.lower(): c for c in columns}
    suggested: dict[str, str] = {}
    taken: set[str] = set()
    for target in TARGETS[kind]:
        for candidate in _SUGGEST.get(target, ()):
            column = lower.get(candidate)
            if column is not None and column not in taken:
                suggested[target] = column
                taken.add(column)
                break
    return suggested


def preview(path: str | Path, *, kind: str, mapping: Mapping[str, Any] | ColumnMapping | None = None,
            fmt: str | None = None, display_name: str | None = None, rows: int = PREVIEW_ROWS,
            max_bytes: int | None = None, options: ReadOptions = DEFAULT_OPTIONS) -> Preview:
    """The first ``rows`` rows of a file, read at once within ``options``' limits, and the errors of reading
    them through ``mapping`` (or, without one, through ``fmt`` or the format detected): what a person sees
    before anything is queued. Never raises for a bad file: its error is in ``errors``."""
    from prefdata.readers.formats import AUTO, format_detect, read

    name = display_name or Path(path).name
    result = Preview()
    try:
        result.container = container_detect(path, max_bytes=max_bytes)
    except OSError as exc:
        result.errors.append({"file": name, "line": 0, "field": "(file)", "message": str(exc)})
        return result
    raw: list[dict] = []
    try:
        for number, row in itertools.islice(table_rows(path, name, container=result.container, options=options,
                                                       max_bytes=max_bytes), rows):
            raw.append(row)
            result.lines.append(number)
    except ReadError as exc:
        result.errors.append(error_dict(exc))
    for row in raw:
        for column in row:
            if column not in result.columns:
                result.columns.append(column)
    result.rows = [{c: cell_text(row[c]) if c in row else "" for c in result.columns} for row in raw]
    for column in result.columns:
        seen = {value_key(row.get(column)) for row in raw if not isinstance(row.get(column), dict | list)}
        if 0 < len(seen) <= PREVIEW_VALUES // 2 or (len(seen) <= PREVIEW_VALUES and len(seen) < len(raw)):
            result.values[column] = sorted(v[:80] for v in seen)
    result.suggested = mapping_suggest(result.columns, kind)
    if result.container != "parquet":
        try:
            result.detected_format = format_detect(path, kind=kind, display_name=name, max_bytes=max_bytes,
                                                   options=options)
        except ReadError:
            result.detected_format = None
    if result.errors and not raw:
        return result
    checked = 0
    try:
        if mapping is not None:
            column_mapping = mapping if isinstance(mapping, ColumnMapping) else ColumnMapping.from_dict(
                mapping, kind=kind)
            present = set(result.columns)
            for target, source in column_mapping.columns.items():
                if source not in present and source.split(".", 1)[0] not in present:
                    line = 1 if result.container == "csv" else (result.lines or [0])[0]
                    result.errors.append(error_dict(ReadError(
                        path=name, line=line, field=source,
                        message=f"{target} is mapped to the column {source!r}, which is not in the file (columns "
                                f"found: {', '.join(result.columns)})")))
            if result.errors:
                return result
            records = read(path, MAPPED, kind=kind, display_name=name, mapping=column_mapping, max_bytes=max_bytes,
                           options=options)
        else:
            chosen = fmt if fmt not in (None, AUTO) else result.detected_format
            if chosen is None:
                result.errors.append({"file": name, "line": 0, "field": "(format)",
                                      "message": f"{name}: no format of {kind} recognises this file: map its "
                                                 "columns"})
                return result
            records = read(path, chosen, kind=kind, display_name=name, max_bytes=max_bytes, options=options)
        last = result.lines[-1] if result.lines else 0
        for record in records:
            checked += 1
            if record.line >= last or checked >= rows:
                break
    except (ReadError, MappingError) as exc:
        error = error_dict(exc, name)
        if error not in result.errors:
            result.errors.append(error)
    result.records_checked = checked
    return result
