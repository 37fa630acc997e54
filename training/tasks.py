import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=48 * 3600)
def training_job_run_task(job_id: int) -> None:
    from training.models import TrainingJob
    from training.services import training_job_run

    try:
        training_job_run(job_id=job_id)
    except TrainingJob.DoesNotExist:
        log.warning("training job %s no longer exists; nothing to do", job_id)
