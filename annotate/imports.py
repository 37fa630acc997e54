"""Import jobs: an uploaded file is stored, then imported by a worker with progress.

The import runs in one transaction (all or nothing) that also marks the job done, so an import is
committed once or not at all, whatever happens to its worker; its progress, which other connections
cannot see inside that transaction, is written by the job's heartbeat (``annotate.job_lifecycle``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, connection, transaction

from annotate.importers import ImportResult, items_import, step_items_import
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
from prefdata.readers import ReadError

log = logging.getLogger(__name__)


def importer_for(project: Project):
    """The import function for the project's kind: pairs or solutions split into steps."""
    return step_items_import if project.task_kind == Project.TaskKind.STEPS else items_import


def project_import(*, project: Project, path: str | Path, fmt: str = "auto", display_name: str | None = None,
                   progress: Callable[[int], None] | None = None, job: ImportJob | None = None,
                   before_commit: Callable[[ImportResult], None] | None = None) -> ImportResult:
    """Import a file into the project with the importer of its kind and give the new items their k
    slots, in one transaction: all of it, ready to be served, or nothing. ``before_commit(result)`` runs
    last inside that transaction (the job is marked done there); the prompts remember ``job``."""
    with transaction.atomic():
        result = importer_for(project)(project=project, path=path, fmt=fmt, display_name=display_name,
                                       progress=progress, import_job_id=job.pk if job else None)
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


def import_job_create(*, project: Project, upload: UploadedFile, fmt: str = "auto", user=None) -> ImportJob:
    """Store the upload and queue its import once this transaction commits."""
    relative = Path("imports") / f"project-{project.pk}" / f"{uuid.uuid4().hex}-{Path(upload.name).name[:100]}"
    path = settings.MEDIA_ROOT / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(path, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
            size += len(chunk)
    job = ImportJob.objects.create(project=project, created_by=user, file_name=upload.name, path=str(relative),
                                   format=fmt, total=size)
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
        ctx.finish(items=result.items, progress=result.rows, format=result.format)

    try:
        project_import(project=job.project, path=settings.MEDIA_ROOT / job.path, fmt=job.format,
                       display_name=job.file_name, progress=progress, job=job, before_commit=done)
    except ReadError as exc:
        raise JobFailed(str(exc)) from None
