import logging

from celery import shared_task

log = logging.getLogger(__name__)

CHUNK = 64


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=3600)
def judge_run_execute_task(run_id: int) -> None:
    """One chunk of a judge run; queues the next chunk until the run is done or cancelled."""
    from judges.models import JudgeRun
    from judges.services import judge_run_execute

    try:
        run = judge_run_execute(run_id=run_id, chunk_size=CHUNK)
    except JudgeRun.DoesNotExist:
        log.warning("judge run %s no longer exists; nothing to do", run_id)
        return
    if run.status == JudgeRun.Status.RUNNING:
        judge_run_execute_task.delay(run_id)
