"""Judges in the browser, under the strict CSP: a researcher makes a judge, watches the prompt preview follow the
template, tests it on one pair of a scripted server (both orders' answers, escaped), sees a field's error; the
run form's estimate; the report with its reliability diagram; each judge's verdict on the review page. At
1440 px and 390 px (screenshots with SCREENSHOTS_DIR set)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from annotate.roles import researcher_grant
from annotate.services import pair_label_submit
from judges.models import AIJudgment, Judge
from synth.backends.loader import backend_cache_clear
from synth.models import ModelEndpoint
from tests.browser.conftest import login
from tests.factories import MembershipFactory, PairItemFactory, UserFactory
from tests.http_server import Server

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = os.environ.get("SCREENSHOTS_DIR")  # set to keep screenshots of the pages for a look
HOSTILE = 'Response A is better. <img src=x onerror="alert(1)">'


def _shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True, caret="initial")


@pytest.fixture
def server():
    backend_cache_clear()
    server = Server(reply=lambda n: HOSTILE)
    yield server
    server.close()
    backend_cache_clear()


@pytest.fixture
def world(server):
    member = MembershipFactory(researcher=True, user__username="judge-researcher")
    researcher_grant(user=member.user)
    project = member.project
    items = [PairItemFactory(project=project) for _ in range(6)]
    endpoint = ModelEndpoint.objects.create(name="scripted-http", kind="openai", path="judge", base_url=server.url,
                                            cost_per_million_input=1.0, cost_per_million_output=4.0)
    return {"user": member.user, "project": project, "items": items, "endpoint": endpoint}


def test_make_preview_and_test_a_judge(page, live_server, world):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.set_viewport_size({"width": 1440, "height": 1000})
    login(page, live_server, world["user"].username)
    project = world["project"]
    page.goto(f"{live_server.url}/projects/{project.pk}/judges/new/")
    page.fill("#id_name", "browser judge")
    page.select_option("#id_endpoint", str(world["endpoint"].pk))
    page.select_option("#id_debiasing", "swap")
    page.select_option("#id_verdict_method", "generate")
    preview = page.locator("#preview pre.prompt-text")
    preview.first.wait_for()
    assert preview.count() == 2  # both orders
    # The preview follows the template as it is typed.
    page.fill("#id_template", "Judge this.\n{conversation}\nOne: {response_a}\nTwo: {response_b}\nMARKER-42")
    page.locator("#preview pre.prompt-text", has_text="MARKER-42").first.wait_for()
    assert page.locator("#preview pre.prompt-text").first.text_content().startswith("Judge this.")
    _shot(page, "judge-form-1440")

    page.click("#judge-test-button")
    page.locator("#judge-test .test-result").wait_for()
    raws = page.locator("#judge-test pre.raw-output")
    assert raws.count() == 2 and raws.nth(0).text_content() == HOSTILE and raws.nth(1).text_content() == HOSTILE
    assert page.locator("#judge-test img").count() == 0 and dialogs == []
    assert page.locator("#judge-test .test-verdict").text_content().count("Tie") == 1  # A first: A, B first: B
    _shot(page, "judge-test-1440")
    assert not AIJudgment.objects.exists()

    # A template without {response_b}: the error is on the template field, nothing saved.
    page.fill("#id_template", "Only {response_a}")
    page.click("button[type=submit]:has-text('Create judge')")
    page.locator("#template-errors").wait_for()
    assert "Missing placeholder {response_b}" in page.locator("#template-errors").text_content()
    assert page.locator("#id_template").get_attribute("aria-invalid") == "true"
    assert not Judge.objects.exists()
    page.fill("#id_template", "{conversation}\nOne: {response_a}\nTwo: {response_b}")
    page.click("button[type=submit]:has-text('Create judge')")
    page.wait_for_url(f"{live_server.url}/projects/{project.pk}/judges/")
    assert Judge.objects.get().name == "browser judge"

    # The run form estimates the chosen judge's run.
    page.select_option("#id_judge", label=f"browser judge · {world['endpoint'].name}")
    page.locator("#estimate dl").wait_for()
    text = page.locator("#estimate").text_content()
    assert "6 pairs to judge × 2 orders" in text and "unknown: no run on this endpoint has finished yet" in text
    _shot(page, "judges-runs-1440")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/projects/{project.pk}/judges/{Judge.objects.get().pk}/edit/")
    page.locator("#preview pre.prompt-text").first.wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the judge form is {width} px wide on a phone"
    _shot(page, "judge-form-390")


def test_report_items_and_review(page, live_server, world):
    project, items = world["project"], world["items"]
    people = UserFactory()
    judge = Judge.objects.create(name="reported", endpoint=world["endpoint"], debiasing="swap")
    for i, item in enumerate(items):
        pair_label_submit(item=item, annotator=people, verdict="A" if i % 2 else "B", strength=2)
        verdict, p = (("tie", 0.5) if i < 2 else ("A", 0.55 + 0.08 * i))
        AIJudgment.objects.create(judge=judge, item=item, template_version=1, verdict=verdict, probability=p,
                                  verdict_ab="A", verdict_ba="B" if verdict == "tie" else "A", prob_a_ab=p,
                                  prob_a_ba=p)
    pair_label_submit(item=items[3], annotator=UserFactory(), verdict="B", strength=2)  # a dispute
    page.set_viewport_size({"width": 1440, "height": 1000})
    login(page, live_server, world["user"].username)
    page.goto(f"{live_server.url}/projects/{project.pk}/judges/")
    svg = page.locator(".judge-report svg.reliability")
    assert svg.is_visible() and svg.bounding_box()["width"] >= 380
    assert "n=" in svg.text_content() and "judge confidence" in svg.text_content()
    assert "2 ties left out" in page.locator(".judge-report figcaption").text_content()
    _shot(page, "judges-report-1440")
    page.set_viewport_size({"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the runs page is {width} px wide on a phone"
    _shot(page, "judges-report-390")

    page.set_viewport_size({"width": 1440, "height": 1000})
    page.click("text=Each pair's verdicts →")
    page.locator("table.items-table").wait_for()
    assert page.locator("table.items-table tr").count() == 7
    _shot(page, "judge-items-1440")
    page.click("table.items-table a:has-text('Review')")
    page.wait_for_url(f"**/projects/{project.pk}/review/?all=1#dispute-{items[3].pk}")
    block = page.locator(f"#dispute-{items[3].pk} table.judge-verdicts")
    assert "reported" in block.text_content() and "A first: A" in block.text_content()
    _shot(page, "review-judge-verdicts-1440")
