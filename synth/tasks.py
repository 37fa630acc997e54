from celery import shared_task

from annotate.job_lifecycle import task_options


@shared_task(**task_options("synthesis"))
def synthesis_job_run_task(job_id: int) -> None:
    from synth.services import synthesis_job_run

    synthesis_job_run(job_id=job_id)
