from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=6 * 3600)
def synthesis_job_run_task(job_id: int) -> None:
    from synth.services import synthesis_job_run

    synthesis_job_run(job_id=job_id)
