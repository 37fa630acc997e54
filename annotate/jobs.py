"""What every background job row shares: its status choices and how a failure is recorded."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import models
from django.utils import timezone

log = logging.getLogger(__name__)


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


@contextmanager
def job_failure_recorded(job: models.Model, *, error: str = "error") -> Iterator[None]:
    """Mark ``job`` failed, with the error and the time, if the block raises; then re-raise, so
    the task's own failure handling (and the eager caller) still sees it."""
    try:
        yield
    except Exception as exc:
        log.exception("%s %s failed", type(job).__name__, job.pk)
        job.status, job.finished_at = JobStatus.FAILED, timezone.now()
        setattr(job, error, f"{type(exc).__name__}: {exc}")
        job.save(update_fields=["status", error, "finished_at"])
        raise


def job_done(job: models.Model) -> None:
    job.status, job.finished_at = JobStatus.DONE, timezone.now()
    job.save(update_fields=["status", "finished_at"])
