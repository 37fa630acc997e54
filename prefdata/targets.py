"""Targets: the layout each trainer reads a snapshot in, and the one writer of a snapshot's folder.

A target turns the export rows of ``prefdata.records`` into the rows a trainer loads unchanged:

- ``trl`` (the default): the rows as they are (``to_dict()``), TRL's dataset types;
- ``openrlhf``: OpenRLHF's datasets read fields named on its command line (``openrlhf/cli/train_rm.py``,
  ``train_dpo.py``: ``--prompt_key --chosen_key --rejected_key``, a ``margin`` field read by name;
  ``train_kto.py``: ``--input_key --output_key --label_key``; ``train_sft.py``: ``--input_key``;
  ``train_prm.py``: ``--input_key --label_key --placeholder_token --reward_tokens``;
  ``train_ppo_ray.py``: ``--input_key --label_key``). With ``--apply_chat_template`` it concatenates the
  prompt's and the reply's message lists, so every text is written as messages (a string becomes one
  user or assistant message), and ``openrlhf.args`` beside the data holds the flags naming the fields;
- ``verl``: Parquet in the schema of verl's data preparation (``examples/data_preprocess/gsm8k.py``):
  ``data_source``, ``prompt`` (messages), ``ability``, ``reward_model`` {``style``, ``ground_truth``},
  ``extra_info`` {``split``, ``index``} for prompts (RL), and ``messages`` for SFT (its multi-turn SFT
  dataset).

``snapshot_folder_write`` writes one file per split (``train.jsonl`` / ``train.parquet``, ...) as the rows
come, hashing each as it is written, and a ``README.md`` whose configuration makes
``datasets.load_dataset(folder)`` give those splits. A file holds one shape of row: every row has the
first row's fields, each text in the first row's form (strings or messages), as ``datasets`` needs.

The TRL target's JSON Lines bytes are those of ``writers.jsonl_bytes`` (a test keeps them equal).
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefdata.records import RECORD_KINDS, FieldError, row_format

# OpenRLHF's process reward models mark the end of each step with a placeholder token, as Math-Shepherd
# does, and read a label token per placeholder.
PRM_PLACEHOLDER = "ки"
PRM_GOOD, PRM_BAD = "+", "-"


# -- rows of each target -----------------------------------------------------------------------------------


def _messages(value: Any, role: str) -> list[dict[str, str]]:
    """A text as messages: a conversation as it is, a string as one message of ``role``."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _plain(value: Any) -> str:
    """A text as one string: a conversation's contents one a line."""
    return value if isinstance(value, str) else "\n".join(m["content"] for m in value)


def _ground_truth(record: Any) -> str:
    """What verifies a completion, as one string: the reference answer, or the tests as a JSON list."""
    if record.answer:
        return record.answer
    return json.dumps(record.tests, ensure_ascii=False) if record.tests else ""


@dataclass(frozen=True, slots=True)
class RowContext:
    """Where a row goes: its split and its index in that split, and the verl options."""

    split: str = "train"
    index: int = 0
    data_source: str = "prefdata"
    ability: str | None = None


def _trl_row(kind: str, record: Any, ctx: RowContext) -> dict[str, Any]:
    row = record.to_dict()
    row_format(row)  # TRL reads a row as all strings or all messages
    return row


def _openrlhf_row(kind: str, record: Any, ctx: RowContext) -> dict[str, Any]:
    if kind == "preference":
        row = {"prompt": _messages(record.prompt, "user"), "chosen": _messages(record.chosen, "assistant"),
               "rejected": _messages(record.rejected, "assistant")}
        if record.margin is not None:
            row["margin"] = record.margin
        return row
    if kind == "unpaired":
        return {"prompt": _messages(record.prompt, "user"), "completion": _messages(record.completion, "assistant"),
                "label": record.label}
    if kind == "sft":
        if record.text is not None:
            return {"text": record.text}
        if record.messages is not None:
            return {"messages": _messages(record.messages, "user")}
        return {"messages": _messages(record.prompt, "user") + _messages(record.completion, "assistant")}
    if kind == "stepwise":
        steps = "\n".join(f"{step} {PRM_PLACEHOLDER}" for step in record.completions)
        return {"input": f"{_plain(record.prompt)}\n{steps}",
                "value": [PRM_GOOD if good else PRM_BAD for good in record.labels]}
    # prompt_only: OpenRLHF hands the --label_key field to the reward function
    return {"prompt": _messages(record.prompt, "user"), "answer": _ground_truth(record)}


def _verl_row(kind: str, record: Any, ctx: RowContext) -> dict[str, Any]:
    if kind == "sft":
        if record.text is not None:
            raise FieldError("text", "text: verl's SFT data is conversations (messages or a prompt and a completion)")
        messages = (_messages(record.messages, "user") if record.messages is not None
                    else _messages(record.prompt, "user") + _messages(record.completion, "assistant"))
        return {"messages": messages}
    truth = _ground_truth(record)
    ability = ctx.ability or ("code" if not record.answer and record.tests else "math" if truth else "general")
    # "rule": a function scores a completion against the ground truth; "model": a reward model does.
    return {"data_source": ctx.data_source, "prompt": _messages(record.prompt, "user"), "ability": ability,
            "reward_model": {"style": "rule" if truth else "model", "ground_truth": truth},
            "extra_info": {"split": ctx.split, "index": ctx.index}}


def _openrlhf_args(kind: str, first: Mapping[str, Any]) -> list[str]:
    """The flags of OpenRLHF's trainer of ``kind`` that name the fields of rows shaped like ``first``."""
    if kind == "preference":  # train_rm (add --margin_loss to use "margin") and train_dpo
        return ["--prompt_key", "prompt", "--chosen_key", "chosen", "--rejected_key", "rejected",
                "--apply_chat_template"]
    if kind == "unpaired":  # train_kto
        return ["--input_key", "prompt", "--output_key", "completion", "--label_key", "label",
                "--apply_chat_template"]
    if kind == "sft":  # train_sft: the last assistant message is the response
        if "text" in first:
            return ["--input_key", "text", "--pretrain_mode"]
        return ["--input_key", "messages", "--apply_chat_template"]
    if kind == "stepwise":  # train_prm
        return ["--input_key", "input", "--label_key", "value", "--placeholder_token", PRM_PLACEHOLDER,
                "--reward_tokens", PRM_GOOD, PRM_BAD]
    return ["--input_key", "prompt", "--label_key", "answer", "--apply_chat_template"]  # train_ppo_ray


OPENRLHF_MODULES = {"preference": "openrlhf.cli.train_rm, openrlhf.cli.train_dpo", "unpaired": "openrlhf.cli.train_kto",
                    "sft": "openrlhf.cli.train_sft", "stepwise": "openrlhf.cli.train_prm",
                    "prompt_only": "openrlhf.cli.train_ppo_ray"}


def _verl_schema(kind: str) -> Any:
    import pyarrow as pa

    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    if kind == "sft":
        return pa.schema([("messages", messages)])
    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", messages),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([("split", pa.string()), ("index", pa.int64())])),
    ])


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    description: str
    kinds: tuple[str, ...]  # the record kinds it writes
    file_formats: tuple[str, ...]  # the file formats its trainers read
    row: Callable[[str, Any, RowContext], dict[str, Any]]
    schema: Callable[[str], Any] | None = None  # a fixed Arrow schema; None: from the first row
    args: Callable[[str, Mapping[str, Any]], list[str]] | None = None  # flags written to ``<name>.args``


ALL_KINDS = tuple(RECORD_KINDS)
TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("trl", "TRL: the rows as TRL's trainers load them", ALL_KINDS, ("jsonl", "parquet"), _trl_row),
    Target("openrlhf", "OpenRLHF: messages throughout, the flags naming the fields in openrlhf.args", ALL_KINDS,
           ("jsonl", "parquet"), _openrlhf_row, args=_openrlhf_args),
    Target("verl", "verl: Parquet in verl's RL schema (prompts) or of its SFT data (messages)",
           ("prompt_only", "sft"), ("parquet",), _verl_row, schema=_verl_schema),
)}


def target_row(target: str, kind: str, record: Any, ctx: RowContext | None = None) -> dict[str, Any]:
    """The JSON object of ``record`` (a row of record kind ``kind``) as ``target`` writes it."""
    return TARGETS[target].row(kind, record, ctx or RowContext())


# -- the shape of a file's rows ------------------------------------------------------------------------------

TEXT_FIELDS = ("prompt", "chosen", "rejected", "completion", "messages", "text")


def _shape(row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((k, ("messages" if isinstance(v, list) else "string") if k in TEXT_FIELDS else "")
                 for k, v in row.items())


def _shape_check(row: Mapping[str, Any], first: tuple[tuple[str, str], ...], where: str) -> None:
    shape = _shape(row)
    if shape == first:
        return
    keys, first_keys = [k for k, _ in shape], [k for k, _ in first]
    if keys != first_keys:
        raise ValueError(f"{where}: fields {keys} differ from the first row's {first_keys}; a file holds one "
                         "shape of row")
    name = next(k for (k, f), (_, g) in zip(shape, first, strict=True) if f != g)
    raise ValueError(f"{where}: {name} is {dict(shape)[name]} where the first row's is {dict(first)[name]}; a "
                     "file holds one form of text")


def _arrow_type(name: str, value: Any) -> Any:
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    if name in TEXT_FIELDS:
        return pa.list_(message) if isinstance(value, list) else pa.string()
    fixed = {"margin": pa.float64(), "label": pa.bool_(), "completions": pa.list_(pa.string()),
             "labels": pa.list_(pa.bool_()), "answer": pa.string(), "tests": pa.list_(pa.string()),
             "input": pa.string(), "value": pa.list_(pa.string())}
    if name in fixed:
        return fixed[name]
    raise ValueError(f"{name}: no Parquet type for this field")


def arrow_schema(row: Mapping[str, Any]) -> Any:
    """The Arrow schema of a file of rows shaped like ``row``: texts as strings or lists of {role, content},
    the other fields by name (a margin is float64, a label bool, steps a list of strings)."""
    import pyarrow as pa

    # margin is nullable: a file of rows with margins may hold a row without one
    return pa.schema([(name, _arrow_type(name, value)) for name, value in row.items()])


def parquet_bytes(rows: Iterable[dict[str, Any]]) -> bytes:
    """Parquet of ``rows`` (JSON objects of one shape), its schema from the first row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(rows)
    if not rows:
        raise ValueError("Parquet needs at least one row for its schema")
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema(rows[0])), sink)
    return sink.getvalue()


# -- writing a folder ----------------------------------------------------------------------------------------


class _HashingSink(io.RawIOBase):
    """A file that hashes and counts the bytes written to it, for Parquet's writer."""

    def __init__(self, file: io.BufferedWriter) -> None:
        self.file, self.sha256, self.size = file, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.sha256.update(data)
        self.file.write(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.file.flush()


@dataclass(frozen=True, slots=True)
class FileWritten:
    name: str  # relative to the folder
    sha256: str
    size: int
    rows: int | None = None  # None for a file that is not data (README.md, openrlhf.args)


@dataclass(slots=True)
class SnapshotWritten:
    folder: Path
    target: str
    kind: str
    file_format: str
    files: dict[str, FileWritten] = field(default_factory=dict)

    @property
    def splits(self) -> dict[str, int]:
        """Rows per split, in the order written."""
        return {name.rsplit(".", 1)[0]: f.rows for name, f in self.files.items() if f.rows is not None}

    @property
    def rows(self) -> int:
        return sum(self.splits.values())


def _record(kind: str, row: Any, where: str) -> Any:
    cls = RECORD_KINDS[kind]
    if isinstance(row, Mapping):
        try:
            return cls.from_dict(row)
        except FieldError as exc:
            raise ValueError(f"{where}: {exc}") from exc
    if not isinstance(row, cls):
        raise TypeError(f"{where}: a {kind} snapshot holds {cls.__name__} rows, not {type(row).__name__}")
    return row


class _SplitWriter:
    """One split's file, written as rows come: JSON Lines a line at a time, Parquet a row group of
    ``batch_rows`` at a time; hashed as written."""

    def __init__(self, path: Path, file_format: str, schema: Any, batch_rows: int) -> None:
        self.path, self.file_format, self.schema, self.batch_rows = path, file_format, schema, batch_rows
        self.file = path.open("wb")
        self.sink = _HashingSink(self.file)
        self.batch: list[dict[str, Any]] = []
        self.rows = 0
        self.parquet = None

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        if self.file_format == "jsonl":
            # the line of writers.jsonl_bytes, byte for byte
            self.sink.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
            return
        self.batch.append(row)
        if len(self.batch) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.sink, self.schema)
        self.parquet.write_table(pa.Table.from_pylist(self.batch, schema=self.schema))
        self.batch = []

    def abort(self) -> None:
        """Close after a failure, removing the partial file."""
        try:
            if self.parquet is not None:
                self.parquet.close()
        except Exception:  # noqa: BLE001 - the failure being raised matters, not this one
            pass
        finally:
            self.file.close()
            self.path.unlink(missing_ok=True)

    def close(self) -> FileWritten:
        try:
            if self.file_format == "parquet" and (self.batch or self.parquet is None):
                self._flush()
            if self.parquet is not None:
                self.parquet.close()
        finally:
            self.file.close()
        return FileWritten(self.path.name, self.sink.sha256.hexdigest(), self.sink.size, self.rows)


def _small_file(folder: Path, name: str, text: str) -> FileWritten:
    body = text.encode()
    (folder / name).write_bytes(body)
    return FileWritten(name, hashlib.sha256(body).hexdigest(), len(body))


def _features(kind: str, target: str, first_row: Mapping[str, Any]) -> list[str]:
    """The card's ``dataset_info.features`` where a split's rows alone could not tell a column's type: TRL
    prompt-only rows, whose ``tests`` is an empty list in every row of a split of math problems (``datasets``
    would take it for a list of nulls and refuse to join the splits). Empty where inference is enough."""
    if kind != "prompt_only" or target != "trl" or set(first_row) != {"prompt", "answer", "tests"}:
        return []
    prompt = first_row["prompt"]
    if isinstance(prompt, str):
        prompt_lines = ["  - name: prompt", "    dtype: string"]
    elif all(isinstance(m, Mapping) and set(m) == {"role", "content"} for m in prompt):
        prompt_lines = ["  - name: prompt", "    list:", "    - name: role", "      dtype: string",
                        "    - name: content", "      dtype: string"]
    else:
        return []
    return ["dataset_info:", "  features:", *prompt_lines, "  - name: answer", "    dtype: string",
            "  - name: tests", "    list: string"]


def _card(result: SnapshotWritten, suffix: str, args: list[str] | None, features: list[str]) -> str:
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in result.splits:
        lines += [f"  - split: {split}", f"    path: {split}{suffix}"]
    lines += [*features, "---", "", f"# {result.kind} rows for {TARGETS[result.target].description.split(':')[0]}", ""]
    lines += [f"- {split}: {rows} rows" for split, rows in result.splits.items()]
    if args is not None:
        lines += ["", f"OpenRLHF ({OPENRLHF_MODULES[result.kind]}): `--dataset <this folder> "
                      f"{shlex.join(args)}` (the flags are in `openrlhf.args`)."]
    return "\n".join(lines) + "\n"


def snapshot_folder_write(folder: Path | str, rows: Iterable[Any] | Mapping[str, Iterable[Any]], *, kind: str,
                          target: str = "trl", file_format: str = "jsonl", data_source: str = "prefdata",
                          ability: str | None = None, batch_rows: int = 1000) -> SnapshotWritten:
    """Write the rows of record kind ``kind`` to ``folder`` for ``target`` in ``file_format``.

    ``rows`` is an iterable of records (or their dicts, checked with ``from_dict``), all of the train split,
    or a mapping of split names to such iterables. Each split becomes ``<split>.<suffix>``, written and
    hashed as its rows come (an empty split writes no file); then ``README.md`` (the configuration
    ``datasets.load_dataset(folder)`` reads) and, for OpenRLHF, ``openrlhf.args``. Returns each file's
    sha256, size and rows. ``data_source`` and ``ability`` fill verl's fields of the same names (the
    ability by default "code" for rows with tests and no answer, "math" for rows with an answer, else
    "general"); verl's and OpenRLHF's ground truth is the answer, else the tests as a JSON list.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}: one of {', '.join(TARGETS)}")
    spec = TARGETS[target]
    if kind not in spec.kinds:
        raise ValueError(f"{target} takes {', '.join(spec.kinds)} rows, not {kind}")
    if file_format not in spec.file_formats:
        raise ValueError(f"{target} reads {', '.join(spec.file_formats)} files, not {file_format}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    splits = rows if isinstance(rows, Mapping) else {"train": rows}
    result = SnapshotWritten(folder, target, kind, file_format)
    suffix = "." + file_format
    first_row: dict[str, Any] | None = None
    first_shape = None
    for split, split_rows in splits.items():
        if not split.isidentifier():
            raise ValueError(f"split {split!r}: expected a name of letters, digits and underscores")
        writer: _SplitWriter | None = None
        try:
            for index, row in enumerate(split_rows):
                where = f"{split} row {index}"
                ctx = RowContext(split=split, index=index, data_source=data_source, ability=ability)
                try:
                    out = spec.row(kind, _record(kind, row, where), ctx)
                except FieldError as exc:
                    raise ValueError(f"{where}: {exc}") from exc
                if first_shape is None:
                    first_row, first_shape = out, _shape(out)
                else:
                    _shape_check(out, first_shape, where)
                if writer is None:
                    schema = None
                    if file_format == "parquet":
                        schema = spec.schema(kind) if spec.schema else arrow_schema(first_row)
                    writer = _SplitWriter(folder / f"{split}{suffix}", file_format, schema, batch_rows)
                writer.add(out)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            written = writer.close()
            result.files[written.name] = written
    if first_row is None:
        raise ValueError("no rows to write")
    args = spec.args(kind, first_row) if spec.args else None
    if args is not None:
        result.files[f"{target}.args"] = _small_file(folder, f"{target}.args", shlex.join(args) + "\n")
    result.files["README.md"] = _small_file(folder, "README.md",
                                            _card(result, suffix, args, _features(kind, target, first_row)))
    return result
