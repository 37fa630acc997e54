"""Dataset snapshots: immutable exports with lineage (training jobs: training.jobs)."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import subprocess
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from annotate.job_lifecycle import JobContext, JobFailed, job_queue, job_run
from annotate.models import Membership, PairItem, PairLabel, Project, StepItem, StepLabel, Verdict
from annotate.quality import pair_item_verdicts
from annotate.selectors import pair_items_for_project
from judges.models import AIJudgment
from prefdata.records import PreferenceRow, PromptOnlyRow, SFTRow, UnpairedRow
from prefdata.stats import aggregate_verdicts
from prefdata.writers import EXPORT_FORMATS, dataset_bytes
from training.exporting import NO_FILTERS, RowsHead, Sources, pair_export
from training.filters import ExportFilters, filters_parse
from training.layouts import DEFAULT_LAYOUT, Layout, layout_parse, layout_write, prompt_groups
from training.models import DROP_REASONS, DatasetSnapshot, SnapshotJob
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
    return [DatasetSnapshot.Source.HUMAN, DatasetSnapshot.Source.AI, DatasetSnapshot.Source.BOTH,
            DatasetSnapshot.Source.SYNTHETIC]


def synthetic_rows(*, project: Project, fmt: str, jobs: Sequence[int] = ()) -> tuple[list[dict], list[dict]]:
    """The rows synthesis jobs decided themselves, and their lineage: SFT targets (a constitutional revision,
    the best of N) as prompt-completion rows; pairs whose preferred side the job chose (the revision over
    the original, best over worst by a scorer) as preference rows, or unpaired rows."""
    from synth.models import SyntheticRow

    if fmt == DatasetSnapshot.Format.SFT:
        rows = SyntheticRow.objects.filter(project=project, kind=SyntheticRow.Kind.SFT)
        rows = rows.filter(job_id__in=jobs) if jobs else rows
        out, lineage = [], []
        for row in rows.order_by("id").iterator(chunk_size=2000):
            out.append(SFTRow(prompt=row.messages, completion=[{"role": "assistant", "content": row.completion}])
                       .to_dict())
            lineage.append({"synthetic_row": row.pk, "prompt": row.prompt_id, "by": "synthesis",
                            "synthesis_jobs": [row.job_id], "depth": row.depth, "parents": row.parents})
        return out, lineage
    pairs = (SyntheticRow.objects.filter(project=project, kind=SyntheticRow.Kind.PAIR, pair_item__isnull=False,
                                         meta__has_key="chosen")
             .select_related("pair_item__prompt", "pair_item__completion_a", "pair_item__completion_b"))
    pairs = pairs.filter(job_id__in=jobs) if jobs else pairs
    rows, lineage = [], []
    for row in pairs.order_by("id").iterator(chunk_size=2000):
        item = row.pair_item
        chosen, rejected = item.completion_a, item.completion_b
        if row.meta.get("chosen") == rejected.pk:
            chosen, rejected = rejected, chosen
        elif row.meta.get("chosen") != chosen.pk:
            continue  # the chosen reply is not one of the pair's
        margin = row.meta.get("margin")
        rows.append(PreferenceRow(prompt=item.prompt.messages, chosen=[{"role": "assistant", "content": chosen.text}],
                                  rejected=[{"role": "assistant", "content": rejected.text}],
                                  margin=round(float(margin), 4) if isinstance(margin, int | float) else None)
                    .to_dict())
        lineage.append({"item": item.pk, "prompt": item.prompt_id, "chosen": chosen.pk, "rejected": rejected.pk,
                        "by": "synthesis", "synthesis_jobs": [row.job_id], "strategy": row.meta.get("strategy", ""),
                        "depth": row.depth})
    return _pair_rows_as(fmt, rows, lineage)


def problem_rows(*, project: Project, tags: Sequence[str] = ()) -> tuple[list[dict], list[dict]]:
    """The project's problems as prompt-only rows (GRPO, RLVR): the question, and the final answer or the
    tests (HumanEval's check function made one test that calls it); the lineage names each problem and its
    train / test mark."""
    from prefdata.verifiers.code import code_tests
    from synth.problems import problems_for_export

    rows, lineage = [], []
    for problem in problems_for_export(project=project, tags=tags):
        tests = code_tests(tests=problem["tests"], entry_point=problem["entry_point"]) if problem["tests"] else None
        # Every row with both fields ("" and [] where a problem has none): a file holds one shape of row, and
        # the reward functions take an empty reference for none.
        rows.append(PromptOnlyRow(problem["prompt"], problem["answer"] or "", tests or []).to_dict())
        lineage.append({"problem": problem["id"], "split": problem["split"], "tags": problem["tags"]})
    return rows, lineage


def _pair_rows_as(fmt: str, rows: list[dict], lineage: list[dict]) -> tuple[list[dict], list[dict]]:
    """Preference rows as the pairwise format asked for (the in-memory reference of the streamed export)."""
    if fmt == DatasetSnapshot.Format.UNPAIRED:
        unpaired = [UnpairedRow(row["prompt"], reply, good).to_dict()
                    for row in rows for reply, good in ((row["chosen"], True), (row["rejected"], False))]
        return unpaired, [entry for entry in lineage for _ in range(2)]
    if fmt == DatasetSnapshot.Format.SFT:
        return [SFTRow(messages=[*row["prompt"], *row["chosen"]]).to_dict() for row in rows], lineage
    return rows, lineage


def export_rows(*, project: Project, fmt: str, source: str, weighted: bool = False, neutral: str = "positive",
                dropped: Counter | None = None, filters: ExportFilters = NO_FILTERS) -> tuple[list[dict], list[dict]]:
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
        raise ValidationError({"source": "pairwise exports come from people or AI judges"})
    if fmt == DatasetSnapshot.Format.PROMPT_ONLY:
        return problem_rows(project=project, tags=filters.tags)
    if source == DatasetSnapshot.Source.SYNTHETIC:
        return synthetic_rows(project=project, fmt=fmt, jobs=filters.synthesis_jobs)
    rows, lineage = preference_rows(project=project, source=source, weighted=weighted, dropped=dropped)
    return _pair_rows_as(fmt, rows, lineage)


PREVIEW_ROWS = 5
# A manifest keeps each row's lineage up to this many rows; a larger snapshot's lineage is a JSON Lines file
# beside it (``lineage_file`` in the manifest): a million entries do not belong in one JSON field.
LINEAGE_INLINE_ROWS = 10_000
# A snapshot of more items than this is made by a worker (SnapshotJob) when asked from the page or the API.
SNAPSHOT_JOB_ITEMS = 20_000
PAIR_FORMATS = {name for name, spec in EXPORT_FORMATS.items() if spec.items == "pairs"}
STREAMED_FORMATS = {DatasetSnapshot.Format.PREFERENCE, DatasetSnapshot.Format.UNPAIRED, DatasetSnapshot.Format.SFT}


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What a snapshot of these options would hold, before it is created: its rows (``len(rows)``; a
    pairwise plan is streamed and keeps only the first rows and lineage entries, ``RowsHead``), the first
    lines of the file, its sha256, what the export rules left out (``dropped``: reason -> count,
    DROP_REASONS' keys), the items nobody labeled yet, and an existing snapshot of the project with the very
    same bytes. ``body`` holds the file's bytes for the formats built in memory (steps), None otherwise.
    ``sources``: who and what made the rows (pairwise exports)."""

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
    sources: dict | None = None

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


def _options(*, fmt: str, weighted: bool, neutral: str, both_bad: bool = False, filters: ExportFilters = NO_FILTERS,
             layout: Layout = DEFAULT_LAYOUT) -> dict:
    if fmt == DatasetSnapshot.Format.STEPWISE:
        options: dict = {"neutral": neutral}
    elif fmt in PAIR_FORMATS:
        options = {"weighted": weighted}
        if fmt == DatasetSnapshot.Format.UNPAIRED and both_bad:
            options["both_bad"] = True
    else:
        options = {"weighted": weighted}
    if filters:
        options["filters"] = filters.to_dict()
    if not layout.is_default:
        options["layout"] = layout.to_dict()
    return options


def _options_check(*, project: Project, source: str, fmt: str, filters: ExportFilters = NO_FILTERS) -> None:
    if source not in DatasetSnapshot.Source.values:
        raise ValidationError({"source": f"{source!r} is not one of {DatasetSnapshot.Source.values}"})
    if fmt not in DatasetSnapshot.Format.values:
        raise ValidationError({"format": f"{fmt!r} is not one of {DatasetSnapshot.Format.values}"})
    steps = project.task_kind == Project.TaskKind.STEPS
    if steps != (fmt in STEP_FORMATS):
        raise ValidationError({"format": f"{fmt!r} does not apply to a {project.get_task_kind_display()} project"})
    if fmt in PAIR_FORMATS and source == DatasetSnapshot.Source.AUTO:
        raise ValidationError({"source": "pairwise exports come from people or AI judges"})
    if filters and fmt not in PAIR_FORMATS:
        raise ValidationError({"filters": "filters apply to exports of pairwise projects"})
    if fmt == DatasetSnapshot.Format.PROMPT_ONLY:
        if source == DatasetSnapshot.Source.SYNTHETIC:
            raise ValidationError({"source": "prompt-only rows come from the problem bank"})
        if filters != ExportFilters(tags=filters.tags):
            raise ValidationError({"filters": "the problem bank is filtered by tag only"})
    elif filters.tags:
        raise ValidationError({"filters.tags": "tags filter the problems of a prompt-only snapshot"})
    if source == DatasetSnapshot.Source.SYNTHETIC:
        if fmt not in PAIR_FORMATS:
            raise ValidationError({"source": "synthesis jobs' rows are exported from pairwise projects"})
        if filters != ExportFilters(synthesis_jobs=filters.synthesis_jobs):
            raise ValidationError({"filters": "the rows of synthesis jobs are filtered by job only"})
    if project.pk in filters.projects:
        raise ValidationError({"filters.projects": "the snapshot's own project is always in it"})


def snapshot_projects(*, project: Project, filters: ExportFilters,
                      user: AbstractBaseUser | None = None) -> list[Project]:
    """The snapshot's project and the others its filters name, each pairwise; with ``user``, each one they
    may export from (a researcher of it). ValidationError naming ``filters.projects`` otherwise."""
    if not filters.projects:
        return [project]
    from annotate.selectors import project_list_for_user, project_role_for_user

    visible = project_list_for_user(user=user) if user is not None else Project.objects.all()
    others = {p.pk: p for p in visible.filter(pk__in=filters.projects)}
    for pk in filters.projects:
        other = others.get(pk)
        if other is None or (user is not None and project_role_for_user(project=other, user=user)
                             != Membership.Role.RESEARCHER):
            raise ValidationError({"filters.projects": f"no project {pk} you can export from (a researcher's "
                                                       f"right in each project is needed)"})
        if other.task_kind != project.task_kind:
            raise ValidationError({"filters.projects": f"project {other.name!r} is not a "
                                                       f"{project.get_task_kind_display()} project"})
    return [project, *(others[pk] for pk in filters.projects)]


def _identical(project: Project, digest: str) -> DatasetSnapshot | None:
    return DatasetSnapshot.objects.filter(project=project, sha256=digest).order_by("id").first()


def _names(model: Any, ids: set, fields: Sequence[str] = ("name",)) -> dict:
    return {row[0]: row[1:] for row in model.objects.filter(pk__in=ids).values_list("pk", *fields)}


def sources_manifest(sources: Sources) -> dict:
    """Who and what made the rows, for the manifest: annotators and reviewers by name, judges with their
    template and constitution versions and model, synthesis jobs and endpoints, each with its rows."""
    from django.contrib.auth import get_user_model

    from judges.models import Judge
    from synth.models import ModelEndpoint, SynthesisJob

    users = get_user_model()
    people = _names(users, set(sources.annotators) | set(sources.adjudicators), (users.USERNAME_FIELD,))
    judges = _names(Judge, {j for j, _, _ in sources.judges}, ("name", "endpoint__name"))
    jobs = _names(SynthesisJob, set(sources.synthesis_jobs), ("kind",))
    endpoints = _names(ModelEndpoint, set(sources.endpoints), ("name", "path"))
    return {
        "annotators": [{"id": pk, "username": people.get(pk, ("",))[0], "rows": n}
                       for pk, n in sorted(sources.annotators.items())],
        "adjudications": {"rows": sources.adjudicated,
                          "reviewers": [{"id": pk, "username": people.get(pk, ("",))[0], "rows": n}
                                        for pk, n in sorted(sources.adjudicators.items())]},
        "judges": [{"id": j, "name": judges.get(j, ("", ""))[0], "model": judges.get(j, ("", ""))[1],
                    "template_version": version, "constitution_version": constitution, "rows": n}
                   for (j, version, constitution), n in sorted(sources.judges.items(), key=lambda kv: (kv[0][0],
                                                                                                      kv[0][1]))],
        "synthesis_jobs": [{"id": pk, "kind": jobs.get(pk, ("",))[0], "rows": n}
                           for pk, n in sorted(sources.synthesis_jobs.items())],
        "endpoints": [{"id": pk, "name": endpoints.get(pk, ("", ""))[0], "model": endpoints.get(pk, ("", ""))[1],
                       "rows": n} for pk, n in sorted(sources.endpoints.items())],
        "synthetic_rows": sources.synthetic,
        "synthetic_share": round(sources.synthetic / sources.items, 4) if sources.items else 0.0,
        "max_depth": sources.max_depth,
    }


def synthetic_warnings(sources: dict | None) -> list[str]:
    """Model-collapse warnings of a snapshot's sources: a share of rows with a generated reply past
    SYNTHETIC_WARN_SHARE, replies generated from generated data past SYNTHETIC_WARN_DEPTH."""
    if not sources:
        return []
    warnings = []
    share, depth = sources.get("synthetic_share", 0.0), sources.get("max_depth", 0)
    if share > settings.SYNTHETIC_WARN_SHARE:
        warnings.append(f"{share:.0%} of the rows hold a generated reply, past the {settings.SYNTHETIC_WARN_SHARE:.0%} "
                        f"set (SYNTHETIC_WARN_SHARE): cap it with the synthetic share filter.")
    if depth > settings.SYNTHETIC_WARN_DEPTH:
        warnings.append(f"Replies generated from generated data, {depth} generations deep, past the "
                        f"{settings.SYNTHETIC_WARN_DEPTH} set (SYNTHETIC_WARN_DEPTH): models trained on their own "
                        f"output over generations lose the tails of the data.")
    return warnings


def snapshot_plan(*, project: Project, source: str = DatasetSnapshot.Source.HUMAN,
                  fmt: str = DatasetSnapshot.Format.PREFERENCE, weighted: bool = False,
                  neutral: str = "positive", both_bad: bool = False, filters: ExportFilters = NO_FILTERS,
                  layout: Layout = DEFAULT_LAYOUT, user: AbstractBaseUser | None = None) -> ExportPlan:
    """The snapshot these options would make, without writing anything (the preview and the API's dry run).

    A pairwise export is streamed (training.exporting): hashed and counted as it goes, keeping only the
    first rows, so a plan of a million rows takes the memory of a few. ValidationError (naming the field)
    for a source, format or filter that does not exist or does not fit the project's kind; no rows is not
    an error here (the preview says 0 rows and why)."""
    _options_check(project=project, source=source, fmt=fmt, filters=filters)
    counter: Counter = Counter()
    body, sources = None, None
    if fmt in STREAMED_FORMATS and source != DatasetSnapshot.Source.SYNTHETIC:
        projects = snapshot_projects(project=project, filters=filters, user=user)
        counted = Sources()
        with transaction.atomic():  # PostgreSQL's server-side cursors live in a transaction
            result = pair_export(projects=projects, source=source, fmt=fmt, weighted=weighted, filters=filters,
                                 both_bad=both_bad, dropped=counter, sources=counted, keep=PREVIEW_ROWS,
                                 keep_lineage=PREVIEW_ROWS)
        rows: Sequence[dict] = RowsHead([json.loads(line) for line in result.head], result.rows)
        lineage: Sequence[dict] = RowsHead(result.lineage, result.rows)
        lines, digest, count = [line[:-1] for line in result.head], result.sha256, result.rows
        sources = sources_manifest(counted)
    else:
        rows, lineage = export_rows(project=project, fmt=fmt, source=source, weighted=weighted, neutral=neutral,
                                    dropped=counter, filters=filters)
        body = dataset_bytes(rows, "jsonl")
        lines, digest, count = body.decode().splitlines()[:PREVIEW_ROWS], hashlib.sha256(body).hexdigest(), len(rows)
    return ExportPlan(project=project, fmt=fmt, source=source,
                      options=_options(fmt=fmt, weighted=weighted, neutral=neutral, both_bad=both_bad,
                                       filters=filters, layout=layout),
                      rows=rows, lineage=lineage, dropped={key: counter[key] for key in DROP_REASONS if counter[key]},
                      unlabeled=counter["unlabeled"], label_counts=_label_counts(project), lines=lines,
                      sha256=digest, identical=_identical(project, digest) if count else None, body=body,
                      sources=sources)


def _name_free(project: Project, name: str) -> str:
    """``name``, or with "-2", "-3"... when the project has a snapshot of that name."""
    taken = set(DatasetSnapshot.objects.filter(project=project, name__startswith=name).values_list("name", flat=True))
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


@functools.cache
def code_version() -> str:
    """The platform's version and, in a git checkout, its commit: what made a snapshot's bytes."""
    try:
        version = importlib.metadata.version("prefdata")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=settings.BASE_DIR, timeout=5,
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+{commit}" if commit else version


@transaction.atomic
def snapshot_create(*, project: Project, source: str = DatasetSnapshot.Source.HUMAN, name: str = "",
                    weighted: bool = False, fmt: str = DatasetSnapshot.Format.PREFERENCE,
                    neutral: str = "positive", both_bad: bool = False, filters: ExportFilters = NO_FILTERS,
                    layout: Layout = DEFAULT_LAYOUT, allow_duplicate: bool = True,
                    user: AbstractBaseUser | None = None,
                    progress: Callable[[int], None] | None = None) -> DatasetSnapshot:
    """Export the project's labels as an immutable JSONL file with a manifest and sha256.

    The manifest keeps the options (filters and layout included), the rows, what the export rules dropped
    and why, the project's label counts, who and what made the rows (``sources``: annotators, reviewers,
    judges and their versions, synthesis jobs and endpoints), the code version, who made it and when, and
    each row's lineage (over LINEAGE_INLINE_ROWS rows, in a JSON Lines file beside the snapshot that the
    manifest names). A layout other than TRL JSON Lines in one split is written as a folder beside the file
    (``training.layouts``). With ``allow_duplicate=False`` (the page and the API, unless the user confirms)
    a snapshot whose rows are byte for byte those of an existing snapshot of the project raises
    SnapshotIdentical naming it: the file is content-addressed, so a copy only adds a name.

    A pairwise export streams from the database to the file (training.exporting), in memory that does not
    grow with the rows; the step formats are built in memory. ``progress(rows)`` is called as it goes.
    """
    _options_check(project=project, source=source, fmt=fmt, filters=filters)
    if name and DatasetSnapshot.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"The project has a snapshot named {name!r} already."})
    projects = snapshot_projects(project=project, filters=filters, user=user) if fmt in PAIR_FORMATS else [project]
    folder = Path("snapshots") / f"project-{project.pk}"
    (settings.MEDIA_ROOT / folder).mkdir(parents=True, exist_ok=True)
    partial = settings.MEDIA_ROOT / folder / f".{uuid.uuid4().hex}.partial"
    lineage_partial = partial.with_suffix(".lineage")
    record = EXPORT_FORMATS[fmt].record
    layout_manifest: dict = {}
    made: list[Path] = []
    try:
        sources = None
        if fmt in STREAMED_FORMATS and source != DatasetSnapshot.Source.SYNTHETIC:
            counter: Counter = Counter()
            counted = Sources()
            result = pair_export(projects=projects, source=source, fmt=fmt, weighted=weighted, filters=filters,
                                 both_bad=both_bad, dropped=counter, sources=counted, path=partial,
                                 lineage_path=lineage_partial, keep_lineage=LINEAGE_INLINE_ROWS + 1,
                                 progress=progress)
            count, digest, lineage = result.rows, result.sha256, result.lineage
            lineage_sha256 = result.lineage_sha256
            dropped = {key: counter[key] for key in DROP_REASONS if counter[key]}
            unlabeled, label_counts = counter["unlabeled"], _label_counts(project)
            identical = _identical(project, digest) if count else None
            sources = sources_manifest(counted)
        else:
            plan = snapshot_plan(project=project, source=source, fmt=fmt, weighted=weighted, neutral=neutral,
                                 filters=filters)
            count, digest, lineage, identical = len(plan.rows), plan.sha256, list(plan.lineage), plan.identical
            dropped, unlabeled, label_counts = plan.dropped, plan.unlabeled, plan.label_counts
            partial.write_bytes(plan.body or b"")
            lineage_body = "".join(json.dumps(entry) + "\n" for entry in lineage).encode() \
                if count > LINEAGE_INLINE_ROWS else b""
            lineage_partial.write_bytes(lineage_body)
            lineage_sha256 = hashlib.sha256(lineage_body).hexdigest()
        if not count:
            raise ValidationError(f"Project {project.name!r} has no {source} labels to export as {fmt} yet.")
        if identical is not None and not allow_duplicate:
            raise SnapshotIdentical(identical)
        name = name or _name_free(project, f"{project.name[:150]}-{source}-{timezone.now():%Y%m%d-%H%M%S}-{digest[:8]}")
        relative = folder / f"{digest}.jsonl"
        # Content-addressed: the same content is the same file, and a file is never rewritten.
        if not (settings.MEDIA_ROOT / relative).exists():
            partial.rename(settings.MEDIA_ROOT / relative)
            made.append(settings.MEDIA_ROOT / relative)
        lineage_file = {}
        lineage_source: Sequence[dict] | Path | None = lineage
        if count > LINEAGE_INLINE_ROWS:
            lineage_relative = folder / f"{digest}.lineage-{lineage_sha256[:16]}.jsonl"
            if not (settings.MEDIA_ROOT / lineage_relative).exists():
                lineage_partial.rename(settings.MEDIA_ROOT / lineage_relative)
                made.append(settings.MEDIA_ROOT / lineage_relative)
            lineage, lineage_source = None, settings.MEDIA_ROOT / lineage_relative
            lineage_file = {"lineage_file": str(lineage_relative), "lineage_sha256": lineage_sha256}
        if not layout.is_default:
            layout_relative = folder / f"{digest}.{layout.key}"
            target_dir = settings.MEDIA_ROOT / layout_relative
            if target_dir.exists():  # the same rows in the same layout: the same files
                written = json.loads((target_dir / ".layout.json").read_text())
            else:
                staging = settings.MEDIA_ROOT / folder / f".{uuid.uuid4().hex}.layout"
                written = layout_write(source=settings.MEDIA_ROOT / relative, folder=staging, layout=layout,
                                       record=record or "", lineage=lineage_source,
                                       groups=prompt_groups(project_ids=[p.pk for p in projects]),
                                       data_source=project.name)
                (staging / ".layout.json").write_text(json.dumps(written))
                os.chmod(staging / ".layout.json", 0o444)
                staging.rename(target_dir)
                made.append(target_dir)
            layout_manifest = {"layout": layout.to_dict(), "folder": str(layout_relative), "files": written["files"],
                               "splits": {split: {**info, "file": str(layout_relative / info["file"]),
                                                  "sha256": written["files"][info["file"]]["sha256"]}
                                          for split, info in written["splits"].items()}}
        created_by = ({"id": user.pk, "username": user.get_username()}
                      if user is not None and user.is_authenticated else None)
        options = _options(fmt=fmt, weighted=weighted, neutral=neutral, both_bad=both_bad, filters=filters,
                           layout=layout)
        manifest = {"project": {"id": project.pk, "name": project.name, "task_kind": project.task_kind},
                    "projects": [{"id": p.pk, "name": p.name} for p in projects],
                    "format": fmt, "record": record, "source": source,
                    "options": options, "adjudications": "final",
                    "rows": count, "sha256": digest, "created_at": timezone.now().isoformat(),
                    "created_by": created_by, "code_version": code_version(), "dropped": dropped,
                    "unlabeled": unlabeled, "label_counts": label_counts,
                    **({"sources": sources, "warnings": synthetic_warnings(sources)} if sources is not None else {}),
                    **layout_manifest,
                    "lineage": lineage, **lineage_file}
        return DatasetSnapshot.objects.create(
            project=project, name=name, source=source, format=fmt, options=options, file=str(relative),
            manifest=manifest, sha256=digest, rows=count, dropped=dropped,
            created_by=user if created_by is not None else None)
    except BaseException:
        # Files this call made for a snapshot that is not stored (the transaction rolls back) go too.
        for path in made:
            if path.is_dir():
                for child in path.iterdir():
                    os.chmod(child, 0o644)
                    child.unlink()
                path.rmdir()
            elif not DatasetSnapshot.objects.filter(file=str(path.relative_to(settings.MEDIA_ROOT))).exists():
                path.unlink(missing_ok=True)
        raise
    finally:
        partial.unlink(missing_ok=True)
        lineage_partial.unlink(missing_ok=True)


def snapshot_manifest(*, snapshot: DatasetSnapshot) -> dict:
    """The manifest as a file offers it: the stored one with the snapshot's id, name and file name first
    (older snapshots lack the dropped reasons and label counts: they were not recorded then)."""
    return {"snapshot": {"id": snapshot.pk, "name": snapshot.name, "file": f"{snapshot.file_stem}.jsonl"},
            **snapshot.manifest, "dropped": snapshot.dropped}


def snapshot_path(*, snapshot: DatasetSnapshot) -> Path:
    return settings.MEDIA_ROOT / snapshot.file


def snapshot_options_parse(*, project: Project, data: dict, user: AbstractBaseUser | None = None) -> dict:
    """The options of a snapshot from what a page, the API, a command or a job was given: ``format``,
    ``source``, ``weighted``, ``neutral``, ``both_bad``, ``filters`` (training.filters) and ``layout``
    (training.layouts), checked against the project's kind; snapshot_create's and snapshot_plan's keyword
    arguments. ValidationError naming the field otherwise."""
    fmt = data.get("format") or formats_for_project(project=project)[0]
    source = data.get("source") or DatasetSnapshot.Source.HUMAN
    filters = filters_parse(data.get("filters"))
    _options_check(project=project, source=source, fmt=fmt, filters=filters)
    snapshot_projects(project=project, filters=filters, user=user)
    return {"fmt": fmt, "source": source, "weighted": bool(data.get("weighted")),
            "neutral": data.get("neutral") or "positive", "both_bad": bool(data.get("both_bad")),
            "filters": filters, "layout": layout_parse(data.get("layout"), record=EXPORT_FORMATS[fmt].record)}


def snapshot_items_count(*, project: Project, filters: ExportFilters = NO_FILTERS) -> int:
    """The items an export of the project (and the projects its filters add) reads: what decides whether a
    snapshot is made by a worker."""
    ids = [project.pk, *filters.projects]
    if project.task_kind == Project.TaskKind.STEPS:
        return StepItem.objects.filter(project_id__in=ids).count()
    return PairItem.objects.filter(project_id__in=ids).count()


def snapshot_job_create(*, project: Project, data: dict, name: str = "", allow_duplicate: bool = False,
                        user: AbstractBaseUser | None = None, start: bool = True) -> SnapshotJob:
    """A snapshot to be made by a worker (large exports), its options checked now (ValidationError naming
    the field) and stored as given; queued unless ``start`` is False."""
    snapshot_options_parse(project=project, data=data, user=user)
    if name and DatasetSnapshot.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"The project has a snapshot named {name!r} already."})
    params = {key: data[key] for key in ("format", "source", "weighted", "neutral", "both_bad", "filters", "layout")
              if data.get(key) not in (None, "", {}, [])}
    job = SnapshotJob.objects.create(project=project, params={**params, "name": name,
                                                              "allow_duplicate": allow_duplicate},
                                     created_by=user if user is not None and user.is_authenticated else None)
    if start:
        job_queue(job)
    return job


def snapshot_job_run(*, job_id: int) -> SnapshotJob | None:
    """Make the job's snapshot under its lease, its rows counted as progress; the snapshot and the job's end
    commit together, so a job stopped part-way leaves no snapshot and no file, and runs again from the start."""
    return job_run(model=SnapshotJob, job_id=job_id, work=_snapshot_work, related=("project", "created_by"))


def _snapshot_work(job: SnapshotJob, ctx: JobContext) -> None:
    params = dict(job.params)
    name, allow_duplicate = params.pop("name", ""), params.pop("allow_duplicate", False)
    options = snapshot_options_parse(project=job.project, data=params, user=job.created_by)
    total = snapshot_items_count(project=job.project, filters=options["filters"])
    if options["fmt"] == DatasetSnapshot.Format.UNPAIRED:
        total *= 2
    ctx.progress(0, total)

    def progress(rows: int) -> None:
        ctx.progress(min(rows, total), total)
        ctx.check()

    try:
        with transaction.atomic():
            snapshot = snapshot_create(project=job.project, name=name, allow_duplicate=allow_duplicate,
                                       user=job.created_by, progress=progress, **options)
            ctx.progress(total, total)
            ctx.finish(snapshot=snapshot)
    except (ValidationError, SnapshotIdentical) as exc:
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        raise JobFailed(message) from None
