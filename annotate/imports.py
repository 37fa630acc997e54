"""Import jobs: an uploaded file is stored, then imported by a worker with progress.

The import runs in one transaction (all or nothing) that also marks the job done, so an import is
committed once or not at all, whatever happens to its worker; its progress, which other connections
cannot see inside that transaction, is written by the job's heartbeat (``annotate.job_lifecycle``).

A job keeps the choices made for it (``options``: ``IMPORT_OPTIONS``) and, once done, what it read and
left aside (``summary``). The uploaded file of a successful import is kept (lineage); that of a failed or
cancelled one is kept ``IMPORT_KEEP_FAILED_DAYS`` days, while it can be retried, then removed by
``import_files_cleanup``, which each worker runs with its check for stopped jobs and each new import
job runs too (a file refused with the setting at 0 is removed at once).

A file can be previewed before it is queued (``import_preview_store``, ``import_preview_read``): its first
rows are read at once, with the detected format, the columns and a column mapping (``ImportJob.mapping``,
``prefdata.readers.mapped``) checked over them, so an unmapped field, a missing column or a gold value that
maps to nothing is refused before any job exists (``ImportRefused``). A preview's file is kept beside the
imports' (``preview-<token>-<name>``) until it is imported (it becomes the job's file), discarded, or
``IMPORT_PREVIEW_KEEP_HOURS`` old (removed by ``import_files_cleanup``).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from annotate.importers import ImportResult, import_read_options, items_import, step_items_import
from annotate.job_lifecycle import JobContext, JobFailed, job_progress_live, job_queue, job_run
from annotate.models import (
    Completion,
    ImportJob,
    ItemSlot,
    PairItem,
    Project,
    Prompt,
    StepItem,
    StepLabel,
)
from annotate.services import slots_ensure
from prefdata.readers import (
    CONTEXT_DIFFERS,
    IDENTICAL,
    MAPPED,
    ColumnMapping,
    Preview,
    ReadError,
    preview,
)

log = logging.getLogger(__name__)


# The choices an import offers (command flags, form and API fields, ``ImportJob.options``): name ->
# (values, the first being the default; what each does).
IMPORT_OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "context_differs": (CONTEXT_DIFFERS, "a pair whose two conversations differ before the final replies "
                                         "(hh-rlhf, TRL implicit prompt, Arena): refuse the file, naming the line, "
                                         "or keep such pairs flagged (metadata context_differs, the first "
                                         "conversation stored)"),
    "identical": (IDENTICAL, "a pair whose two replies are the same text: refuse the file, naming the line, or "
                             "leave such pairs out (counted in the summary)"),
}


def import_options_clean(options: Mapping[str, str] | None) -> dict[str, str]:
    """Every import option with its value: the given one (checked), else its default."""
    options = dict(options or {})
    unknown = set(options) - set(IMPORT_OPTIONS)
    if unknown:
        raise ValueError(f"unknown import option(s): {', '.join(sorted(unknown))}")
    clean = {}
    for name, (values, _) in IMPORT_OPTIONS.items():
        value = options.get(name) or values[0]
        if value not in values:
            raise ValueError(f"{name}: {value!r} is not one of {', '.join(values)}")
        clean[name] = value
    return clean


class ImportRefused(ValueError):
    """A file refused before its import is queued: ``errors`` are the preview's (file, line, field, message)."""

    def __init__(self, errors: list[dict]) -> None:
        self.errors = errors
        super().__init__("; ".join(e["message"] for e in errors[:3]))


def import_kind(project: Project) -> str:
    """The kind of records a project imports: "steps" or "pairs"."""
    return "steps" if project.task_kind == Project.TaskKind.STEPS else "pairs"


def import_mapping_clean(*, project: Project, mapping: Mapping | None) -> dict:
    """The column mapping checked for the project's kind, in its stored form ({} for none). Raises
    ``MappingError`` naming the field."""
    if not mapping:
        return {}
    return ColumnMapping.from_dict(mapping, kind=import_kind(project)).to_dict()


def importer_for(project: Project):
    """The import function for the project's kind: pairs or solutions split into steps."""
    return step_items_import if project.task_kind == Project.TaskKind.STEPS else items_import


def project_import(*, project: Project, path: str | Path, fmt: str = "auto", display_name: str | None = None,
                   progress: Callable[[int], None] | None = None, job: ImportJob | None = None,
                   before_commit: Callable[[ImportResult], None] | None = None,
                   options: Mapping[str, str] | None = None, mapping: Mapping | None = None) -> ImportResult:
    """Import a file into the project with the importer of its kind and give the new items their k
    slots, in one transaction: all of it, ready to be served, or nothing. ``before_commit(result)`` runs
    last inside that transaction (the job is marked done there); the prompts remember ``job``.
    ``options``: the import's choices (``IMPORT_OPTIONS``; the defaults where missing). ``mapping``: a
    column mapping (``ImportJob.mapping``), which makes the format "mapped"."""
    read_options = import_read_options(**import_options_clean(options))
    if mapping:
        fmt = MAPPED
    with transaction.atomic():
        result = importer_for(project)(project=project, path=path, fmt=fmt, display_name=display_name,
                                       progress=progress, import_job_id=job.pk if job else None,
                                       options=read_options, mapping=mapping or None)
        slots_ensure(project=project)
        if before_commit is not None:
            before_commit(result)
    if connection.vendor == "postgresql" and result.items >= ANALYZE_AFTER_ITEMS:
        try:
            with transaction.atomic():
                _tables_analyze(project=project)
        except DatabaseError:  # e.g. a role that does not own the tables: the import stands
            log.warning("statistics not refreshed after importing %s items", result.items, exc_info=True)
    return result


# After a bulk load, PostgreSQL plans from statistics that do not know the new rows until autovacuum
# gets to them (never, where it is off): the first annotators would pay for plans made for empty
# tables. An import this large refreshes them at once (sampled: a fraction of a second).
ANALYZE_AFTER_ITEMS = 10_000


def _tables_analyze(*, project: Project) -> None:
    steps = project.task_kind == Project.TaskKind.STEPS
    models = (Prompt, StepItem, StepLabel, ItemSlot) if steps else (Prompt, Completion, PairItem, ItemSlot)
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(qn(m._meta.db_table) for m in models)}")


def _upload_store(*, project: Project, upload: UploadedFile, prefix: str = "") -> tuple[Path, int]:
    """Write the upload under the project's import directory: (its path under MEDIA_ROOT, its size)."""
    relative = (Path("imports") / f"project-{project.pk}"
                / f"{prefix}{uuid.uuid4().hex}-{_safe_name(upload.name)}")
    path = settings.MEDIA_ROOT / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(path, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
            size += len(chunk)
    return relative, size


def _safe_name(name: str | None) -> str:
    return Path(name or "upload").name[:100] or "upload"


def import_job_create(*, project: Project, upload: UploadedFile, fmt: str = "auto", user=None,
                      options: Mapping[str, str] | None = None, mapping: Mapping | None = None) -> ImportJob:
    """Store the upload and queue its import once this transaction commits, with the import's choices
    (``options``, ``IMPORT_OPTIONS``). Files of failed imports past their keeping time are removed first.
    With a column ``mapping`` the file's first rows are read through it at once: an error there refuses
    the upload (``ImportRefused``, ``MappingError``) and nothing is queued or kept."""
    options = import_options_clean(options)
    mapping = import_mapping_clean(project=project, mapping=mapping)
    import_files_cleanup()
    relative, size = _upload_store(project=project, upload=upload)
    if mapping:
        fmt = MAPPED
        checked = import_preview_check(project=project, path=settings.MEDIA_ROOT / relative, name=upload.name,
                                       mapping=mapping, options=options)
        if checked.errors:
            (settings.MEDIA_ROOT / relative).unlink(missing_ok=True)
            raise ImportRefused(checked.errors)
    return _job_create(project=project, user=user, file_name=upload.name, relative=relative, fmt=fmt, size=size,
                       options=options, mapping=mapping)


def _job_create(*, project: Project, user, file_name: str, relative: Path, fmt: str, size: int,
                options: dict, mapping: dict) -> ImportJob:
    job = ImportJob.objects.create(project=project, created_by=user, file_name=file_name, path=str(relative),
                                   format=fmt, total=size, options=options, mapping=mapping)
    job_queue(job)
    return job


# -- previews: the first rows, read at once, before anything is queued ------------------------------------

PREVIEW_PREFIX = "preview-"
_TOKEN = re.compile(r"[0-9a-f]{32}")


def import_preview_check(*, project: Project, path: Path, name: str, mapping: Mapping | None = None,
                         fmt: str = "auto", options: Mapping[str, str] | None = None) -> Preview:
    """The file's first rows read at once through ``mapping`` (or ``fmt``), within the import's limits."""
    read_options = import_read_options(**import_options_clean(options))
    return preview(path, kind=import_kind(project), mapping=mapping or None, fmt=fmt, display_name=name,
                   options=read_options)


def import_upload_preview(*, project: Project, upload: UploadedFile, fmt: str = "auto", mapping: Mapping | None = None,
                          options: Mapping[str, str] | None = None) -> Preview:
    """The preview of an upload that is not kept (the API's dry run): stored only while it is read."""
    options = import_options_clean(options)
    mapping = import_mapping_clean(project=project, mapping=mapping)
    relative, _ = _upload_store(project=project, upload=upload, prefix=PREVIEW_PREFIX)
    path = settings.MEDIA_ROOT / relative
    try:
        return import_preview_check(project=project, path=path, name=_safe_name(upload.name), mapping=mapping,
                                    fmt=fmt, options=options)
    finally:
        path.unlink(missing_ok=True)


def import_preview_store(*, project: Project, upload: UploadedFile) -> str:
    """Keep an upload to preview (and import later, without sending it again): its token. Previews
    older than ``IMPORT_PREVIEW_KEEP_HOURS`` are removed first."""
    import_files_cleanup()
    relative, _ = _upload_store(project=project, upload=upload, prefix=PREVIEW_PREFIX)
    return relative.name[len(PREVIEW_PREFIX):len(PREVIEW_PREFIX) + 32]


def import_preview_file(*, project: Project, token: str) -> tuple[Path, str] | None:
    """(the path, the uploaded name) of the project's preview ``token``, or None (unknown, or removed)."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    folder = Path(settings.MEDIA_ROOT) / "imports" / f"project-{project.pk}"
    found = next(iter(folder.glob(f"{PREVIEW_PREFIX}{token}-*")), None) if folder.is_dir() else None
    if found is None:
        return None
    return found, found.name[len(PREVIEW_PREFIX) + 33:]


def import_preview_read(*, project: Project, token: str, mapping: Mapping | None = None, fmt: str = "auto",
                        options: Mapping[str, str] | None = None) -> Preview | None:
    """The preview of a kept upload (None when the token is unknown)."""
    found = import_preview_file(project=project, token=token)
    if found is None:
        return None
    path, name = found
    return import_preview_check(project=project, path=path, name=name, mapping=mapping, fmt=fmt, options=options)


def import_preview_discard(*, project: Project, token: str) -> bool:
    found = import_preview_file(project=project, token=token)
    if found is None:
        return False
    found[0].unlink(missing_ok=True)
    return True


def import_job_from_preview(*, project: Project, token: str, fmt: str = "auto", user=None,
                            options: Mapping[str, str] | None = None, mapping: Mapping | None = None) -> ImportJob:
    """Queue the import of a previewed upload, checked first over its first rows (``ImportRefused``, or
    ``MappingError`` for a mapping that cannot be used: nothing queued, the preview kept to try again).
    The preview's file becomes the job's."""
    options = import_options_clean(options)
    mapping = import_mapping_clean(project=project, mapping=mapping)
    found = import_preview_file(project=project, token=token)
    if found is None:
        raise ImportRefused([{"file": "", "line": 0, "field": "(file)",
                              "message": "The uploaded file is no longer kept: upload it again."}])
    path, name = found
    checked = import_preview_check(project=project, path=path, name=name, mapping=mapping, fmt=fmt, options=options)
    if checked.errors:
        raise ImportRefused(checked.errors)
    relative = path.relative_to(settings.MEDIA_ROOT).with_name(path.name[len(PREVIEW_PREFIX):])
    path.rename(settings.MEDIA_ROOT / relative)
    return _job_create(project=project, user=user, file_name=name, relative=relative,
                       fmt=MAPPED if mapping else fmt, size=(settings.MEDIA_ROOT / relative).stat().st_size,
                       options=options, mapping=mapping)


def import_job_progress(*, job: ImportJob) -> int:
    """Rows read so far: live while the import runs, from the row once finished."""
    return job_progress_live(job)[0]


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Import the job's file under the job's lease. The import and the job's DONE commit together: a
    job whose worker died has stored nothing and starts again; a second delivery does nothing."""
    return job_run(model=ImportJob, job_id=job_id, work=_import_work, related=("project",))


def _import_work(job: ImportJob, ctx: JobContext) -> None:
    def progress(rows: int) -> None:
        ctx.progress(rows)
        ctx.check()  # a cancelled import stops here and rolls back

    def done(result: ImportResult) -> None:
        ctx.finish(items=result.items, progress=result.rows, format=result.format, summary=result.summary())

    if not job.path:
        raise JobFailed(f"The file {job.file_name} is no longer kept (a failed import's file is removed after "
                        f"{_keep_days():g} days): upload it again.")
    try:
        project_import(project=job.project, path=settings.MEDIA_ROOT / job.path, fmt=job.format,
                       display_name=job.file_name, progress=progress, job=job, before_commit=done,
                       options=job.options, mapping=job.mapping)
    except ReadError as exc:
        if _keep_days() <= 0:
            _file_remove(job)  # refused, and nothing to keep it for
        raise JobFailed(str(exc)) from None


# -- files of failed imports ----------------------------------------------------------------------------


def _keep_days() -> float:
    return float(getattr(settings, "IMPORT_KEEP_FAILED_DAYS", 7))


def _file_remove(job: ImportJob, **still: object) -> bool:
    """Forget the job's file, then remove it: only while the job's row still matches ``still`` (a job
    retried meanwhile keeps its file), so that no import ever starts on a file being removed."""
    if not job.path or not ImportJob.objects.filter(pk=job.pk, path=job.path, **still).update(path=""):
        return False
    try:
        (Path(settings.MEDIA_ROOT) / job.path).unlink(missing_ok=True)
    except OSError:
        log.warning("could not remove %s of import %s", job.path, job.pk, exc_info=True)
    job.path = ""
    return True


def import_files_cleanup(*, now=None) -> int:
    """Remove the uploaded files of imports that failed or were cancelled more than
    ``IMPORT_KEEP_FAILED_DAYS`` ago (a retry is refused from then on, asking for the file again); the
    files of successful imports are kept. Returns how many were removed."""
    cutoff = (now or timezone.now()) - timedelta(days=_keep_days())
    finished = {"status__in": (ImportJob.Status.FAILED, ImportJob.Status.CANCELLED), "finished_at__lte": cutoff}
    removed = 0
    for job in ImportJob.objects.filter(**finished).exclude(path="").only("pk", "path")[:500]:
        removed += _file_remove(job, **finished)
    if removed:
        log.info("removed the files of %s failed or cancelled import(s)", removed)
    return removed + _previews_cleanup(now=now)


def _previews_cleanup(*, now=None) -> int:
    """Remove the previewed uploads never imported nor discarded, ``IMPORT_PREVIEW_KEEP_HOURS`` (24) after
    they were uploaded."""
    hours = float(getattr(settings, "IMPORT_PREVIEW_KEEP_HOURS", 24))
    cutoff = (now.timestamp() if now is not None else time.time()) - hours * 3600
    removed = 0
    for path in (Path(settings.MEDIA_ROOT) / "imports").glob(f"project-*/{PREVIEW_PREFIX}*"):
        try:
            if path.stat().st_mtime <= cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue  # gone meanwhile (imported, discarded or removed by another worker)
    return removed
