import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=6 * 3600)
def judge_run_execute_task(run_id: int) -> None:
    from judges.models import JudgeRun
    from judges.services import judge_run_execute

    try:
        judge_run_execute(run_id=run_id)
    except JudgeRun.DoesNotExist:
        log.warning("judge run %s no longer exists; nothing to do", run_id)
