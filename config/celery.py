"""The Celery app. Workers import tasks from the apps; heavy libraries load lazily inside tasks."""

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _job_reaper_start(**kwargs) -> None:
    """Every worker looks for jobs whose worker stopped (annotate.job_lifecycle.jobs_reap)."""
    from annotate.job_lifecycle import job_reaper_start

    job_reaper_start()
