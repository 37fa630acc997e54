from celery import shared_task

from annotate.job_lifecycle import task_options

# Pairs judged per task: between two chunks the run goes back to the queue, so a long run
# interleaves with other work on the same worker.
CHUNK = 64


@shared_task(**task_options("judge"))
def judge_run_execute_task(run_id: int) -> None:
    """One chunk of a judge run; the run queues itself again until it is done or cancelled."""
    from judges.services import judge_run_execute

    judge_run_execute(run_id=run_id, chunk_size=CHUNK)
