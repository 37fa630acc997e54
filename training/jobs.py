"""Training jobs: checked before they are queued, run by a worker as the method's script in a subprocess
under the job's lease (annotate.job_lifecycle), and their model registered as an endpoint."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError

from annotate.job_lifecycle import JobContext, JobFailed, JobStopped, job_queue, job_run
from prefdata.writers import EXPORT_FORMATS
from synth.models import ModelEndpoint
from synth.services import endpoint_model_dir
from training.ml.registry import method_get
from training.models import DatasetSnapshot, TrainingJob
from training.services import snapshot_path

log = logging.getLogger(__name__)


def training_job_check(*, method: str, snapshot: DatasetSnapshot, hyperparameters: object) -> dict:
    """The job's hyper-parameters if the method exists, trains on the kind of rows the snapshot holds and
    knows every hyper-parameter given (with a value of its type); else ValidationError naming the field."""
    try:
        spec = method_get(method)
    except ValueError as exc:
        raise ValidationError({"method": str(exc)}) from None
    holds = EXPORT_FORMATS[snapshot.format].record if snapshot.format in EXPORT_FORMATS else None
    if holds != spec.consumes:
        raise ValidationError({"snapshot": f"{spec.label} trains on {spec.consumes} rows; snapshot {snapshot.name!r} "
                                           f"holds {snapshot.get_format_display().lower()} rows"})
    try:
        return spec.hyperparameters_check(hyperparameters or {})
    except ValueError as exc:
        raise ValidationError({"hyperparameters": str(exc)}) from None


def training_job_create(*, base_endpoint: ModelEndpoint, snapshot: DatasetSnapshot, method: str = "dpo",
                        hyperparameters: dict | None = None, start: bool = True) -> TrainingJob:
    """A training job of ``method`` on ``snapshot``, queued unless ``start`` is False. Only the given
    hyper-parameters are stored; the method's config supplies the rest."""
    hyperparameters = training_job_check(method=method, snapshot=snapshot, hyperparameters=hyperparameters)
    job = TrainingJob.objects.create(method=method, base_endpoint=base_endpoint, snapshot=snapshot,
                                     hyperparameters=hyperparameters)
    if start:
        training_job_start(job=job)
    return job


def training_job_start(*, job: TrainingJob) -> None:
    """Queue the job on the training queue once the current transaction commits."""
    job_queue(job)


def _job_dir(job: TrainingJob) -> Path:
    return settings.MODELS_ROOT / "training" / f"job-{job.pk}"


def training_job_run(*, job_id: int) -> TrainingJob | None:
    """Run the training script as a subprocess under the job's lease, record its log, progress and
    metrics, and register the trained model as an endpoint.

    The script checkpoints as it goes: a job resumed after its worker stopped (or retried) continues from
    its last checkpoint, unless its configuration changed since. The subprocess runs in its own process
    group and dies with its worker; cancelling the job stops it.
    """
    return job_run(model=TrainingJob, job_id=job_id, work=_training_work, related=("base_endpoint", "snapshot"))


def _training_work(job: TrainingJob, ctx: JobContext) -> None:
    job_dir = _job_dir(job)
    out = job_dir / "model"
    config = {**job.hyperparameters, "dataset": str(snapshot_path(snapshot=job.snapshot)),
              "model": str(endpoint_model_dir(endpoint=job.base_endpoint)), "output_dir": str(out)}
    config_path = job_dir / "config.json"
    text = json.dumps(config, indent=2)
    if config_path.exists() and config_path.read_text() != text:
        # Checkpoints of another configuration must not be resumed.
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    config_path.write_text(text)
    note = f"--- attempt {job.attempt} on {job.worker} ---\n"
    job.log = (job.log + note) if job.log else note
    spec = method_get(job.method)
    ctx.progress(0, int(spec.effective(job.hyperparameters).get("max_steps") or 0))
    _subprocess_run(job, ctx, [sys.executable, "-m", spec.script, "--config", str(config_path)])
    ctx.check()  # cancelled as the trainer finished: no model is registered
    metrics_file = out / "metrics.jsonl"
    job.metrics = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    endpoint, _ = ModelEndpoint.objects.update_or_create(
        name=f"{job.base_endpoint.name}-{job.method}-job{job.pk}",
        defaults={"kind": ModelEndpoint.Kind.TRANSFORMERS, "path": str(out), "created_by_job_id": job.pk},
    )
    job.artifact_path, job.result_endpoint = str(out), endpoint
    TrainingJob.objects.filter(pk=job.pk).update(metrics=job.metrics, artifact_path=job.artifact_path,
                                                 result_endpoint=endpoint, log=job.log)


def _process_group_kill(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop the trainer and anything it started: SIGTERM to its process group, SIGKILL after ``grace``."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _subprocess_run(job: TrainingJob, ctx: JobContext, command: list[str]) -> None:
    """Run the trainer in its own process group, appending its output to the job's log at most once a
    second and its steps to the job's progress. The trainer exits when this process dies (it watches
    its parent, ``training.ml.common.parent_watch``); a cancelled job kills its process group."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TRAINER_PARENT_PID": str(os.getpid())}
    process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    ctx.on_stop(lambda: _process_group_kill(process))
    head = job.log
    lines: list[str] = []
    last = 0.0
    assert process.stdout is not None
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith('{"event"'):
                try:
                    event = json.loads(line)
                except ValueError:
                    event = {}
                if event.get("event") in ("log", "resume") and isinstance(event.get("step"), int):
                    ctx.progress(event["step"])
            if time.monotonic() - last > 1.0:
                job.log = head + "".join(lines[-2000:])
                TrainingJob.objects.filter(pk=job.pk).update(log=job.log)
                last = time.monotonic()
        code = process.wait()
    finally:
        _process_group_kill(process)  # an exception here (a time limit) must not leave the trainer behind
    job.log = head + "".join(lines[-2000:])
    TrainingJob.objects.filter(pk=job.pk).update(log=job.log)
    if ctx.stop_reason is not None:
        raise JobStopped(ctx.stop_reason)
    if code != 0:
        tail = "".join(lines[-15:])
        raise JobFailed(f"{command[2]} exited with status {code}:\n{tail}")
