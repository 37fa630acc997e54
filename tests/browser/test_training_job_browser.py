"""A training job's page in the browser, at desktop and phone width: the curves and the step follow the job
while it runs (htmx polling), polling stops when it ends, the page is never wider than the screen, cancel
works; a finished reward model shows its evaluation and endpoint."""

import os

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.roles import researcher_grant
from synth.models import ModelEndpoint
from tests.browser.conftest import csp_watch, login
from tests.factories import MembershipFactory
from tests.training.test_job_page import metrics_of, training_job
from training.models import TrainingJob

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = os.environ.get("SCREENSHOTS_DIR")  # set to keep screenshots of the pages for a look


def points(page, series: str) -> int:
    return int(page.locator(f'path[data-series="{series}"]').first.get_attribute("data-points"))


@pytest.mark.parametrize("width", [1280, 390])
def test_a_running_job_updates_itself_and_a_finished_one_shows_its_results(browser, live_server, width):
    member = MembershipFactory(researcher=True, user__username=f"trainer{width}")
    researcher_grant(user=member.user)
    job = training_job(member.project, metrics=metrics_of(6)[:-1], progress=6, total=20,
                       hyperparameters={"max_steps": 20, "beta": 0.2})
    context = browser.new_context(viewport={"width": width, "height": 900})
    violations = csp_watch(context)
    page = context.new_page()
    login(page, live_server, member.user.username)
    page.goto(live_server.url + reverse("training:job", args=[member.project_id, job.pk]))
    assert page.locator("#job-step").inner_text() == "6 / 20"
    assert points(page, "loss") == 6 and page.locator("svg path[data-series]").count() >= 9
    assert page.locator("#charts figure").first.bounding_box()["width"] > 200
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/training-job-running-{width}.png", full_page=True)
    # The trainer logs more steps: the page follows without a reload.
    TrainingJob.objects.filter(pk=job.pk).update(progress=9, metrics=metrics_of(9)[:-1])
    expect(page.locator("#job-step")).to_have_text("9 / 20", timeout=10_000)
    assert points(page, "loss") == 9
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_load_state()
    assert "Cancelled training job" in page.locator("body").inner_text()
    assert page.locator("#job-live[hx-trigger]").count() == 0  # no more polling
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert page.get_by_role("button", name="Retry").is_visible()

    scorer = ModelEndpoint.objects.create(name=f"base-model-reward-{width}", kind=ModelEndpoint.Kind.SCORER,
                                          path="m")
    done = training_job(member.project, method="reward", status="done", progress=20, total=20,
                        finished_at=timezone.now(), metrics=metrics_of(20), result_endpoint=scorer,
                        artifact_path=f"/var/models/training/job-{width}/model",
                        evaluation={"accuracy": 0.9375, "rows": 48, "mean_margin": 1.734})
    page.goto(live_server.url + reverse("training:job", args=[member.project_id, done.pk]))
    assert "0.938" in page.locator("#evaluation").inner_text()
    assert "Reward model" in page.locator("#endpoint").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/training-job-done-{width}.png", full_page=True)
    context.close()
    assert violations == [], "Content-Security-Policy violations"
