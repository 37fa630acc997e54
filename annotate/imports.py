"""Import jobs: an uploaded file is stored, then imported by a worker with progress.

The import runs in one transaction (all or nothing) that also marks the job done, so an import is
committed once or not at all, whatever happens to its worker; its progress, which other connections
cannot see inside that transaction, is written by the job's heartbeat (``annotate.job_lifecycle``).

A job keeps the choices made for it (``options``: ``IMPORT_OPTIONS``) and, once done, what it read and
left aside (``summary``). The uploaded file of a successful import is kept (lineage); that of a failed or
cancelled one is kept ``IMPORT_KEEP_FAILED_DAYS`` days, while it can be retried, then removed by
``import_files_cleanup``, which each worker runs with its check for stopped jobs and each new import
job runs too (a file refused with the setting at 0 is removed at once).
"""

from __future__ import annotations

import logging
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
from prefdata.readers import CONTEXT_DIFFERS, IDENTICAL, ReadError

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


def importer_for(project: Project):
    """The import function for the project's kind: pairs or solutions split into steps."""
    return step_items_import if project.task_kind == Project.TaskKind.STEPS else items_import


def project_import(*, project: Project, path: str | Path, fmt: str = "auto", display_name: str | None = None,
                   progress: Callable[[int], None] | None = None, job: ImportJob | None = None,
                   before_commit: Callable[[ImportResult], None] | None = None,
                   options: Mapping[str, str] | None = None) -> ImportResult:
    """Import a file into the project with the importer of its kind and give the new items their k
    slots, in one transaction: all of it, ready to be served, or nothing. ``before_commit(result)`` runs
    last inside that transaction (the job is marked done there); the prompts remember ``job``.
    ``options``: the import's choices (``IMPORT_OPTIONS``; the defaults where missing)."""
    read_options = import_read_options(**import_options_clean(options))
    with transaction.atomic():
        result = importer_for(project)(project=project, path=path, fmt=fmt, display_name=display_name,
                                       progress=progress, import_job_id=job.pk if job else None,
                                       options=read_options)
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


def import_job_create(*, project: Project, upload: UploadedFile, fmt: str = "auto", user=None,
                      options: Mapping[str, str] | None = None) -> ImportJob:
    """Store the upload and queue its import once this transaction commits, with the import's choices
    (``options``, ``IMPORT_OPTIONS``). Files of failed imports past their keeping time are removed first."""
    options = import_options_clean(options)
    import_files_cleanup()
    relative = Path("imports") / f"project-{project.pk}" / f"{uuid.uuid4().hex}-{Path(upload.name).name[:100]}"
    path = settings.MEDIA_ROOT / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(path, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
            size += len(chunk)
    job = ImportJob.objects.create(project=project, created_by=user, file_name=upload.name, path=str(relative),
                                   format=fmt, total=size, options=options)
    job_queue(job)
    return job


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
                       options=job.options)
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
    return removed
