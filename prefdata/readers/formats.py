"""The registry of import formats, the one format detection, and ``read``: a file to its records.

Every format has a kind ("pairs": ``PairRecord``, "steps": ``StepRecord``), a description (the form's
and the command's help), a row parser and, for the record formats, the rule that recognises its first
record and the top-level fields its parser reads (any other is counted as ignored, never dropped
silently). A record format (one JSON object a record) is read from JSON Lines, from a JSON array, and from
gzip of either; Label Studio exports are JSON arrays of tasks; CSV is our pair CSV.

Every pair, whatever its format, is checked last (``pair_formats.pair_admit``): two replies of the same
text, or (where the format can tell) two conversations that differ before the replies, are refused or
kept as ``ReadOptions`` say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from prefdata.readers import mapped, pair_formats, step_formats
from prefdata.readers.stream import (
    DEFAULT_OPTIONS,
    ReadError,
    ReadOptions,
    RowCounter,
    StreamError,
    array_records,
    first_char,
    jsonl_records,
    stream_open,
    to_read_error,
)

KINDS = ("pairs", "steps")
AUTO = "auto"
AUTO_DESCRIPTION = "detect from the file's first record"

Reader = Callable[..., Iterator[Any]]


@dataclass(frozen=True, slots=True)
class Format:
    """One import format.

    ``parse`` turns one JSON object into a record, a list of records (an OpenAssistant tree), or None (a
    record with nothing to import); it raises KeyError / ValueError / ``FieldError`` for a bad record.
    ``detect`` says whether a file's first record is of this format, and ``hint`` names what it looks
    for in the message of a file no format recognises. ``fields`` are the top-level fields ``parse``
    reads: the others are counted in ``RowCounter.ignored``. ``context_differs``: the parser flags pairs
    whose two conversations differ before the replies (``metadata["context_differs"]``). Formats without
    ``parse`` have a ``reader`` of their own (CSV, Label Studio), whose records are numbered in ``unit``
    ("task") where they are not lines.
    """

    name: str
    kind: str
    description: str
    parse: Callable[[dict], Any] | None = None
    detect: Callable[[dict], bool] | None = None
    hint: str = ""
    reader: Reader | None = None
    fields: frozenset[str] | None = None
    context_differs: bool = False
    unit: str | None = None


def _is_trl(row: dict) -> bool:
    # Explicit prompt, or TRL's implicit prompt: full conversations sharing the prefix.
    return ("prompt" in row and "chosen" in row) or (
        "chosen" in row and "rejected" in row and isinstance(row["chosen"], list))


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("pairs", "pairs",
           'our JSONL: {"prompt", "response_a", "response_b", optional "model_a", "model_b", "metadata"}',
           pair_formats.pairs_row, lambda row: "response_a" in row, "response_a/response_b",
           fields=frozenset(("prompt", "response_a", "response_b", "model_a", "model_b", "metadata"))),
    Format("csv", "pairs",
           "our CSV: header prompt,response_a,response_b[,model_a,model_b]; other columns go to the metadata",
           reader=pair_formats.read_csv),
    Format("trl-preference", "pairs",
           'TRL preference JSONL: {"prompt", "chosen", "rejected", optional "margin"} (strings or conversations), '
           'or implicit prompt: {"chosen", "rejected"} full conversations sharing the prefix',
           pair_formats.trl_row, _is_trl, "prompt/chosen/rejected",
           fields=frozenset(("prompt", "chosen", "rejected", "margin")), context_differs=True),
    Format("hh-rlhf", "pairs", 'Anthropic hh-rlhf: {"chosen", "rejected"} transcripts of "Human:" / "Assistant:" turns',
           pair_formats.hh_row,
           lambda row: "chosen" in row and isinstance(row["chosen"], str) and "\n\nHuman:" in row["chosen"],
           "hh-rlhf", fields=frozenset(("chosen", "rejected")), context_differs=True),
    Format("arena", "pairs", "Chatbot Arena battles JSONL: {model_a, model_b, winner, conversation_a, conversation_b}",
           pair_formats.arena_row, lambda row: "conversation_a" in row and "winner" in row,
           "Arena conversation_a/conversation_b", fields=pair_formats.ARENA_FIELDS, context_differs=True),
    Format("oasst", "pairs",
           "OpenAssistant message trees JSONL: every two ranked assistant replies to a prompter message",
           pair_formats.oasst_tree,
           lambda row: "message_tree_id" in row or (isinstance(row.get("prompt"), dict) and "replies" in row["prompt"]),
           "an OpenAssistant tree", fields=frozenset(("message_tree_id", "prompt"))),
    Format("label-studio", "pairs", "Label Studio JSON export (an array of tasks) of a Pairwise labeling config",
           reader=pair_formats.read_label_studio, unit="task"),
    Format("steps", "steps",
           'our JSONL: {"prompt" (string or conversation), "steps": [str], optional "ratings": [1|0|-1|null], '
           '"reference_answer", "ground_truth_solution", "model", "metadata", "finish_reason", "outcome"}',
           step_formats.steps_row, lambda row: "prompt" in row and "steps" in row, "prompt/steps",
           fields=frozenset(("prompt", "steps", "ratings", "reference_answer", "ground_truth_solution", "model",
                             "metadata", "finish_reason", "outcome"))),
    Format("prm800k", "steps",
           "PRM800K JSONL (OpenAI, one labeled solution a line): question.problem, label.steps[].completions[]"
           ".rating, chosen_completion, human_completion, label.finish_reason",
           step_formats.prm800k_row, lambda row: isinstance(row.get("label"), dict) and "question" in row,
           "PRM800K question/label",
           fields=frozenset(("question", "label", "labeler", "timestamp", "generation", "is_quality_control_question",
                             "is_initial_screening_question"))),
    Format("bbm", "steps", "BIG-Bench Mistake JSONL: {input, steps, mistake_index (0-based or null), answer, target}",
           step_formats.bbm_row, lambda row: "mistake_index" in row and "steps" in row,
           "BIG-Bench Mistake input/steps/mistake_index",
           fields=frozenset(("input", "steps", "mistake_index", "answer", "target"))),
    Format("math-shepherd", "steps",
           'Math-Shepherd JSONL: {input, label, optional task}: every step of "input" ends with "ки", '
           'which "label" replaces with "+" or "-"',
           step_formats.math_shepherd_row, lambda row: "input" in row and "label" in row, "Math-Shepherd input/label",
           fields=frozenset(("input", "label", "task"))),
)}

# The order in which the rules are tried on a first record: the more specific first (a row with
# "response_a" and "chosen" is ours; PRM800K's "label" is an object, Math-Shepherd's a string).
DETECTION_ORDER = ("pairs", "arena", "oasst", "trl-preference", "hh-rlhf", "prm800k", "bbm", "steps", "math-shepherd")


def formats_for(kind: str | None = None) -> dict[str, str]:
    """Name -> description of the formats of ``kind`` (all when None), "auto" first: the choices of a
    form, a command or an API field."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    return {AUTO: AUTO_DESCRIPTION, **{f.name: f.description for f in FORMATS.values()
                                      if kind is None or f.kind == kind}}


# -- detection ----------------------------------------------------------------------------------------------


def _record_format(row: object, kind: str | None) -> str | None:
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    for name in DETECTION_ORDER:
        spec = FORMATS[name]
        if (kind is None or spec.kind == kind) and spec.detect(row):  # type: ignore[misc]
            return name
    return None


def _unknown(kind: str | None) -> str:
    hints = [f.hint for f in FORMATS.values() if f.hint and (kind is None or f.kind == kind)]
    return f"unknown format: expected {', '.join(hints[:-1])} or {hints[-1]}"


def _detect_record(row: object, kind: str | None, name: str, line: int) -> str:
    try:
        fmt = _record_format(row, kind)
        if fmt is None:
            raise ValueError(_unknown(kind))
    except ValueError as exc:
        raise ReadError(path=name, line=line, field="(row)", message=str(exc)) from None
    return fmt


def _detect_array(stream: BinaryIO, kind: str | None, name: str, options: ReadOptions) -> str:
    """A JSON array: of records of a record format, or of Label Studio tasks (where pairs may be)."""
    tasks_possible = kind in (None, "pairs")
    try:
        number, row = next(array_records(stream, name, options=options), (0, None))
    except ReadError:
        if tasks_possible:
            return "label-studio"  # reading the tasks will report it, task by task
        raise
    if number == 0:
        if tasks_possible:
            return "label-studio"
        raise ReadError(path=name, line=0, field="(file)", message="the file has no rows")
    if tasks_possible:
        # A Label Studio task keeps its fields under "data"; anything else no record rule knows is taken
        # for a task too, and reported as one.
        if not isinstance(row, dict) or "data" in row:
            return "label-studio"
        return _record_format(row, kind) or "label-studio"
    return _detect_record(row, kind, name, number)


def format_detect(path: str | Path, *, kind: str | None = None, display_name: str | None = None,
                  field_map: Mapping[str, str] | None = None, max_bytes: int | None = None,
                  options: ReadOptions | None = None) -> str:
    """The format of a file of ``kind`` ("pairs", "steps", None for either), from its first record.

    After white space and a byte-order mark, and once decompressed when it is gzip: a "[" opens a JSON
    array (of records, or Label Studio tasks), a "{" JSON Lines, whose first record's keys decide; with
    pairs possible, anything else is read as a CSV header. The first record is read within ``options``'
    limits.
    """
    name = display_name or Path(path).name
    options = options or DEFAULT_OPTIONS
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    with stream_open(path, max_bytes=max_bytes) as stream:
        try:
            first = first_char(stream)
        except StreamError as exc:
            raise ReadError(path=name, line=1, field=exc.field, message=str(exc)) from None
        if not first:
            raise ReadError(path=name, line=0, field="(file)", message="the file has no rows")
        if first == "[":
            return _detect_array(stream, kind, name, options)
        if first != "{" and kind != "steps":
            try:
                if pair_formats.csv_header_fits(stream, field_map or {}, options.max_line_bytes):
                    return "csv"
            except StreamError as exc:
                raise ReadError(path=name, line=1, field=exc.field, message=str(exc)) from None
            raise ReadError(path=name, line=1, field="(file)",
                            message="unknown format: not JSON Lines, a JSON array or a CSV with prompt,response_a,"
                                    "response_b columns")
        for line_no, row in jsonl_records(stream, name, options):
            return _detect_record(row, kind, name, line_no)
    raise ReadError(path=name, line=0, field="(file)", message="the file has no rows")


# -- reading ------------------------------------------------------------------------------------------------


def read(path: str | Path, fmt: str = AUTO, *, kind: str | None = None, display_name: str | None = None,
         field_map: Mapping[str, str] | None = None, counter: RowCounter | None = None,
         max_bytes: int | None = None, options: ReadOptions | None = None,
         mapping: mapped.ColumnMapping | Mapping[str, Any] | None = None) -> Iterator[Any]:
    """The records of a file, one at a time (lazily): ``PairRecord`` or ``StepRecord`` as the format's kind.

    ``fmt`` "auto" detects it (``format_detect``); ``kind`` restricts the formats to one kind. Raises
    ReadError naming the file (``display_name``, else the file's name), line and field, at once for an
    unknown format, else at the first bad record. ``counter.rows`` counts the records read (lines, CSV
    records, tasks, trees), and the counter keeps what was left aside (ignored fields, flagged and skipped
    pairs). ``field_map`` names the source keys of prompt / response_a / response_b where they vary (Label
    Studio data, CSV header). A gzip file may decompress to ``max_bytes`` at most; ``options`` sets the
    limits of a record and what becomes of the pairs some sources hold (``ReadOptions``).

    ``fmt`` "mapped" (``MAPPED``) reads any JSON Lines, JSON array, CSV or Parquet file through ``mapping``
    (a ``ColumnMapping`` or its JSON form; ``prefdata.readers.mapped``), for ``kind``.
    """
    name = display_name or Path(path).name
    counter = counter if counter is not None else RowCounter()
    options = options or DEFAULT_OPTIONS
    if fmt == mapped.MAPPED:
        return _read_mapped(path, name, kind, mapping, counter, max_bytes, options)
    if fmt == AUTO:
        fmt = format_detect(path, kind=kind, display_name=name, field_map=field_map, max_bytes=max_bytes,
                            options=options)
    spec = FORMATS.get(fmt)
    if spec is None or (kind is not None and spec.kind != kind):
        raise ReadError(path=name, line=0, field="(format)",
                        message=f"unknown format {fmt!r}; known: {', '.join(formats_for(kind))}")
    if spec.reader is not None:
        records = spec.reader(path, name, counter, field_map or {}, max_bytes=max_bytes, options=options)
        if spec.kind == "pairs":
            records = pair_formats.pairs_checked(records, name=name, unit=spec.unit, options=options, counter=counter,
                                                 context_differs=spec.context_differs)
        return records
    return _read_records(path, name, spec, counter, max_bytes, options)


def _read_mapped(path: str | Path, name: str, kind: str | None, mapping: object, counter: RowCounter,
                 max_bytes: int | None, options: ReadOptions) -> Iterator[Any]:
    if mapping is None:
        raise ReadError(path=name, line=0, field="(mapping)", message="the mapped format needs a column mapping")
    if not isinstance(mapping, mapped.ColumnMapping):
        try:
            mapping = mapped.ColumnMapping.from_dict(mapping, kind=kind or "pairs")  # type: ignore[arg-type]
        except mapped.MappingError as exc:
            raise ReadError(path=name, line=0, field=exc.field, message=str(exc)) from None
    elif kind is not None and mapping.kind != kind:
        raise ReadError(path=name, line=0, field="(mapping)", message=f"a mapping of {mapping.kind}, not {kind}")
    records = mapped.read_mapped(path, mapping, name=name, counter=counter, max_bytes=max_bytes, options=options)
    if mapping.kind == "pairs":
        container = mapped.container_detect(path, max_bytes=max_bytes)
        unit = {"json": "record", "parquet": "row"}.get(container)
        records = pair_formats.pairs_checked(records, name=name, unit=unit, options=options, counter=counter)
    return records


def _read_records(path: str | Path, name: str, spec: Format, counter: RowCounter, max_bytes: int | None,
                  options: ReadOptions) -> Iterator[Any]:
    with stream_open(path, max_bytes=max_bytes) as stream:
        try:
            array = first_char(stream) == "["
        except StreamError as exc:
            raise ReadError(path=name, line=1, field=exc.field, message=str(exc)) from None
        if array:
            rows, unit = array_records(stream, name, options=options), "record"
        else:
            rows, unit = jsonl_records(stream, name, options), None
        # The hot path of imports (JSON Lines): keep this loop lean. The checks of a pair are
        # pair_formats.pairs_checked's, inlined (a generator less); pair_admit is called only for a pair
        # that fails them.
        parse, known, ignore = spec.parse, spec.fields, counter.ignore
        pairs, context_differs, admit = spec.kind == "pairs", spec.context_differs, pair_formats.pair_admit
        for number, row in rows:
            counter.rows += 1
            try:
                if not isinstance(row, dict):
                    raise ValueError("expected a JSON object")
                if known is not None and not row.keys() <= known:
                    ignore(sorted(row.keys() - known))
                parsed = parse(row)  # type: ignore[misc]
            except (KeyError, ValueError, TypeError) as exc:
                raise to_read_error(exc, path=name, line=number, unit=unit) from None
            except RecursionError:
                raise ReadError(path=name, line=number, field="(row)",
                                message=f"{unit + ' ' + str(number) + ': ' if unit else ''}nested too deeply") from None
            if parsed is None:  # nothing to import in this record
                continue
            for record in parsed if isinstance(parsed, list) else (parsed,):
                record.line = number
                if pairs and (record.response_a == record.response_b or (
                        context_differs and "context_differs" in record.metadata) or (
                        record.response_a.strip() == record.response_b.strip())) and not admit(
                        record, name=name, unit=unit, options=options, counter=counter,
                        context_differs=context_differs):
                    continue
                yield record
