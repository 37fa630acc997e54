"""Import jobs: an uploaded file is stored, then imported by a worker with progress.

The import itself runs in one transaction (all or nothing), so its progress cannot be written to
the job row where other connections would see it; it goes to a small file beside the upload,
which the page reads while the job runs.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from annotate.importers import ImportError_, ImportResult, items_import
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
from annotate.step_importers import step_items_import

log = logging.getLogger(__name__)


def importer_for(project: Project):
    """The import function for the project's kind: pairs or solutions split into steps."""
    return step_items_import if project.task_kind == Project.TaskKind.STEPS else items_import


def project_import(*, project: Project, path: str | Path, fmt: str = "auto", display_name: str | None = None,
                   progress: Callable[[int], None] | None = None) -> ImportResult:
    """Import a file into the project with the importer of its kind and give the new items their k
    slots, in one transaction: all of it, ready to be served, or nothing."""
    with transaction.atomic():
        result = importer_for(project)(project=project, path=path, fmt=fmt, display_name=display_name,
                                       progress=progress)
        slots_ensure(project=project)
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


def _progress_path(job: ImportJob) -> Path:
    return settings.MEDIA_ROOT / (job.path + ".progress")


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
    from annotate.tasks import import_job_run_task

    import_job_run_task.delay_on_commit(job.pk)
    return job


def import_job_progress(*, job: ImportJob) -> int:
    """Rows read so far: live from the progress file while running, from the row once finished."""
    if job.status == ImportJob.Status.RUNNING:
        try:
            return int(json.loads(_progress_path(job).read_text())["rows"])
        except (OSError, ValueError, KeyError):
            return job.progress
    return job.progress


def import_job_run(*, job_id: int) -> ImportJob:
    """Import the job's file. Idempotent: a finished job is left alone; an interrupted one is
    retried from the start, which is safe because an import that did not finish stored nothing."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update(of=("self",)).select_related("project").get(pk=job_id)
        if job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED):
            return job
        job.status, job.error = ImportJob.Status.RUNNING, ""
        job.save(update_fields=["status", "error"])
    progress_file = _progress_path(job)

    def progress(rows: int) -> None:
        progress_file.write_text(json.dumps({"rows": rows}))

    try:
        result = project_import(project=job.project, path=settings.MEDIA_ROOT / job.path, fmt=job.format,
                                display_name=job.file_name, progress=progress)
    except ImportError_ as exc:
        job.status, job.error = ImportJob.Status.FAILED, str(exc)
    except Exception as exc:
        log.exception("import job %s failed", job_id)
        job.status, job.error = ImportJob.Status.FAILED, f"{type(exc).__name__}: {exc}"
    else:
        job.status, job.items, job.progress, job.format = (
            ImportJob.Status.DONE, result.items, result.rows, result.format)
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "error", "items", "progress", "format", "finished_at"])
    progress_file.unlink(missing_ok=True)
    return job
