"""Cancel and retry jobs in the browser, on each kind of job's page, at desktop and phone width."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import ImportJob
from annotate.roles import researcher_grant
from judges.models import Judge, JudgeRun
from synth.models import ModelEndpoint, SynthesisJob
from tests.browser.conftest import csp_watch, login
from tests.factories import MembershipFactory
from training.models import DatasetSnapshot, TrainingJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = os.environ.get("SCREENSHOTS_DIR")  # set to keep screenshots of the pages for a look


def jobs(project):
    endpoint = ModelEndpoint.objects.create(name="demo-model", path="unused")
    snapshot = DatasetSnapshot.objects.create(project=project, name="prefs-v1", file="x.jsonl", sha256="0" * 64,
                                              rows=10)
    now = timezone.now()
    running = {"status": "running", "attempt": 2, "worker": "gpu-1:4242", "started_at": now - timedelta(minutes=3),
               "heartbeat_at": now, "lease_until": now + timedelta(seconds=60), "lease_token": "t"}
    return {
        "annotate:import": [
            ImportJob.objects.create(project=project, file_name="hh-rlhf.jsonl.gz", path="x", format="hh-rlhf",
                                     progress=1200, total=10_000, **running),
            ImportJob.objects.create(project=project, file_name="broken.jsonl", path="x", status="failed",
                                     error="broken.jsonl, line 7, field 'response_b': missing"),
        ],
        "synth:jobs": [SynthesisJob.objects.create(project=project, endpoint=endpoint, progress=8, total=20,
                                                   **running)],
        "judges:runs": [JudgeRun.objects.create(judge=Judge.objects.create(name="judge", endpoint=endpoint),
                                                project=project, progress=30, total=64, **running)],
        "training:datasets": [TrainingJob.objects.create(base_endpoint=endpoint, snapshot=snapshot, progress=4,
                                                         total=10, **running)],
    }


@pytest.mark.parametrize("width", [1280, 390])
def test_cancel_and_retry_from_each_job_page(browser, live_server, width, monkeypatch):
    queued = []
    monkeypatch.setattr("annotate.job_lifecycle.job_queue", queued.append)  # no worker here: record it
    member = MembershipFactory(researcher=True, user__username=f"researcher{width}")
    researcher_grant(user=member.user)  # retrying a job that spends needs the researcher's permission
    project = member.project
    context = browser.new_context(viewport={"width": width, "height": 900})
    violations = csp_watch(context)
    page = context.new_page()
    login(page, live_server, member.user.username)
    for url_name, rows in jobs(project).items():
        from django.urls import reverse

        page.goto(live_server.url + reverse(url_name, args=[project.pk]))
        job = rows[0]
        row = page.locator("tr", has=page.locator(f"form[action*='/jobs/{job.slug}/{job.pk}/']"))
        assert "attempt 2 of 3" in row.inner_text()
        if SHOTS:
            page.screenshot(path=f"{SHOTS}/jobs-{url_name.split(':')[1]}-{width}.png", full_page=True)
        row.get_by_role("button", name="Cancel").click()
        page.wait_for_load_state()
        assert "Cancelled" in page.locator("body").inner_text()
        job.refresh_from_db()
        assert job.status == "cancelled"
        row = page.locator("tr", has=page.locator(f"form[action*='/jobs/{job.slug}/{job.pk}/retry/']"))
        row.get_by_role("button", name="Retry").click()
        page.wait_for_load_state()
        job.refresh_from_db()
        assert job.status == "queued" and queued[-1].pk == job.pk
        if SHOTS and url_name == "annotate:import":
            page.screenshot(path=f"{SHOTS}/jobs-import-after-{width}.png", full_page=True)
    context.close()
    assert violations == [], "Content-Security-Policy violations"
