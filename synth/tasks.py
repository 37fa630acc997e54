import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=6 * 3600)
def synthesis_job_run_task(job_id: int) -> None:
    from synth.models import SynthesisJob
    from synth.services import synthesis_job_run

    try:
        synthesis_job_run(job_id=job_id)
    except SynthesisJob.DoesNotExist:
        log.warning("synthesis job %s no longer exists; nothing to do", job_id)
