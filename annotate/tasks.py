from celery import shared_task

from annotate.job_lifecycle import task_options


@shared_task(**task_options("import"))
def import_job_run_task(job_id: int) -> None:
    """Import a file (annotate.imports.import_job_run); a second delivery while it runs does nothing."""
    from annotate.imports import import_job_run

    import_job_run(job_id=job_id)
