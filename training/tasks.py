from celery import shared_task

from annotate.job_lifecycle import task_options


@shared_task(**task_options("training"))
def training_job_run_task(job_id: int) -> None:
    from training.jobs import training_job_run

    training_job_run(job_id=job_id)


@shared_task(**task_options("snapshot"))
def snapshot_job_run_task(job_id: int) -> None:
    from training.services import snapshot_job_run

    snapshot_job_run(job_id=job_id)
