"""Real Celery worker processes: a queued job is consumed from the broker; the same job delivered twice
runs once; a worker killed with SIGKILL has its job resumed on another worker, with nothing lost or
done twice and no trainer process left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from annotate.models import ImportJob, PairItem, Prompt
from annotate.services import project_create, prompts_create
from config.celery import app as celery_app
from synth.models import SynthesisJob
from synth.services import synthesis_job_create
from tests.http_server import Server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Short leases so that a dead worker is noticed in seconds (the defaults, 60 s and a check every 30 s,
# are exercised by test_killed_import_resumes_within_two_minutes_with_the_default_lease).
FAST_LEASE = {"JOB_LEASE_SECONDS": "6", "JOB_HEARTBEAT_SECONDS": "1", "JOB_REAP_SECONDS": "2"}


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    if connection.vendor == "postgresql":
        auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
        return f"postgres://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"
    pytest.skip(f"no worker database URL for {connection.vendor}")


def _broker_reachable(url: str) -> bool:
    if url.startswith("filesystem://"):
        return True
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


class Workers:
    """Starts worker processes that share the test database and broker; stops them at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path, self.processes, self.logs = tmp_path, {}, {}

    def start(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "DATABASE_URL": _database_url(),
                    "CELERY_TASK_ALWAYS_EAGER": "0", "MODELS_ROOT": str(self.tmp_path / "models"),
                    "MEDIA_ROOT": str(self.tmp_path / "media"), "VAR_DIR": str(self.tmp_path / "var"),
                    "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "CELERY_BROKER_DIR": str(settings.BROKER_DIR),
                    **(env or {})}
        log_path = self.tmp_path / f"{name}.log"
        log = open(log_path, "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,gpu,training", "--pool", "solo",
             "-n", f"{name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=settings.BASE_DIR, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name], self.logs[name] = process, log_path
        return process

    def log(self, name: str | None = None) -> str:
        names = [name] if name else list(self.logs)
        return "\n".join(f"--- {n} ---\n{self.logs[n].read_text()[-6000:]}" for n in names)

    def name_of(self, worker_field: str) -> str:
        """The name of the worker whose pid is in a job's ``worker`` field ("host:pid")."""
        pid = int(worker_field.rsplit(":", 1)[1])
        return next(name for name, p in self.processes.items() if p.pid == pid)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def workers(tmp_path, settings):
    if not _broker_reachable(settings.CELERY_BROKER_URL):
        pytest.skip(f"broker {settings.CELERY_BROKER_URL} not reachable")
    settings.MEDIA_ROOT, settings.MODELS_ROOT = tmp_path / "media", tmp_path / "models"
    celery_app.conf.task_always_eager = False
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        for stale in Path(settings.BROKER_DIR).glob("*.msg"):
            stale.unlink()
    try:
        celery_app.control.purge()
    except Exception:  # the filesystem transport has no remote control; its folder is per test run
        pass
    pool = Workers(tmp_path)
    yield pool
    pool.stop()
    celery_app.conf.task_always_eager = True


@pytest.fixture
def real_servers():
    """The tests of several workers need what production has: PostgreSQL (row locks, leases seen across
    connections) and a real broker (a message goes to whichever worker is free)."""
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("several workers sharing jobs are tested on PostgreSQL and Redis (CI: .ci/run)")


def wait_for(predicate: Callable[[], object], timeout: float, what: str, workers: Workers | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{workers.log() if workers else ''}")


def test_worker_runs_a_queued_synthesis_job(workers, tiny_endpoint):
    process = workers.start("w1")
    project = project_create(name="Worker")
    prompts_create(project=project, conversations=["Hi?", "What is the capital of France?", "Why?"])
    job = synthesis_job_create(project=project, endpoint=tiny_endpoint, max_new_tokens=4)  # queued on commit
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in (SynthesisJob.Status.DONE, SynthesisJob.Status.FAILED) or process.poll() is not None:
            break
        time.sleep(0.5)
    log = workers.log()
    assert job.status == SynthesisJob.Status.DONE, f"{job.status} {job.error}\nworker log:\n{log}"
    assert PairItem.objects.filter(project=project).count() == 3
    assert "synth.tasks.synthesis_job_run_task" in log
    assert job.attempt == 1 and job.heartbeat_at is not None and job.lease_until is None


# -- one job, several workers -----------------------------------------------------------------------------


def _import_job(tmp_path: Path, rows: int) -> ImportJob:
    project = project_create(name=f"Import {rows}")
    media = Path(settings.MEDIA_ROOT)
    media.mkdir(parents=True, exist_ok=True)
    path = media / "big.jsonl"
    with open(path, "w") as out:
        for i in range(rows):
            out.write(json.dumps({"prompt": f"question {i}", "response_a": f"a{i}", "response_b": f"b{i}"}) + "\n")
    return ImportJob.objects.create(project=project, file_name="big.jsonl", path="big.jsonl",
                                    total=path.stat().st_size)


def _running(model, pk: int, *, progress: int = 0):
    def check():
        job = model.objects.get(pk=pk)
        return job if job.status == "running" and job.progress >= progress else None
    return check


def _finished(model, pk: int):
    def check():
        job = model.objects.get(pk=pk)
        return job if job.status in ("done", "failed", "cancelled") else None
    return check


def deliver_twice_while_running(workers: Workers, task, model, pk: int, *, progress: int = 1):
    """Queue ``task`` for the job, wait until a worker runs it, queue it again: the other worker must turn
    the second delivery away while the first holds the lease."""
    task.delay(pk)
    running = wait_for(_running(model, pk, progress=progress), 120, "the job to start", workers)
    task.delay(pk)
    other = next(name for name in workers.processes if name != workers.name_of(running.worker))
    wait_for(lambda: "not run here: running on" in workers.logs[other].read_text(), 60,
             "the second delivery to be turned away", workers)
    assert model.objects.get(pk=pk).status == "running"  # turned away while the job ran
    return running


def test_an_import_delivered_twice_while_it_runs_is_imported_once(workers, real_servers, tmp_path):
    from annotate.tasks import import_job_run_task

    workers.start("w1", FAST_LEASE)
    workers.start("w2", FAST_LEASE)
    job = _import_job(tmp_path, rows=150_000)
    deliver_twice_while_running(workers, import_job_run_task, ImportJob, job.pk, progress=0)
    job = wait_for(_finished(ImportJob, job.pk), 180, "the import to finish", workers)
    assert (job.status, job.items, job.attempt) == ("done", 150_000, 1), workers.log()
    assert Prompt.objects.filter(import_job=job).count() == 150_000
    assert PairItem.objects.filter(project=job.project).count() == 150_000


def test_a_killed_import_is_imported_once_by_another_worker(workers, real_servers, tmp_path):
    from annotate.tasks import import_job_run_task

    workers.start("w1", FAST_LEASE)
    workers.start("w2", FAST_LEASE)
    job = _import_job(tmp_path, rows=150_000)
    import_job_run_task.delay(job.pk)
    running = wait_for(_running(ImportJob, job.pk, progress=1), 60, "the import to store its first rows", workers)
    victim = workers.name_of(running.worker)
    workers.processes[victim].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    job = wait_for(_finished(ImportJob, job.pk), 180, "the import to be resumed and finish", workers)
    assert (job.status, job.attempt) == ("done", 2), workers.log()
    assert workers.name_of(job.worker) != victim
    assert time.monotonic() - killed_at < 120
    # The killed run's transaction was rolled back: every row is there once.
    assert Prompt.objects.filter(import_job=job).count() == 150_000
    assert PairItem.objects.filter(project=job.project).count() == 150_000


def test_killed_import_resumes_within_two_minutes_with_the_default_lease(workers, real_servers, tmp_path):
    """With the default settings (a 60 s lease, checked every 30 s) a dead worker's job is resumed by
    another worker within two minutes."""
    from annotate.tasks import import_job_run_task

    workers.start("w1")
    workers.start("w2")
    job = _import_job(tmp_path, rows=100_000)
    import_job_run_task.delay(job.pk)
    running = wait_for(_running(ImportJob, job.pk, progress=1), 60, "the import to store its first rows", workers)
    workers.processes[workers.name_of(running.worker)].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).attempt == 2, 120,
             "another worker to take the import over within two minutes", workers)
    assert time.monotonic() - killed_at < 120
    job = wait_for(_finished(ImportJob, job.pk), 120, "the import to finish", workers)
    assert job.status == "done" and Prompt.objects.filter(import_job=job).count() == 100_000


@pytest.fixture
def slow_judge_run():
    """A judge run over 40 pairs, each judged in both orders by a server that takes 0.15 s an answer."""
    from judges.models import Judge, JudgeRun
    from synth.models import ModelEndpoint
    from tests.factories import PairItemFactory

    server = Server(reply=lambda n: "Verdict: [[A]]", delay=0.15)
    project = project_create(name="Judged")
    for _ in range(40):
        PairItemFactory(project=project)
    endpoint = ModelEndpoint.objects.create(name="slow", kind="openai", path="judge", base_url=server.url,
                                            max_concurrency=1)
    judge = Judge.objects.create(name="slow judge", endpoint=endpoint, verdict_method="generate")
    yield JudgeRun.objects.create(judge=judge, project=project)
    server.close()


def test_a_judge_run_delivered_twice_while_it_runs_judges_each_pair_once(workers, real_servers, slow_judge_run):
    from judges.models import AIJudgment, JudgeRun
    from judges.tasks import judge_run_execute_task

    workers.start("w1", FAST_LEASE)
    workers.start("w2", FAST_LEASE)
    run = slow_judge_run
    deliver_twice_while_running(workers, judge_run_execute_task, JudgeRun, run.pk)
    run = wait_for(_finished(JudgeRun, run.pk), 120, "the run to finish", workers)
    assert (run.status, run.progress, run.total, run.attempt) == ("done", 40, 40, 1), workers.log()
    assert AIJudgment.objects.filter(run=run).count() == 40
    assert AIJudgment.objects.filter(judge=run.judge, item__project=run.project).values("item").distinct().count() == 40


def test_a_killed_judge_run_is_resumed_by_another_worker_without_judging_twice(workers, real_servers,
                                                                               slow_judge_run):
    from judges.models import AIJudgment, JudgeRun
    from judges.tasks import judge_run_execute_task

    workers.start("w1", FAST_LEASE)
    workers.start("w2", FAST_LEASE)
    run = slow_judge_run
    judge_run_execute_task.delay(run.pk)
    running = wait_for(_running(JudgeRun, run.pk, progress=9), 60, "the run to judge some pairs", workers)
    victim = workers.name_of(running.worker)
    workers.processes[victim].send_signal(signal.SIGKILL)
    judged_before = AIJudgment.objects.filter(judge=run.judge).count()
    run = wait_for(_finished(JudgeRun, run.pk), 120, "the run to be resumed and finish", workers)
    assert (run.status, run.progress, run.total, run.attempt) == ("done", 40, 40, 2), workers.log()
    assert workers.name_of(run.worker) != victim
    assert AIJudgment.objects.filter(judge=run.judge, item__project=run.project).count() == 40
    # The pairs judged before the kill were kept, not judged again: the server saw each pair's two orders
    # once, plus at most the batch that was in flight when the worker died.
    assert 8 <= judged_before < 40


# -- training ---------------------------------------------------------------------------------------------


def _trainers(parent_pids: set[int] | None = None) -> dict[int, int]:
    """Running training scripts: {pid: pid of the worker that started it}, for the workers
    ``parent_pids`` when given (a trainer's own forks count under the same worker)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"training.ml.dpo" not in (entry / "cmdline").read_bytes().split(b"\0"):
                continue
            environ = dict(item.split(b"=", 1) for item in (entry / "environ").read_bytes().split(b"\0")
                           if b"=" in item)
            parent = int(environ.get(b"TRAINER_PARENT_PID", b"0"))
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":  # exited already
                continue
        except (OSError, ValueError):
            continue
        if parent_pids is None or parent in parent_pids:
            found[int(entry.name)] = parent
    return found


STEPS = 100  # a few seconds of training on the tiny model: time enough to kill its worker half-way


@pytest.fixture
def training_job(tiny_endpoint):
    from tests.factories import PairLabelFactory
    from training.models import TrainingJob
    from training.services import snapshot_create

    project = project_create(name="Train")
    from tests.factories import PairItemFactory

    for i in range(8):
        PairLabelFactory(item=PairItemFactory(project=project), verdict="A" if i % 2 else "B")
    snapshot = snapshot_create(project=project, source="human")
    return TrainingJob.objects.create(base_endpoint=tiny_endpoint, snapshot=snapshot, hyperparameters={
        "max_steps": STEPS, "save_steps": 5, "max_length": 64, "batch_size": 2})


def _steps_logged(job) -> list[int]:
    return [m["step"] for m in job.metrics if "loss" in m]


def test_a_training_job_delivered_twice_while_it_runs_trains_once(workers, real_servers, training_job):
    from training.models import TrainingJob
    from training.tasks import training_job_run_task

    workers.start("w1", FAST_LEASE)
    workers.start("w2", FAST_LEASE)
    running = deliver_twice_while_running(workers, training_job_run_task, TrainingJob, training_job.pk)
    mine = {p.pid for p in workers.processes.values()}
    # One worker trains; the other started no trainer.
    assert set(_trainers(mine).values()) == {workers.processes[workers.name_of(running.worker)].pid}
    job = wait_for(_finished(TrainingJob, training_job.pk), 300, "training to finish", workers)
    assert (job.status, job.attempt, job.progress) == ("done", 1, STEPS), f"{job.error}\n{workers.log()}"
    assert _steps_logged(job) == list(range(1, STEPS + 1))


def test_a_killed_training_job_resumes_from_its_checkpoint_and_leaves_no_trainer(workers, real_servers,
                                                                                 training_job):
    from training.models import TrainingJob
    from training.tasks import training_job_run_task

    workers.start("w1", FAST_LEASE)
    workers.start("w2", FAST_LEASE)
    training_job_run_task.delay(training_job.pk)
    checkpoint = Path(settings.MODELS_ROOT) / "training" / f"job-{training_job.pk}" / "model" / "checkpoints"
    running = wait_for(_running(TrainingJob, training_job.pk, progress=12), 180,
                       "training to pass its second checkpoint", workers)
    from training.ml.common import last_checkpoint

    assert last_checkpoint(checkpoint)[1] >= 10
    victim = workers.name_of(running.worker)
    victim_pid = workers.processes[victim].pid
    assert _trainers({victim_pid}), "the trainer runs under the worker"
    workers.processes[victim].send_signal(signal.SIGKILL)
    # The trainer dies with its worker (the kernel tells it, or it sees its parent go).
    wait_for(lambda: not _trainers({victim_pid}), 10, "the killed worker's trainer to exit")
    job = wait_for(_finished(TrainingJob, training_job.pk), 300, "training to be resumed and finish", workers)
    assert (job.status, job.attempt, job.progress) == ("done", 2, STEPS), f"{job.error}\n{workers.log()}"
    assert workers.name_of(job.worker) != victim
    resumed = re.search(r'"event": "resume", "checkpoint": "[^"]+checkpoint-(\d+)", "step": (\d+)', job.log)
    assert resumed and int(resumed.group(2)) >= 10, job.log[-3000:]
    # Every step logged once: the metrics after the checkpoint were dropped and logged again.
    assert _steps_logged(job) == list(range(1, STEPS + 1))
    assert not checkpoint.exists() and job.result_endpoint is not None
    assert not _trainers({p.pid for p in workers.processes.values()})


def test_cancelling_a_training_job_stops_its_trainer(workers, real_servers, training_job):
    from annotate.job_lifecycle import job_cancel
    from training.models import TrainingJob
    from training.tasks import training_job_run_task

    process = workers.start("w1", FAST_LEASE)
    # Long enough that it cannot finish before the cancellation reaches it.
    TrainingJob.objects.filter(pk=training_job.pk).update(hyperparameters={
        **training_job.hyperparameters, "max_steps": 5000, "save_steps": 1000})
    training_job_run_task.delay(training_job.pk)
    running = wait_for(_running(TrainingJob, training_job.pk, progress=2), 180, "training to start", workers)
    assert _trainers({process.pid})
    job_cancel(job=running)
    wait_for(lambda: not _trainers({process.pid}), 20, "the trainer to be stopped", workers)
    job = TrainingJob.objects.get(pk=training_job.pk)
    assert job.status == "cancelled" and job.progress < 5000 and job.result_endpoint is None
    assert process.poll() is None  # the worker itself goes on
