from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=6 * 3600)
def judge_run_execute_task(run_id: int) -> None:
    from judges.services import judge_run_execute

    judge_run_execute(run_id=run_id)
