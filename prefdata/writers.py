"""Writers of the export formats: what each writes, how a row is encoded, and the files they make.

An export format names the items it reads ("pairs" or "steps"), the record kind of its rows (a key of
``records.RECORD_KINDS``; None for a row of its own, such as PRM800K's) and how one row becomes a JSON
object. A file format turns the rows into a file's bytes: JSON Lines, the layout TRL's
``datasets.load_dataset("json", ...)`` reads, and Parquet (pyarrow, the schema from the first row). The
layouts of other trainers (OpenRLHF, verl) and the streaming writer of a snapshot's folder are
``prefdata.targets.TARGETS`` and ``snapshot_folder_write``.

The bytes are part of a snapshot's identity (its sha256): a row's keys keep their order, and the JSON
Lines serialiser must stay ``json.dumps(row, ensure_ascii=False) + "\\n"`` per row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prefdata.records import GAVE_UP, RECORD_KINDS


def _to_dict(row: Any) -> dict[str, Any]:
    return row.to_dict()


def _as_is(row: dict[str, Any]) -> dict[str, Any]:
    return row


@dataclass(frozen=True, slots=True)
class ExportFormat:
    name: str
    description: str
    items: str  # the kind of project items it reads: "pairs" or "steps"
    record: str | None  # the record kind of its rows (RECORD_KINDS), None for a row shape of its own
    encode: Callable[[Any], dict[str, Any]]  # one row (a record, or the dict of a row of its own) to JSON


EXPORT_FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("preference", "Preference (prompt, chosen, rejected)", "pairs", "preference", _to_dict),
    ExportFormat("stepwise", "TRL stepwise supervision (prompt, completions, labels)", "steps", "stepwise", _to_dict),
    ExportFormat("prm800k", "PRM800K-like, every rating kept", "steps", None, _as_is),
    ExportFormat("outcome", "Outcome (prompt, completion, label)", "steps", "unpaired", _to_dict),
    ExportFormat("unpaired", "KTO unpaired (prompt, completion, label): both replies of each pair", "pairs",
                 "unpaired", _to_dict),
    ExportFormat("sft", "SFT (messages): the prompt with the chosen reply", "pairs", "sft", _to_dict),
    ExportFormat("prompt_only", "Prompt-only (prompt, answer or tests): the problem bank, for GRPO and RLVR",
                 "pairs", "prompt_only", _to_dict),
)}


def rows_encode(fmt: str, rows: Iterable[Any]) -> list[dict[str, Any]]:
    """The JSON objects of ``rows`` in export format ``fmt`` (checked against its record kind)."""
    spec = EXPORT_FORMATS[fmt]
    kind = RECORD_KINDS[spec.record] if spec.record is not None else dict
    encoded = []
    for i, row in enumerate(rows):
        if not isinstance(row, kind):
            raise TypeError(f"row {i}: a {fmt} export writes {kind.__name__} rows, not {type(row).__name__}")
        encoded.append(spec.encode(row))
    return encoded


# -- file formats -------------------------------------------------------------------------------------------


def jsonl_bytes(rows: Iterable[dict[str, Any]]) -> bytes:
    """JSON Lines: one object a line, UTF-8, non-ASCII characters as they are."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


@dataclass(frozen=True, slots=True)
class FileFormat:
    name: str
    suffix: str
    serialise: Callable[[Iterable[dict[str, Any]]], bytes]


def parquet_bytes(rows: Iterable[dict[str, Any]]) -> bytes:
    """Parquet (pyarrow imported only here): see ``prefdata.targets.parquet_bytes``."""
    from prefdata.targets import parquet_bytes as write

    return write(rows)


FILE_FORMATS: dict[str, FileFormat] = {f.name: f for f in (
    FileFormat("jsonl", ".jsonl", jsonl_bytes),
    FileFormat("parquet", ".parquet", parquet_bytes),
)}


def dataset_bytes(rows: Iterable[dict[str, Any]], file_format: str = "jsonl") -> bytes:
    """The bytes of a dataset file of ``rows`` (JSON objects, as ``rows_encode`` gives them)."""
    return FILE_FORMATS[file_format].serialise(rows)


# -- PRM800K-like rows ----------------------------------------------------------------------------------------

# PRM800K spells one finish reason differently.
PRM800K_FINISH_REASON = {GAVE_UP: "give_up"}


def prm800k_row(*, problem: str, steps: Sequence[str], ratings: Sequence[int | None], labeler: object, source: str,
                source_name: str, finish_reason: str, outcome: str, reference_answer: str = "",
                ground_truth_solution: str = "", flags: Iterable[int] = (), total_time: int | None = None) -> dict:
    """One label of a solution as a PRM800K row (OpenAI's ``label.steps[].completions[]`` layout), every
    rating kept: each step is one completion ``{text, rating, flagged}``; ``label.steps`` runs to the last
    rated step, as PRM800K's stop where labeling stopped, and ``question.pre_generated_steps`` holds all."""
    flagged = set(flags)
    # PRM800K's label.steps are the steps a labeler saw: up to the last one rated.
    last = max((i for i, r in enumerate(ratings) if r is not None), default=-1)
    label_steps = []
    for i in range(last + 1):
        # chosen_completion is null where the trajectory was not continued: the last step, when wrong.
        chosen = None if ratings[i] is None or (i == last and ratings[i] == -1) else 0
        label_steps.append({"completions": [{"text": steps[i], "rating": ratings[i], "flagged": i in flagged}],
                            "human_completion": None, "chosen_completion": chosen})
    return {"labeler": labeler, "label_source": source, "source_name": source_name,
            "question": {"problem": problem, "ground_truth_answer": reference_answer,
                         "ground_truth_solution": ground_truth_solution, "pre_generated_steps": list(steps)},
            "label": {"steps": label_steps, "total_time": total_time,
                      "finish_reason": PRM800K_FINISH_REASON.get(finish_reason, finish_reason)},
            "outcome": outcome or None}
