"""The diff of two snapshots of a project: their files and manifests through ``prefdata.diff``, with what
the database says about the ids of their lineage (who gave each label and when, each AI judgment's judge
and version, each item's adjudication)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from annotate.models import PairItem, PairLabel, Project, StepItem, StepLabel
from judges.models import AIJudgment
from prefdata.diff import DiffFacts, manifest_changes, rows_diff
from training.models import DatasetSnapshot, SnapshotFileAltered, file_sha256

DIFF_LIMIT = 100  # entries listed per status; the counts are always complete
_CHUNK = 500  # ids per query (SQLite's limit on a statement's parameters)


def _json_lines(path: Path) -> Iterator[dict]:
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def snapshot_rows(*, snapshot: DatasetSnapshot) -> Iterator[dict]:
    """The rows of a snapshot's file, one at a time (JSON Lines, gzip recognised by its magic bytes), once
    the file is checked against its sha256 (``SnapshotFileAltered`` if it is not the snapshot's)."""
    return _json_lines(snapshot.file_verify())


def snapshot_lineage(*, snapshot: DatasetSnapshot) -> Iterator[dict]:
    """Each row's lineage, in row order: the manifest's ``lineage``, or for a large snapshot the JSON Lines
    file it names (``lineage_file``), checked against its ``lineage_sha256`` first."""
    manifest = snapshot.manifest
    if manifest.get("lineage_file"):
        path = Path(settings.MEDIA_ROOT) / manifest["lineage_file"]
        try:
            sha256 = file_sha256(path)
        except FileNotFoundError:
            raise SnapshotFileAltered(f"The lineage file of snapshot {snapshot.name!r} is missing.") from None
        if manifest.get("lineage_sha256") and sha256 != manifest["lineage_sha256"]:
            raise SnapshotFileAltered(f"The lineage file of snapshot {snapshot.name!r} was altered after it was made.")
        return _json_lines(path)
    return iter(manifest.get("lineage") or ())


def _chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    ids = sorted({i for i in ids if isinstance(i, int)})
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def _lineage_ids(lineage: Iterable[dict]) -> dict[str, set[int]]:
    """The ids the lineage names: items, labels, judgments."""
    ids: dict[str, set[int]] = {"items": set(), "labels": set(), "judgments": set()}
    for entry in lineage:
        ids["labels"].update(entry.get("labels") or ())
        ids["judgments"].update(entry.get("judgments") or ())
        for key, kind in (("label", "labels"), ("item", "items")):
            if entry.get(key) is not None:
                ids[kind].add(entry[key])
    return ids


def diff_facts(*, project: Project, lineages: Iterable[Callable[[], Iterable[dict]]], a: DatasetSnapshot,
               b: DatasetSnapshot) -> DiffFacts:
    """The facts behind the ids the lineages name (each read once, streamed), kept to the project's rows."""
    ids: dict[str, set[int]] = {"items": set(), "labels": set(), "judgments": set()}
    for lineage in lineages:
        for kind, found in _lineage_ids(lineage()).items():
            ids[kind] |= found
    steps = project.task_kind == Project.TaskKind.STEPS
    label_model, item_model = (StepLabel, StepItem) if steps else (PairLabel, PairItem)
    labels: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(ids["labels"]):
        for row in label_model.objects.filter(pk__in=chunk, item__project=project).values(
                "id", "annotator__username", "created_at", "updated_at"):
            labels[row["id"]] = {"annotator": row["annotator__username"], "created_at": row["created_at"],
                                 "updated_at": row["updated_at"]}
    judgments: dict[int, dict[str, Any]] = {}
    if not steps:
        for chunk in _chunks(ids["judgments"]):
            for row in AIJudgment.objects.filter(pk__in=chunk, item__project=project).values(
                    "id", "judge__name", "template_version", "created_at"):
                judgments[row["id"]] = {"judge": row["judge__name"], "version": row["template_version"],
                                        "created_at": row["created_at"]}
    items: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(ids["items"]):
        for row in item_model.objects.filter(pk__in=chunk, project=project).exclude(
                adjudicated_at=None).values("id", "adjudicated_by__username", "adjudicated_at"):
            items[row["id"]] = {"adjudicated_by": row["adjudicated_by__username"],
                                "adjudicated_at": row["adjudicated_at"]}
    return DiffFacts(labels=labels, judgments=judgments, items=items, a_created=a.created_at,
                     b_created=b.created_at)


def _identity(snapshot: DatasetSnapshot) -> dict[str, Any]:
    return {"id": snapshot.pk, "name": snapshot.name, "sha256": snapshot.sha256, "rows": snapshot.rows,
            "created_at": snapshot.created_at.isoformat()}


def snapshot_diff(*, a: DatasetSnapshot, b: DatasetSnapshot, limit: int = DIFF_LIMIT) -> dict[str, Any]:
    """What changed from snapshot a to snapshot b of one project, row by row, and why.

    ``{"a", "b", "snapshot_changes", "counts", "reasons", "truncated", "added", "removed", "flipped",
    "changed"}``: ``counts`` of every status (``unchanged`` too), ``reasons`` counted by kind
    (``prefdata.diff.REASON_KINDS``), up to ``limit`` rows of each status with their reasons.
    ValidationError for snapshots of two projects; SnapshotFileAltered for a file that is not its
    snapshot's."""
    if a.project_id != b.project_id:
        raise ValidationError("The two snapshots belong to different projects.")
    facts = diff_facts(project=a.project, a=a, b=b, lineages=[lambda: snapshot_lineage(snapshot=a),
                                                                 lambda: snapshot_lineage(snapshot=b)])
    diff = rows_diff(snapshot_rows(snapshot=a), snapshot_rows(snapshot=b), lineage_a=snapshot_lineage(snapshot=a),
                     lineage_b=snapshot_lineage(snapshot=b), facts=facts, limit=limit)
    return {"a": _identity(a), "b": _identity(b), "snapshot_changes": manifest_changes(a.manifest, b.manifest),
            **diff.to_dict()}
