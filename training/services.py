"""Dataset snapshots: immutable exports with lineage (training jobs: training.jobs)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from annotate.models import PairItem, PairLabel, Project, StepLabel, Verdict
from annotate.quality import pair_item_verdicts
from annotate.selectors import pair_items_for_project
from judges.models import AIJudgment
from prefdata.records import PreferenceRow
from prefdata.stats import aggregate_verdicts
from prefdata.writers import EXPORT_FORMATS, dataset_bytes
from training.exporting import RowsHead, preference_export
from training.models import DROP_REASONS, DatasetSnapshot
from training.step_exports import outcome_rows, prm800k_rows, stepwise_rows


def _human_verdicts(project: Project, weighted: bool) -> dict[int, dict]:
    """One verdict per item from people: an adjudication, else the majority of the labels."""
    labels: dict[int, list[int]] = defaultdict(list)
    for label_id, item_id in PairLabel.objects.filter(item__project=project).values_list("id", "item_id"):
        labels[item_id].append(label_id)
    return {item_id: {"verdict": agg.verdict, "margin": agg.margin, "labels": labels.get(item_id, [])}
            for item_id, agg in pair_item_verdicts(project=project, weighted=weighted).items()
            if agg.verdict is not None}


def _ai_verdicts(project: Project) -> dict[int, dict]:
    """One verdict per item from AI judgments: the same plurality rule as people's labels, with a
    margin from the agreeing judgments' mean probability."""
    judgments: dict[int, list[AIJudgment]] = defaultdict(list)
    for judgment in AIJudgment.objects.filter(item__project=project).order_by("id"):
        judgments[judgment.item_id].append(judgment)
    aggregates = aggregate_verdicts(labels=[(j.item_id, j.verdict, None) for js in judgments.values() for j in js])
    out = {}
    for item_id, aggregate in aggregates.items():
        if aggregate.verdict is None:
            continue
        agreeing = [j.probability for j in judgments[item_id] if j.verdict == aggregate.verdict]
        out[item_id] = {"verdict": aggregate.verdict, "judgments": [j.pk for j in judgments[item_id]],
                        "margin": abs(sum(agreeing) / len(agreeing) - 0.5) * 2}
    return out


def _pair_items_labeled(project: Project, source: str) -> set[int]:
    """The ids of the project's items (gold ones too) with a label or judgment of ``source``."""
    labeled: set[int] = set()
    if source in ("human", "both"):
        labeled.update(PairLabel.objects.filter(item__project=project).values_list("item_id", flat=True).distinct())
    if source in ("ai", "both"):
        labeled.update(AIJudgment.objects.filter(item__project=project).values_list("item_id", flat=True).distinct())
    return labeled


def preference_rows(*, project: Project, source: str, weighted: bool = False,
                    dropped: Counter | None = None) -> tuple[list[dict], list[dict]]:
    """TRL conversational preference rows and, row by row, where each came from.

    With ``dropped``, counts the items left out by reason: gold items, no majority (the top verdicts level),
    ties and both-bad verdicts (they say nothing about which to prefer); "unlabeled" for items nobody
    labeled yet."""
    human = _human_verdicts(project, weighted) if source in ("human", "both") else {}
    ai = _ai_verdicts(project) if source in ("ai", "both") else {}
    labeled = _pair_items_labeled(project, source) if dropped is not None else set()
    if dropped is not None:
        gold = labeled.intersection(PairItem.objects.filter(project=project, is_gold=True)
                                    .values_list("id", flat=True))
        if gold:
            dropped["gold"] += len(gold)
    rows, lineage = [], []
    for item in pair_items_for_project(project=project).filter(is_gold=False).order_by("id"):
        decided = human.get(item.pk) or ai.get(item.pk)
        if not decided or decided["verdict"] not in (Verdict.A, Verdict.B):
            if dropped is not None:
                if decided:
                    dropped["tie" if decided["verdict"] == Verdict.TIE else "both_bad"] += 1
                else:
                    dropped["no_majority" if item.pk in labeled else "unlabeled"] += 1
            continue  # ties and both-bad say nothing about which to prefer
        chosen, rejected = (item.completion_a, item.completion_b)
        if decided["verdict"] == Verdict.B:
            chosen, rejected = rejected, chosen
        rows.append(PreferenceRow(
            prompt=item.prompt.messages, chosen=[{"role": "assistant", "content": chosen.text}],
            rejected=[{"role": "assistant", "content": rejected.text}],
            margin=None if decided["margin"] is None else round(float(decided["margin"]), 4)).to_dict())
        lineage.append({"item": item.pk, "prompt": item.prompt_id, "chosen": chosen.pk, "rejected": rejected.pk,
                        "by": "human" if item.pk in human else "ai",
                        **{k: v for k, v in decided.items() if k in ("labels", "judgments")}})
    return rows, lineage


STEP_FORMATS = {name for name, spec in EXPORT_FORMATS.items() if spec.items == "steps"}


def formats_for_project(*, project: Project) -> list[str]:
    """The export formats that read the project's kind of items, in registry order."""
    items = "steps" if project.task_kind == Project.TaskKind.STEPS else "pairs"
    return [name for name, spec in EXPORT_FORMATS.items() if spec.items == items]


def sources_for_project(*, project: Project) -> list[str]:
    """The label sources an export of the project's kind can read."""
    if project.task_kind == Project.TaskKind.STEPS:
        return [DatasetSnapshot.Source.HUMAN, DatasetSnapshot.Source.AI, DatasetSnapshot.Source.AUTO]
    return [DatasetSnapshot.Source.HUMAN, DatasetSnapshot.Source.AI, DatasetSnapshot.Source.BOTH]


def export_rows(*, project: Project, fmt: str, source: str, weighted: bool = False, neutral: str = "positive",
                dropped: Counter | None = None) -> tuple[list[dict], list[dict]]:
    """The rows of an export and their lineage, for any format the project's kind supports; with
    ``dropped``, what the export's rules left out, counted by reason."""
    steps = project.task_kind == Project.TaskKind.STEPS
    if steps != (fmt in STEP_FORMATS):
        raise ValidationError({"format": f"{fmt!r} does not apply to a {project.get_task_kind_display()} project"})
    try:
        if fmt == DatasetSnapshot.Format.STEPWISE:
            return stepwise_rows(project=project, source=source, neutral=neutral, dropped=dropped)
        if fmt == DatasetSnapshot.Format.PRM800K:
            return prm800k_rows(project=project, source=None if source == "both" else source, dropped=dropped)
        if fmt == DatasetSnapshot.Format.OUTCOME:
            return outcome_rows(project=project, source=source, dropped=dropped)
    except ValueError as exc:
        raise ValidationError({"source": str(exc)}) from None
    if source == DatasetSnapshot.Source.AUTO:
        raise ValidationError({"source": "preference exports come from people or AI judges"})
    return preference_rows(project=project, source=source, weighted=weighted, dropped=dropped)


PREVIEW_ROWS = 5
# A manifest keeps each row's lineage up to this many rows; a larger snapshot's lineage is a JSON Lines file
# beside it (``lineage_file`` in the manifest): a million entries do not belong in one JSON field.
LINEAGE_INLINE_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What a snapshot of these options would hold, before it is created: its rows (``len(rows)``; a
    preference plan is streamed and keeps only the first rows and lineage entries, ``RowsHead``), the first
    lines of the file, its sha256, what the export rules left out (``dropped``: reason -> count,
    DROP_REASONS' keys), the items nobody labeled yet, and an existing snapshot of the project with the very
    same bytes. ``body`` holds the file's bytes for the formats built in memory (steps), None otherwise."""

    project: Project
    fmt: str
    source: str
    options: dict
    rows: Sequence[dict]
    lineage: Sequence[dict]
    dropped: dict[str, int]
    unlabeled: int
    label_counts: dict[str, int]
    lines: list[str]
    sha256: str
    identical: DatasetSnapshot | None
    body: bytes | None = None

    @property
    def preview(self) -> list[dict]:
        return list(self.rows[:PREVIEW_ROWS])

    @property
    def preview_lines(self) -> list[str]:
        """The first lines of the file, as they will be written."""
        return self.lines[:PREVIEW_ROWS]


class SnapshotIdentical(Exception):
    """A snapshot with the same rows exists in the project; create another only when asked to."""

    def __init__(self, existing: DatasetSnapshot):
        self.existing = existing
        super().__init__(f"identical to {existing.name} (sha256 {existing.sha256[:12]}): "
                         f"confirm to create another copy of the same rows")


def _label_counts(project: Project) -> dict[str, int]:
    """The project's labels by source when the export was made (gold items' too)."""
    if project.task_kind == Project.TaskKind.STEPS:
        counts = dict.fromkeys(StepLabel.Source.values, 0)
        counts.update(StepLabel.objects.filter(item__project=project).values_list("source")
                      .annotate(n=models.Count("id")).order_by())
        return counts
    return {"human": PairLabel.objects.filter(item__project=project).count(),
            "ai": AIJudgment.objects.filter(item__project=project).count()}


def _options(*, fmt: str, weighted: bool, neutral: str) -> dict:
    return {"neutral": neutral} if fmt == DatasetSnapshot.Format.STEPWISE else {"weighted": weighted}


def _options_check(*, project: Project, source: str, fmt: str) -> None:
    if source not in DatasetSnapshot.Source.values:
        raise ValidationError({"source": f"{source!r} is not one of {DatasetSnapshot.Source.values}"})
    if fmt not in DatasetSnapshot.Format.values:
        raise ValidationError({"format": f"{fmt!r} is not one of {DatasetSnapshot.Format.values}"})
    if fmt == DatasetSnapshot.Format.PREFERENCE:
        if project.task_kind == Project.TaskKind.STEPS:
            raise ValidationError({"format": f"{fmt!r} does not apply to a {project.get_task_kind_display()} project"})
        if source == DatasetSnapshot.Source.AUTO:
            raise ValidationError({"source": "preference exports come from people or AI judges"})


def _identical(project: Project, digest: str) -> DatasetSnapshot | None:
    return DatasetSnapshot.objects.filter(project=project, sha256=digest).order_by("id").first()


def snapshot_plan(*, project: Project, source: str = DatasetSnapshot.Source.HUMAN,
                  fmt: str = DatasetSnapshot.Format.PREFERENCE, weighted: bool = False,
                  neutral: str = "positive") -> ExportPlan:
    """The snapshot these options would make, without writing anything (the preview and the API's dry run).

    A preference export is streamed (training.exporting): hashed and counted as it goes, keeping only the
    first rows, so a plan of a million rows takes the memory of a few. ValidationError (naming the field)
    for a source or format that does not exist or does not fit the project's kind; no rows is not an error
    here (the preview says 0 rows and why)."""
    _options_check(project=project, source=source, fmt=fmt)
    counter: Counter = Counter()
    body = None
    if fmt == DatasetSnapshot.Format.PREFERENCE:
        with transaction.atomic():  # PostgreSQL's server-side cursors live in a transaction
            result = preference_export(project=project, source=source, weighted=weighted, dropped=counter,
                                       keep=PREVIEW_ROWS, keep_lineage=PREVIEW_ROWS)
        rows: Sequence[dict] = RowsHead([json.loads(line) for line in result.head], result.rows)
        lineage: Sequence[dict] = RowsHead(result.lineage, result.rows)
        lines, digest, count = [line[:-1] for line in result.head], result.sha256, result.rows
    else:
        rows, lineage = export_rows(project=project, fmt=fmt, source=source, weighted=weighted, neutral=neutral,
                                    dropped=counter)
        body = dataset_bytes(rows, "jsonl")
        lines, digest, count = body.decode().splitlines()[:PREVIEW_ROWS], hashlib.sha256(body).hexdigest(), len(rows)
    return ExportPlan(project=project, fmt=fmt, source=source,
                      options=_options(fmt=fmt, weighted=weighted, neutral=neutral), rows=rows, lineage=lineage,
                      dropped={key: counter[key] for key in DROP_REASONS if counter[key]},
                      unlabeled=counter["unlabeled"], label_counts=_label_counts(project), lines=lines,
                      sha256=digest, identical=_identical(project, digest) if count else None, body=body)


def _name_free(project: Project, name: str) -> str:
    """``name``, or with "-2", "-3"... when the project has a snapshot of that name."""
    taken = set(DatasetSnapshot.objects.filter(project=project, name__startswith=name).values_list("name", flat=True))
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


@transaction.atomic
def snapshot_create(*, project: Project, source: str = DatasetSnapshot.Source.HUMAN, name: str = "",
                    weighted: bool = False, fmt: str = DatasetSnapshot.Format.PREFERENCE,
                    neutral: str = "positive", allow_duplicate: bool = True,
                    user: AbstractBaseUser | None = None) -> DatasetSnapshot:
    """Export the project's labels as an immutable JSONL file with a manifest and sha256.

    The manifest keeps the options, the rows, what the export rules dropped and why, the project's label
    counts, who made it and when, and each row's lineage (over LINEAGE_INLINE_ROWS rows, in a JSON Lines file
    beside the snapshot that the manifest names). With ``allow_duplicate=False`` (the page and the API,
    unless the user confirms) a snapshot whose rows are byte for byte those of an existing snapshot of the
    project raises SnapshotIdentical naming it: the file is content-addressed, so a copy only adds a name.

    A preference export streams from the database to the file (training.exporting), in memory that does not
    grow with the rows; the step formats are built in memory.
    """
    _options_check(project=project, source=source, fmt=fmt)
    if name and DatasetSnapshot.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"The project has a snapshot named {name!r} already."})
    folder = Path("snapshots") / f"project-{project.pk}"
    (settings.MEDIA_ROOT / folder).mkdir(parents=True, exist_ok=True)
    partial = settings.MEDIA_ROOT / folder / f".{uuid.uuid4().hex}.partial"
    lineage_partial = partial.with_suffix(".lineage")
    try:
        if fmt == DatasetSnapshot.Format.PREFERENCE:
            counter: Counter = Counter()
            result = preference_export(project=project, source=source, weighted=weighted, dropped=counter,
                                       path=partial, lineage_path=lineage_partial,
                                       keep_lineage=LINEAGE_INLINE_ROWS + 1)
            count, digest, lineage = result.rows, result.sha256, result.lineage
            dropped = {key: counter[key] for key in DROP_REASONS if counter[key]}
            unlabeled, label_counts = counter["unlabeled"], _label_counts(project)
            identical = _identical(project, digest) if count else None
        else:
            plan = snapshot_plan(project=project, source=source, fmt=fmt, weighted=weighted, neutral=neutral)
            count, digest, lineage, identical = len(plan.rows), plan.sha256, list(plan.lineage), plan.identical
            dropped, unlabeled, label_counts = plan.dropped, plan.unlabeled, plan.label_counts
            partial.write_bytes(plan.body or b"")
        if not count:
            raise ValidationError(f"Project {project.name!r} has no {source} labels to export as {fmt} yet.")
        if identical is not None and not allow_duplicate:
            raise SnapshotIdentical(identical)
        name = name or _name_free(project, f"{project.name[:150]}-{source}-{timezone.now():%Y%m%d-%H%M%S}-{digest[:8]}")
        relative = folder / f"{digest}.jsonl"
        # Content-addressed: the same content is the same file, and a file is never rewritten.
        if not (settings.MEDIA_ROOT / relative).exists():
            partial.rename(settings.MEDIA_ROOT / relative)
        lineage_file = {}
        if count > LINEAGE_INLINE_ROWS:
            lineage_relative = folder / f"{digest}.lineage-{result.lineage_sha256[:16]}.jsonl"
            if not (settings.MEDIA_ROOT / lineage_relative).exists():
                lineage_partial.rename(settings.MEDIA_ROOT / lineage_relative)
            lineage = None
            lineage_file = {"lineage_file": str(lineage_relative), "lineage_sha256": result.lineage_sha256}
    finally:
        partial.unlink(missing_ok=True)
        lineage_partial.unlink(missing_ok=True)
    created_by = ({"id": user.pk, "username": user.get_username()}
                  if user is not None and user.is_authenticated else None)
    options = _options(fmt=fmt, weighted=weighted, neutral=neutral)
    manifest = {"project": {"id": project.pk, "name": project.name, "task_kind": project.task_kind},
                "format": fmt, "record": EXPORT_FORMATS[fmt].record, "source": source,
                "options": options, "adjudications": "final",
                "rows": count, "sha256": digest, "created_at": timezone.now().isoformat(),
                "created_by": created_by, "dropped": dropped, "unlabeled": unlabeled,
                "label_counts": label_counts, "lineage": lineage, **lineage_file}
    return DatasetSnapshot.objects.create(
        project=project, name=name, source=source, format=fmt, options=options, file=str(relative),
        manifest=manifest, sha256=digest, rows=count, dropped=dropped,
        created_by=user if created_by is not None else None)


def snapshot_manifest(*, snapshot: DatasetSnapshot) -> dict:
    """The manifest as a file offers it: the stored one with the snapshot's id, name and file name first
    (older snapshots lack the dropped reasons and label counts: they were not recorded then)."""
    return {"snapshot": {"id": snapshot.pk, "name": snapshot.name, "file": f"{snapshot.file_stem}.jsonl"},
            **snapshot.manifest, "dropped": snapshot.dropped}


def snapshot_path(*, snapshot: DatasetSnapshot) -> Path:
    return settings.MEDIA_ROOT / snapshot.file
