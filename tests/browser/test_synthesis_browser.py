"""Synthesis and the problem bank in the browser, as a researcher meets them: the synthesis page, a finished
best-of-N job (its curve beside the KL bound, pass@k, diversity) and the problem bank with its filters and
the sandbox's protections, at desktop and phone width, with no sideways scroll and no CSP violation."""

import os
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from prefdata.synthetic.best_of_n import best_of_n_curve
from synth.models import ModelEndpoint, Problem, SynthesisJob
from tests.browser.conftest import csp_watch, login
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = os.environ.get("SCREENSHOTS_DIR")


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def no_sideways_scroll(page, what: str) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{what}: the page is {width} px wide on a {inner} px screen"


@pytest.mark.parametrize("width", [1280, 390])
def test_synthesis_pages_and_the_problem_bank(browser, live_server, width):
    member = MembershipFactory(researcher=True, user__username=f"synth{width}")
    project = member.project
    endpoint = ModelEndpoint.objects.create(name=f"gen{width}", path="unused")
    scorer = ModelEndpoint.objects.create(name=f"rm{width}", path="unused", kind=ModelEndpoint.Kind.SCORER)
    curve = best_of_n_curve([[0.1, 0.5, 0.9, 0.3], [0.2, 0.4, 0.6, 0.8]])
    job = SynthesisJob.objects.create(
        project=project, endpoint=endpoint, scorer=scorer, kind="best_of_n", status="done", progress=2, total=2,
        params={"n": 4}, stats={"counts": {"sft": 2, "pairs": 2, "duplicates": 1}, "best_of_n": curve,
                                "diversity": {"texts": 8, "distinct_1": 0.61, "distinct_2": 0.83, "self_bleu": 0.12}})
    for i in range(3):
        Problem.objects.create(project=project, question=f"What is {i} + <b>{i}</b>?", answer=str(2 * i),
                               tags=["arith"], tag_index=",arith,", split="test" if i == 0 else "train")
    context = browser.new_context(viewport={"width": width, "height": 900})
    violations = csp_watch(context)
    page = context.new_page()
    login(page, live_server, member.user.username)

    page.goto(live_server.url + reverse("synth:jobs", args=[project.pk]))
    page.locator("h1").wait_for()
    no_sideways_scroll(page, "synthesis page")
    shot(page, f"synthesis-{width}")

    page.goto(live_server.url + reverse("synth:job_detail", args=[project.pk, job.pk]))
    page.locator("svg[aria-label='Best-of-N curve and KL bound']").wait_for()
    assert page.locator("svg[aria-label='Best-of-N curve and KL bound'] circle").count() == len(curve)
    assert "distinct-1 0.61" in page.locator("body").inner_text()
    no_sideways_scroll(page, "best-of-N job page")
    shot(page, f"synthesis-job-{width}")

    page.goto(live_server.url + reverse("synth:problems", args=[project.pk]))
    page.locator("#problems").wait_for()
    assert "What is 1 + <b>1</b>?" in page.locator("#problems").inner_text(), "model text shown as text"
    page.select_option("form.filters select[name=split]", "test")
    page.locator("#problems", has_text="What is 0 +").wait_for()
    expect(page.locator("#problems")).not_to_contain_text("What is 2 +")
    assert page.locator(".sandbox-status summary").inner_text().startswith("Code verification:")
    no_sideways_scroll(page, "problem bank")
    shot(page, f"problems-{width}")
    context.close()
    assert violations == [], "Content-Security-Policy violations"
