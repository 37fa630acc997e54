"""A snapshot's layout for its trainer: the target (TRL, OpenRLHF, verl), the file format and the
train / test split, written as a ``datasets.load_dataset``-ready folder beside the snapshot's file.

The snapshot's own file (``DatasetSnapshot.file``, TRL JSON Lines, every row) stays what the snapshot
*is*: its sha256 is the snapshot's identity. A layout is a view of those rows for one trainer, made from
that file as it is read back (``prefdata.targets.snapshot_folder_write``, streaming, one pass per split),
so it never holds more than a row group in memory; each of its files is hashed in the manifest
(``layout``, ``files``, ``splits``) and made read-only like the snapshot's file.

Splits (``prefdata.splits.SplitSpec``) are decided by a hash of the prompt's user turns, or of its
paraphrase group when the prompt's metadata names one (``group``, ``paraphrase_group``, ``group_id``), and
the seed: no prompt, and no known paraphrase group, is in two splits, and the same seed gives the same
split.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError

from prefdata.splits import GROUP_KEYS, SplitSpec
from prefdata.targets import TARGETS, snapshot_folder_write

DEFAULT_TARGET, DEFAULT_FILE_FORMAT = "trl", "jsonl"


@dataclass(frozen=True, slots=True)
class Layout:
    target: str = DEFAULT_TARGET
    file_format: str = DEFAULT_FILE_FORMAT
    split: SplitSpec | None = None
    marked: bool = False  # split by each row's own mark (a problem's train / test), not by a hash

    @property
    def is_default(self) -> bool:
        """The snapshot's own file is all it needs (TRL JSON Lines, one split)."""
        return (self.target == DEFAULT_TARGET and self.file_format == DEFAULT_FILE_FORMAT and self.split is None
                and not self.marked)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "file_format": self.file_format,
                "split": "marked" if self.marked else None if self.split is None else self.split.to_dict()}

    @property
    def key(self) -> str:
        """A short hash naming the folder of this layout of a snapshot's rows."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


DEFAULT_LAYOUT = Layout()


def layout_parse(data: Mapping[str, Any] | None, *, record: str | None) -> Layout:
    """The layout of ``data`` (``target``, ``file_format``, ``split``: ``{"train": 0.9, "test": 0.1}`` or
    ``{"proportions": {...}, "seed": 0}``, or a test share such as 0.1) for rows of record kind ``record``;
    ValidationError naming ``layout.<field>`` when it does not fit."""
    data = dict(data or {})
    unknown = sorted(set(data) - {"target", "file_format", "split", "seed"})
    if unknown:
        raise ValidationError({"layout": f"unknown layout field {unknown[0]!r}: target, file_format, split, seed"})
    target = data.get("target") or DEFAULT_TARGET
    if target not in TARGETS:
        raise ValidationError({"layout.target": f"{target!r} is not one of {', '.join(TARGETS)}"})
    spec = TARGETS[target]
    file_format = data.get("file_format") or spec.file_formats[0]
    if file_format not in spec.file_formats:
        raise ValidationError({"layout.file_format": f"{spec.name} reads {', '.join(spec.file_formats)}, "
                                                     f"not {file_format!r}"})
    if (target, file_format) != (DEFAULT_TARGET, DEFAULT_FILE_FORMAT) or data.get("split"):
        if record is None:
            raise ValidationError({"layout.target": "this format has no record type a trainer reads: "
                                                    "it is written as it is (TRL JSON Lines)"})
        if record not in spec.kinds:
            raise ValidationError({"layout.target": f"{spec.name} takes {', '.join(spec.kinds)} rows, "
                                                    f"not {record} rows"})
    split = data.get("split")
    seed = data.get("seed", 0)
    spec_split = None
    if split == "marked":
        if record != "prompt_only":
            raise ValidationError({"layout.split": "only problems carry their own train / test marks"})
        return Layout(target=target, file_format=file_format, marked=True)
    if split not in (None, "", 0, {}):
        if isinstance(split, int | float) and not isinstance(split, bool):
            proportions: Any = {"train": round(1 - float(split), 6), "test": float(split)}
        elif isinstance(split, Mapping) and "proportions" in split:
            proportions, seed = split["proportions"], split.get("seed", seed)
        else:
            proportions = split
        if not isinstance(proportions, Mapping):
            raise ValidationError({"layout.split": f"expected shares such as {{'train': 0.9, 'test': 0.1}}, "
                                                   f"got {split!r}"})
        if isinstance(seed, bool) or not isinstance(seed, int | str):
            raise ValidationError({"layout.seed": f"expected a whole number or a word, got {seed!r}"})
        try:
            spec_split = SplitSpec(proportions={str(k): v for k, v in proportions.items()}, seed=seed)
        except ValueError as exc:
            raise ValidationError({"layout.split": str(exc)}) from None
        if any(not name.isidentifier() for name in spec_split.proportions):
            raise ValidationError({"layout.split": "a split's name is letters, digits and underscores"})
    return Layout(target=target, file_format=file_format, split=spec_split)


def _rows(path: Path) -> Iterator[dict]:
    with path.open("rb") as handle:
        for line in handle:
            yield json.loads(line)


def _contexts(lineage: Sequence[dict] | Path | None, groups: Mapping[int, str]) -> Iterator[dict | None]:
    """Each row's split context: its prompt's paraphrase group, when the prompt's metadata names one."""
    if lineage is None:
        while True:
            yield None
    entries = _rows(lineage) if isinstance(lineage, Path) else iter(lineage)
    for entry in entries:
        group = groups.get(entry.get("prompt")) if isinstance(entry, dict) else None
        yield {"group": group} if group is not None else None


def _split_rows(path: Path, layout: Layout, name: str, lineage: Sequence[dict] | Path | None,
                groups: Mapping[int, str]) -> Iterator[dict]:
    assert layout.split is not None
    for row, context in zip(_rows(path), _contexts(lineage, groups), strict=False):
        if layout.split.assign(row, context) == name:
            yield row


def _entries(lineage: Sequence[dict] | Path | None) -> Iterator[dict]:
    if lineage is None:
        return iter(())
    return _rows(lineage) if isinstance(lineage, Path) else iter(lineage)


def _marked_rows(path: Path, name: str, lineage: Sequence[dict] | Path | None) -> Iterator[dict]:
    for row, entry in zip(_rows(path), _entries(lineage), strict=True):
        if (entry.get("split") or "train") == name:
            yield row


def layout_write(*, source: Path, folder: Path, layout: Layout, record: str, lineage: Sequence[dict] | Path | None,
                 groups: Mapping[int, str], data_source: str) -> dict[str, Any]:
    """Write ``layout`` of the rows in ``source`` (the snapshot's JSON Lines) into ``folder``; the
    manifest's account of it: each file's sha256, size and rows, and each split's file and rows. A folder
    half written is removed on failure; the files are made read-only."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if layout.marked:
            names = sorted({entry.get("split") or "train" for entry in _entries(lineage)})
            rows: Any = {name: _marked_rows(source, name, lineage) for name in names}
        elif layout.split is None:
            rows = _rows(source)
        else:
            rows = {name: _split_rows(source, layout, name, lineage, groups) for name in layout.split.proportions}
        written = snapshot_folder_write(folder, rows, kind=record, target=layout.target,
                                        file_format=layout.file_format, data_source=data_source)
    except BaseException:
        for child in folder.glob("*"):
            child.unlink(missing_ok=True)
        folder.rmdir()
        raise
    for child in folder.iterdir():
        os.chmod(child, 0o444)
    files = {name: {"sha256": f.sha256, "size": f.size, **({"rows": f.rows} if f.rows is not None else {})}
             for name, f in written.files.items()}
    return {"files": files, "splits": {split: {"file": f"{split}.{layout.file_format}", "rows": rows}
                                       for split, rows in written.splits.items()}}


def prompt_groups(*, project_ids: Sequence[int]) -> dict[int, str]:
    """The paraphrase group of each of the projects' prompts whose metadata names one."""
    from annotate.models import Prompt

    out: dict[int, str] = {}
    prompts = Prompt.objects.filter(project_id__in=project_ids, metadata__has_any_keys=list(GROUP_KEYS))
    for prompt_id, metadata in prompts.values_list("id", "metadata").iterator(chunk_size=5000):
        for key in GROUP_KEYS:
            value = (metadata or {}).get(key)
            if value not in (None, ""):
                out[prompt_id] = str(value)
                break
    return out
