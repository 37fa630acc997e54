from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=48 * 3600)
def training_job_run_task(job_id: int) -> None:
    from training.services import training_job_run

    training_job_run(job_id=job_id)
