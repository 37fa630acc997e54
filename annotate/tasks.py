import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=6 * 3600)
def import_job_run_task(job_id: int) -> None:
    from annotate.imports import import_job_run
    from annotate.models import ImportJob

    try:
        import_job_run(job_id=job_id)
    except ImportJob.DoesNotExist:
        log.warning("import job %s no longer exists; nothing to do", job_id)
