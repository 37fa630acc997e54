"""A real Celery worker process consumes a queued job from the broker and writes to the database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from annotate.models import PairItem
from annotate.services import project_create, prompts_create
from config.celery import app as celery_app
from synth.models import SynthesisJob
from synth.services import synthesis_job_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


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


@pytest.fixture
def worker(tmp_path):
    if not _broker_reachable(settings.CELERY_BROKER_URL):
        pytest.skip(f"broker {settings.CELERY_BROKER_URL} not reachable")
    celery_app.conf.task_always_eager = False
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        for stale in Path(settings.BROKER_DIR).glob("*.msg"):
            stale.unlink()
    try:
        celery_app.control.purge()
    except Exception:  # the filesystem transport has no remote control; its folder is per test run
        pass
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "DATABASE_URL": _database_url(),
           "CELERY_TASK_ALWAYS_EAGER": "0", "MODELS_ROOT": str(tmp_path / "models"),
           "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "CELERY_BROKER_DIR": str(settings.BROKER_DIR)}
    log = open(tmp_path / "worker.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,gpu,training", "--pool", "solo",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    yield process, tmp_path / "worker.log"
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    celery_app.conf.task_always_eager = True


def test_worker_runs_a_queued_synthesis_job(worker, tiny_endpoint):
    process, log_path = worker
    project = project_create(name="Worker")
    prompts_create(project=project, conversations=["Hi?", "What is the capital of France?", "Why?"])
    job = synthesis_job_create(project=project, endpoint=tiny_endpoint, max_new_tokens=4)  # queued on commit
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in (SynthesisJob.Status.DONE, SynthesisJob.Status.FAILED) or process.poll() is not None:
            break
        time.sleep(0.5)
    log = Path(log_path).read_text()
    assert job.status == SynthesisJob.Status.DONE, f"{job.status} {job.error}\nworker log:\n{log[-4000:]}"
    assert PairItem.objects.filter(project=project).count() == 3
    assert "synth.tasks.synthesis_job_run_task" in log
