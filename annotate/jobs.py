"""What every background job row shares: its status, progress and lease (the job lifecycle's model).

The lifecycle itself (claim, heartbeat, finish, cancel, retry, reap) is in ``annotate.job_lifecycle``.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.utils import timezone


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED_STATUSES = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    """A background job: an import, a synthesis job, a judge run, a training job.

    A worker claims the row with a lease (``lease_token`` until ``lease_until``) that it renews while
    the job runs (``heartbeat_at``); a RUNNING job whose lease has passed has lost its worker and is
    resumed or failed by the next check. ``attempt`` counts the starts: the first, and one more each
    time the job is resumed after its worker stopped.
    """

    Status = JobStatus

    # The Celery task (by name) that runs a job of this kind, with the job's id as its one argument.
    task_name: ClassVar[str] = ""
    # In URLs and the API: /jobs/<slug>/<id>/.
    slug: ClassVar[str] = ""
    # How to reach the job's project from the job (a lookup path).
    project_path: ClassVar[str] = "project"
    # The page that lists jobs of this kind for a project (a URL name taking project_id).
    page_url_name: ClassVar[str] = ""
    # Starts allowed in all: after that many, a job whose worker stopped again fails.
    max_attempts: ClassVar[int] = 3
    # Spends compute or money: starting or retrying one needs the researcher's permission
    # (``annotate.roles``), not only the project's researcher role.
    spends: ClassVar[bool] = False

    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life from its worker.")
    lease_until = models.DateTimeField(null=True, blank=True,
                                       help_text="A running job whose lease has passed has lost its worker.")
    lease_token = models.CharField(max_length=32, blank=True, editable=False)
    attempt = models.PositiveSmallIntegerField(default=0, help_text="Starts so far, resumptions included.")
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker that runs it.")

    class Meta:
        abstract = True

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_stale(self) -> bool:
        """RUNNING, but its worker stopped renewing the lease: the next check of a live worker resumes it."""
        return self.status == JobStatus.RUNNING and (self.lease_until is None or self.lease_until < timezone.now())

    @property
    def can_cancel(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def can_retry(self) -> bool:
        return self.status in (JobStatus.FAILED, JobStatus.CANCELLED)
