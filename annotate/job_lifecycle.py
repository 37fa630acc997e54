"""One lifecycle for every background job: claim with a lease, heartbeat, finish, cancel, retry, reap.

A job row (``annotate.jobs.Job``) is queued with its Celery task, which calls ``job_run`` with the
work to do. ``job_run``:

1. claims the row: a QUEUED job, or a RUNNING one whose lease has passed (its worker died and the
   message came back), becomes RUNNING under a fresh lease token. A job that is finished, or RUNNING
   under a live lease (the same message delivered twice, or a broker's visibility timeout handing a
   long job to a second worker), is left alone: the second delivery does nothing.
2. runs the work while a heartbeat thread renews the lease (every ``JOB_HEARTBEAT_SECONDS``, for
   ``JOB_LEASE_SECONDS``) and writes the progress. When the row says the job was cancelled, or the
   lease was taken over, the thread tells the work (``ctx.check()`` raises ``JobStopped``) and calls
   what the work registered with ``ctx.on_stop`` (a trainer subprocess is killed there).
3. records the end, only while the lease is still its own: DONE, FAILED with the error, or QUEUED
   again when the work asks for another turn (``REQUEUE``: a judge run between two chunks).
   Work that must commit its result atomically with the end (an import) calls ``ctx.finish`` inside
   its own transaction: the import and DONE commit together, or neither does.

Every worker checks every ``JOB_REAP_SECONDS`` for RUNNING jobs whose lease has passed
(``jobs_reap``): such a job is queued again to resume where it can (attempt + 1), or failed with a
clear error after ``max_attempts`` starts. So a job whose worker was killed is noticed within
lease + check interval (90 s by default) and is never left RUNNING.

A job claimed inside a transaction (a test, or a caller's ``atomic`` block) cannot show a lease to
anyone else: it runs without the heartbeat thread, writing its progress on its own connection.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from annotate.jobs import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus

log = logging.getLogger(__name__)

J = TypeVar("J", bound=Job)

# Returned by work that has more to do in another turn (a later message): the job goes back to QUEUED.
REQUEUE = object()
# How often ``JobContext.check`` reads the job's row (seconds).
CHECK_INTERVAL = 1.0


class JobStopped(Exception):
    """The job was cancelled, or another worker took it over: stop without recording anything."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class JobFailed(Exception):
    """An expected failure whose message is the whole error shown to people (a bad file, say). Any
    exception with a true ``expected`` attribute (a model server's refusal) is treated the same."""


def _lease() -> timedelta:
    return timedelta(seconds=settings.JOB_LEASE_SECONDS)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def job_models() -> list[type[Job]]:
    """Every concrete job model of the installed apps."""
    return [model for model in apps.get_models() if issubclass(model, Job)]


def job_model_for_slug(slug: str) -> type[Job] | None:
    return next((model for model in job_models() if model.slug == slug), None)


def task_options(kind: str) -> dict[str, Any]:
    """Celery options of a job's task: late acknowledgement, and the soft and hard time limits of
    its kind (``JOB_TIME_LIMITS``), which the broker's visibility timeout outlasts."""
    soft = settings.JOB_TIME_LIMITS[kind]
    return {"acks_late": True, "reject_on_worker_lost": True, "soft_time_limit": soft,
            "time_limit": soft + settings.JOB_HARD_LIMIT_MARGIN}


def job_queue(job: Job) -> None:
    """Queue the job's task once the current transaction commits (at once outside one)."""
    import_string(job.task_name).delay_on_commit(job.pk)


# -- progress seen while a job holds a long transaction (SQLite) ------------------------------------------


def _progress_file(job: Job) -> Path:
    return Path(settings.VAR_DIR) / "jobs" / f"{job._meta.label_lower}-{job.pk}.json"


def job_progress_live(job: Job) -> tuple[int, int]:
    """(progress, total) of a job, as fresh as can be seen: the row's, or while it runs, what its
    heartbeat wrote beside the database when the database was locked (SQLite during an import)."""
    if job.status == JobStatus.RUNNING:
        try:
            data = json.loads(_progress_file(job).read_text())
            return max(job.progress, int(data["progress"])), max(job.total, int(data["total"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return job.progress, job.total


# -- running a job -----------------------------------------------------------------------------------------


class JobContext:
    """What the work of a job uses to report progress, see a cancellation and finish atomically."""

    def __init__(self, *, model: type[Job], job: Job, token: str, heartbeat: bool) -> None:
        self.model, self.job, self.token, self.heartbeat = model, job, token, heartbeat
        self.done, self.total = job.progress, job.total
        self.finished = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop_reason: str | None = None
        self._stop_callbacks: list[Callable[[], None]] = []
        self._last_flush = 0.0
        self._last_check = 0.0

    def progress(self, done: int, total: int | None = None) -> None:
        """Report progress; written at most about once a second (by the heartbeat, when there is one)."""
        with self._lock:
            self.done = done
            if total is not None:
                self.total = total
        now = time.monotonic()
        if now - self._last_flush < 1.0:
            return
        self._last_flush = now
        if self.heartbeat:
            self._wake.set()
        else:
            self.model.objects.filter(pk=self.job.pk).update(progress=self.done, total=self.total)

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def check(self) -> None:
        """Raise ``JobStopped`` when the job was cancelled or taken over (the row is read at most once
        a second)."""
        if self._stop_reason is None and time.monotonic() - self._last_check >= CHECK_INTERVAL:
            self._last_check = time.monotonic()
            row = self.model.objects.filter(pk=self.job.pk).values_list("status", "lease_token").first()
            if row is None or row[0] == JobStatus.CANCELLED:
                self._stop("cancelled")
            elif row[1] != self.token:
                self._stop("lost")
        if self._stop_reason is not None:
            raise JobStopped(self._stop_reason)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the heartbeat thread) as soon as the job is cancelled or taken over."""
        self._stop_callbacks.append(callback)
        if self._stop_reason is not None:
            callback()

    def finish(self, **fields: Any) -> None:
        """Mark the job DONE in the current transaction, with ``fields``: work that commits its result
        in one transaction calls this inside it, so that result and status commit together. Raises
        ``JobStopped`` (rolling the transaction back) when the job is no longer this worker's."""
        now = timezone.now()
        values = {"progress": self.done, "total": self.total, **fields}
        updated = self.model.objects.filter(pk=self.job.pk, lease_token=self.token, status=JobStatus.RUNNING).update(
            status=JobStatus.DONE, finished_at=now, heartbeat_at=now, lease_until=None, **values)
        if not updated:
            status = self.model.objects.filter(pk=self.job.pk).values_list("status", flat=True).first()
            self._stop("cancelled" if status in (None, JobStatus.CANCELLED) else "lost")
            raise JobStopped(self._stop_reason or "lost")
        self.finished = True

    def _stop(self, reason: str) -> None:
        with self._lock:
            if self._stop_reason is not None:
                return
            self._stop_reason = reason
            callbacks = list(self._stop_callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("stopping %s %s", self.model.__name__, self.job.pk)


class _Heartbeat(threading.Thread):
    """Renews the lease and writes the progress; notices a cancellation or a lost lease."""

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(name=f"heartbeat-{ctx.model.__name__}-{ctx.job.pk}", daemon=True)
        self.ctx = ctx
        self.stopping = threading.Event()

    def run(self) -> None:
        ctx = self.ctx
        try:
            if connection.vendor == "sqlite":
                # Wait a second, not the default 30, for a write lock held by the job's own transaction.
                with connection.cursor() as cursor:
                    cursor.execute("PRAGMA busy_timeout = 1000")
            while not self.stopping.is_set():
                ctx._wake.wait(settings.JOB_HEARTBEAT_SECONDS)
                ctx._wake.clear()
                if self.stopping.is_set() or not self._beat():
                    return
        finally:
            connection.close()

    def _beat(self) -> bool:
        ctx, now = self.ctx, timezone.now()
        with ctx._lock:
            done, total = ctx.done, ctx.total
        try:
            updated = ctx.model.objects.filter(pk=ctx.job.pk, lease_token=ctx.token, status=JobStatus.RUNNING).update(
                heartbeat_at=now, lease_until=now + _lease(), progress=done, total=total)
        except DatabaseError:  # locked by the job's own transaction (SQLite): progress goes beside it
            log.debug("heartbeat of %s %s: database busy", ctx.model.__name__, ctx.job.pk, exc_info=True)
            path = _progress_file(ctx.job)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"progress": done, "total": total}))
            return True
        if updated:
            return True
        status = ctx.model.objects.filter(pk=ctx.job.pk).values_list("status", flat=True).first()
        if status in (JobStatus.DONE, JobStatus.FAILED):
            return False  # finished by the work itself
        ctx._stop("cancelled" if status in (None, JobStatus.CANCELLED) else "lost")
        return False


def _claim(model: type[J], job_id: int, token: str, related: tuple[str, ...]) -> tuple[J | None, str]:
    """Take the job for this worker, or say why not."""
    now = timezone.now()
    with transaction.atomic():
        job = model.objects.select_for_update(of=("self",)).select_related(*related).filter(pk=job_id).first()
        if job is None:
            return None, "no longer exists"
        if job.status in FINISHED_STATUSES:
            return None, f"already {job.status}"
        if job.status == JobStatus.RUNNING:
            if job.lease_until is not None and job.lease_until > now:
                return None, f"running on {job.worker or 'another worker'} (lease until {job.lease_until:%H:%M:%S})"
            # Its worker stopped, and its message came back before the periodic check saw it.
            if job.attempt >= model.max_attempts:
                _fail_abandoned(model, job, now)
                return None, "failed: its worker stopped too often"
            job.attempt += 1
        elif job.attempt == 0:
            job.attempt = 1
        job.status, job.lease_token, job.lease_until, job.heartbeat_at = (
            JobStatus.RUNNING, token, now + _lease(), now)
        job.worker, job.error, job.finished_at = worker_name()[:200], "", None
        job.started_at = job.started_at or now
        job.save(update_fields=["status", "lease_token", "lease_until", "heartbeat_at", "worker", "error",
                                "finished_at", "started_at", "attempt"])
    return job, ""


def _error_text(exc: BaseException) -> str:
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, JobFailed) or getattr(exc, "expected", False):
        return str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        return "Stopped: it ran past its time limit."
    return f"{type(exc).__name__}: {exc}"


def _end(ctx: JobContext, status: str, **fields: Any) -> bool:
    """Record the end of the job, if it is still this worker's."""
    now = timezone.now()
    updated = ctx.model.objects.filter(pk=ctx.job.pk, lease_token=ctx.token, status=JobStatus.RUNNING).update(
        status=status, heartbeat_at=now, lease_until=None, progress=ctx.done, total=ctx.total,
        finished_at=None if status == JobStatus.QUEUED else now, **fields)
    return bool(updated)


def job_run(*, model: type[J], job_id: int, work: Callable[[J, JobContext], object],
            related: tuple[str, ...] = ()) -> J | None:
    """Claim the job and run ``work(job, ctx)`` under its lease; returns the job row as it ends (None
    when the row is gone). A job this call could not claim is returned as it is, untouched."""
    token = uuid.uuid4().hex
    job, why = _claim(model, job_id, token, related)
    if job is None:
        log.info("%s %s not run here: %s", model.__name__, job_id, why)
        return model.objects.filter(pk=job_id).first()
    ctx = JobContext(model=model, job=job, token=token, heartbeat=not connection.in_atomic_block)
    heartbeat = _Heartbeat(ctx) if ctx.heartbeat else None
    if heartbeat is not None:
        heartbeat.start()
    try:
        outcome = work(job, ctx)
    except JobStopped as stop:
        log.info("%s %s stopped: %s", model.__name__, job_id, stop.reason)
    except Exception as exc:
        if isinstance(exc, JobFailed) or getattr(exc, "expected", False):  # its message says it all
            log.warning("%s %s failed: %s", model.__name__, job_id, exc)
        else:
            log.exception("%s %s failed", model.__name__, job_id)
        _end(ctx, JobStatus.FAILED, error=_error_text(exc))
    else:
        if outcome is REQUEUE:
            with transaction.atomic():
                if _end(ctx, JobStatus.QUEUED):
                    job_queue(job)
        elif not ctx.finished:
            _end(ctx, JobStatus.DONE)
    finally:
        if heartbeat is not None:
            heartbeat.stopping.set()
            ctx._wake.set()
            heartbeat.join()
        _progress_file(job).unlink(missing_ok=True)
    return model.objects.filter(pk=job_id).first()


def job_done_check(job: Job | None) -> Job:
    """``job`` if it is DONE; else JobFailed saying, in one line, how it ended (for callers that ran it
    in-process: commands, the headless demo)."""
    if job is None:
        raise JobFailed("the job no longer exists")
    if job.status != JobStatus.DONE:
        reason = " ".join(job.error.split())[:500] or "no error recorded"
        raise JobFailed(f"{job} ended {job.status}: {reason}")
    return job


# -- where a queued job stands ------------------------------------------------------------------------------


def job_celery_queue(model: type[Job]) -> str:
    """The Celery queue a job kind's task goes to (``CELERY_TASK_ROUTES``, else the default queue)."""
    from fnmatch import fnmatchcase

    for pattern, route in getattr(settings, "CELERY_TASK_ROUTES", {}).items():
        if fnmatchcase(model.task_name, pattern) and isinstance(route, dict) and route.get("queue"):
            return route["queue"]
    return getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class QueuePosition:
    """Where a queued job stands in its Celery queue: ``position`` 1 is the next to start; ``ahead`` the
    jobs before it (running ones first, then the queued ones created before it, oldest first; at most a
    few), ``ahead_count`` all of them. A job of another project is shown without its name or progress."""

    queue: str
    position: int
    ahead_count: int
    ahead: list[dict[str, Any]]

    @property
    def text(self) -> str:
        if not self.ahead_count:
            return f"waiting: next in the {self.queue} queue (no job ahead; waiting for a worker)"
        named = ", ".join(a["label"] for a in self.ahead)
        more = self.ahead_count - len(self.ahead)
        return (f"waiting: {_ordinal(self.position)} in the {self.queue} queue, behind {named}"
                + (f" and {more} more" if more > 0 else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "position": self.position, "ahead_count": self.ahead_count,
                "ahead": self.ahead, "text": self.text}


def _ahead_label(job: Job, project_id: int | None) -> dict[str, Any]:
    kind = job._meta.verbose_name.removesuffix(" job")
    if project_id is not None and getattr(job, "_queue_project_id", None) != project_id:
        return {"kind": job.slug, "id": None, "status": job.status, "label": f"a {kind} of another project"}
    progress, total = job_progress_live(job)
    if job.status == JobStatus.QUEUED:
        state = "queued"
    elif job.is_stale:
        state = "running, its worker stopped"
    elif total and progress <= total and getattr(type(job), "progress_of_total", True):
        state = f"running, {progress * 100 // total}%"
    elif progress:
        state = f"running, {progress:,} done"
    else:
        state = "running"
    return {"kind": job.slug, "id": job.pk, "status": job.status, "progress": progress, "total": total,
            "label": f"{kind} #{job.pk} ({state})"}


def job_queue_position(job: Job, *, project_id: int | None = None, show: int = 3) -> QueuePosition | None:
    """Where the QUEUED ``job`` stands (None for a job that is not queued): the RUNNING jobs of every kind
    whose task goes to the same Celery queue, and the QUEUED ones created before it, are ahead of it. The
    broker serves a queue in order, so the order jobs were created in is the order they start in (a
    retried job goes by its creation too: approximate there). ``project_id``: the viewer's project; jobs
    ahead of other projects are counted but not named. At most ``show`` jobs ahead are listed."""
    if job.status != JobStatus.QUEUED:
        return None
    queue = job_celery_queue(type(job))
    running: list[Job] = []
    queued: list[Job] = []
    queued_count = 0
    for model in job_models():
        if job_celery_queue(model) != queue:
            continue  # another queue: its jobs never delay this one
        rows = model.objects.annotate(_queue_project_id=F(model.project_path))
        running += rows.filter(status=JobStatus.RUNNING).order_by("started_at")
        before = Q(created_at__lt=job.created_at)
        if model is type(job):
            before |= Q(created_at=job.created_at, pk__lt=job.pk)
        earlier = rows.filter(before, status=JobStatus.QUEUED)
        queued_count += earlier.count()
        queued += earlier.order_by("-created_at", "-pk")[:show]  # the nearest ahead of it
    # The jobs running, then the queued ones just before it (oldest first).
    nearest = sorted(queued, key=lambda j: (j.created_at, j.pk))[-show:] if show else []
    room = show - len(running)
    ahead = running[:show] + (nearest[-room:] if room > 0 else [])
    count = len(running) + queued_count
    return QueuePosition(queue=queue, position=count + 1, ahead_count=count,
                         ahead=[_ahead_label(other, project_id) for other in ahead])


# -- what people do with jobs -----------------------------------------------------------------------------


def job_cancel(*, job: J) -> J:
    """Cancel a queued or running job. A running one stops at its next check (what it stored so far is
    kept, except an import, which stores nothing unless it finishes)."""
    job.__class__.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), lease_until=None)
    job.refresh_from_db()
    return job


def job_retry(*, job: J, user=None) -> J:
    """Queue a failed or cancelled job again; it resumes where the work allows (judged pairs, generated
    prompts and training checkpoints are kept). A person (``user``) retrying a job that spends needs the
    researcher's permission to start one."""
    if user is not None and job.spends:
        from annotate.roles import job_start_permission, permission_require

        permission_require(user=user, permission=job_start_permission(type(job)),
                           doing=f"start {job._meta.verbose_name_plural}")
    with transaction.atomic():
        updated = job.__class__.objects.filter(pk=job.pk, status__in=(JobStatus.FAILED, JobStatus.CANCELLED)).update(
            status=JobStatus.QUEUED, error="", finished_at=None, lease_until=None, lease_token="", attempt=0)
        if updated:
            job_queue(job)
    job.refresh_from_db()
    return job


# -- jobs whose worker stopped ----------------------------------------------------------------------------


def _fail_abandoned(model: type[Job], job: Job, now) -> int:
    seen = f"{job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" if job.heartbeat_at else "never"
    return model.objects.filter(pk=job.pk, status=JobStatus.RUNNING, lease_token=job.lease_token).update(
        status=JobStatus.FAILED, finished_at=now, lease_until=None,
        error=(f"Its worker ({job.worker or 'unknown'}) stopped while running it, {job.attempt} time(s) in all "
               f"(last heartbeat: {seen}); it was not started again. Retry it once the cause is found "
               f"(the worker's log; memory)."))


@dataclass(frozen=True)
class Reaped:
    job: str  # "ImportJob 3"
    action: str  # "resumed" or "failed"


def jobs_reap(*, now=None) -> list[Reaped]:
    """Resume (queue again) or fail every RUNNING job whose lease has passed: its worker stopped."""
    now = now or timezone.now()
    reaped = []
    for model in job_models():
        # No lease at all: a row left RUNNING by a worker from before leases existed.
        expired = Q(lease_until__lt=now) | Q(lease_until__isnull=True)
        stale = list(model.objects.filter(expired, status=JobStatus.RUNNING))
        for job in stale:
            if job.attempt >= model.max_attempts:
                if _fail_abandoned(model, job, now):
                    reaped.append(Reaped(f"{model.__name__} {job.pk}", "failed"))
                continue
            with transaction.atomic():
                resumed = model.objects.filter(expired, pk=job.pk, status=JobStatus.RUNNING,
                                               lease_token=job.lease_token).update(
                    status=JobStatus.QUEUED, attempt=F("attempt") + 1, lease_until=None, lease_token="")
                if resumed:
                    job_queue(job)
                    reaped.append(Reaped(f"{model.__name__} {job.pk}", "resumed"))
    for entry in reaped:
        log.warning("%s: its worker stopped; %s", entry.job, entry.action)
    return reaped


_reaper_started = threading.Event()


def job_reaper_start() -> None:
    """Check for jobs whose worker stopped now and every ``JOB_REAP_SECONDS``, in a daemon thread of
    this (worker) process. Started once per process."""
    if _reaper_started.is_set():
        return
    _reaper_started.set()

    def loop() -> None:
        while True:
            try:
                jobs_reap()
            except Exception:
                log.exception("checking for jobs whose worker stopped")
            try:
                from annotate.imports import import_files_cleanup  # (annotate.imports imports this module)

                import_files_cleanup()
            except Exception:
                log.exception("removing the files of failed imports")
            finally:
                connection.close()
            time.sleep(settings.JOB_REAP_SECONDS)

    threading.Thread(target=loop, name="job-reaper", daemon=True).start()
