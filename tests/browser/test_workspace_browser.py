"""The whole workspace in the app, as its users meet it, under the strict CSP: a researcher creates a project,
adds an annotator, imports the LLMBar sample through a column mapping (and a small file of their own with
math), and tests an AI judge on one pair (both orders shown); the annotator then labels on a 390 px phone with
no sideways scroll, and reads highlighted code and rendered math."""

from __future__ import annotations

import json

import pytest

from annotate.imports import import_job_run
from annotate.models import ImportJob, Membership, PairItem, PairLabel, Project
from annotate.roles import researcher_grant
from synth.backends.loader import backend_cache_clear
from synth.models import ModelEndpoint
from tests.browser.conftest import csp_watch, login
from tests.conftest import SHARED_DATA
from tests.factories import UserFactory
from tests.http_server import Server

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LLMBAR = SHARED_DATA / "llmbar" / "LLMBar_Natural.jsonl"
# A file of the researcher's own, in LLMBar's columns: math, a table, and a dollar amount that stays text.
OWN_ROWS = [
    {"input": "What is $(2+2)\\times 3$? Show the steps.",
     "output_1": "First $2+2=4$, then $4\\times 3=12$:\n\n$$(2+2)\\times 3 = 12$$",
     "output_2": "It costs $5 and $10, so the answer is 15.", "label": 1},
    {"input": "Compare two sorting algorithms in a table.",
     "output_1": "| algorithm | average |\n|---|---|\n| quicksort | O(n log n) |\n| bubble sort | O(n^2) |",
     "output_2": "Quicksort is faster.", "label": 2},
]


def _no_sideways_scroll(page, what: str) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{what}: the page is {width} px wide on a {inner} px screen"


def _import_through_the_mapping(page, live_server, project, path, queued) -> ImportJob:
    """Upload, check the suggested mapping (output_1 / output_2, label 1 → A, 2 → B), import, run the job."""
    page.goto(f"{live_server.url}/projects/{project.pk}/import/")
    page.set_input_files("input[type=file]", str(path))
    page.get_by_role("button", name="Upload and preview").click()
    page.locator("#preview").wait_for()
    assert page.input_value("#map_prompt") == "input"
    assert page.input_value("#map_response_a") == "output_1" and page.input_value("#map_response_b") == "output_2"
    assert page.input_value("select[name=gold_verdict_0]") == "A"  # label 1
    assert page.input_value("select[name=gold_verdict_1]") == "B"  # label 2
    assert page.locator("#preview .import-errors").count() == 0
    page.get_by_role("button", name="Import", exact=True).click()
    page.locator("#jobs", has_text=path.name).wait_for()
    job = queued.pop()
    import_job_run(job_id=job.pk)  # what the worker does with the queued job
    job.refresh_from_db()
    assert job.status == "done", job.error
    return job


def test_a_project_set_up_imported_judged_and_labeled_in_the_app(browser, live_server, tmp_path, settings,
                                                                 monkeypatch):
    if not LLMBAR.exists():
        pytest.skip("the shared LLMBar sample is absent")
    settings.MEDIA_ROOT = tmp_path / "media"
    queued: list[ImportJob] = []
    monkeypatch.setattr("annotate.imports.job_queue", queued.append)
    backend_cache_clear()
    server = Server(reply=lambda n: "Output (1) is better." if n % 2 else "[[B]]")
    own = tmp_path / "own-math.jsonl"
    own.write_text("".join(json.dumps(row) + "\n" for row in OWN_ROWS))
    researcher_grant(user=UserFactory(username="rita"))

    desk = browser.new_context(viewport={"width": 1440, "height": 1000})
    violations = csp_watch(desk)
    page = desk.new_page()
    try:
        # 1. The project, in the app.
        login(page, live_server, "rita")
        page.click("text=New project")
        page.check("input[name=task_kind][value=pairwise]")
        page.fill("#id_name", "Instruction following")
        page.fill("#id_guidelines", "Pick the answer that **follows the instruction**.")
        page.fill("#id_overlap", "1")
        page.click("button:text('Create project')")
        project = Project.objects.get(name="Instruction following")
        page.wait_for_url(f"{live_server.url}/projects/{project.pk}/members/")

        # 2. An annotator account, its password shown once.
        page.fill("#create-account #id_username", "annie")
        page.click("#create-account button[type=submit]")
        password = page.inner_text("#created-password")
        assert Membership.objects.get(project=project, user__username="annie").role == Membership.Role.ANNOTATOR

        # 3. The researcher's own small file first, then LLMBar's 100 pairs, both through the column mapping.
        page.click("text=Import pairs →")
        page.wait_for_url(f"{live_server.url}/projects/{project.pk}/import/")
        assert _import_through_the_mapping(page, live_server, project, own, queued).items == 2
        job = _import_through_the_mapping(page, live_server, project, LLMBAR, queued)
        columns = job.mapping["columns"]
        assert (job.items, columns["response_a"], columns["gold"]) == (100, "output_1", "label")
        assert PairItem.objects.filter(project=project).count() == 102
        golds = [json.loads(line)["label"] for line in LLMBAR.read_text().splitlines()]
        stored = list(PairItem.objects.filter(project=project).order_by("id")
                      .values_list("prompt__metadata__source_preference", flat=True))[2:]
        assert stored == [{1: "A", 2: "B"}[g] for g in golds]

        # 4. A judge on an OpenAI-compatible server, tested on one pair: both orders' answers and the verdict.
        endpoint = ModelEndpoint.objects.create(name="judge-server", kind="openai", path="judge",
                                                base_url=server.url)
        page.goto(f"{live_server.url}/projects/{project.pk}/judges/new/")
        page.fill("#id_name", "order-swapping judge")
        page.select_option("#id_endpoint", str(endpoint.pk))
        page.select_option("#id_debiasing", "swap")
        page.select_option("#id_verdict_method", "generate")
        page.locator("#preview pre.prompt-text").first.wait_for()
        page.click("#judge-test-button")
        page.locator("#judge-test .test-result").wait_for()
        raws = [t.strip() for t in page.locator("#judge-test pre.raw-output").all_text_contents()]
        assert sorted(raws) == ["Output (1) is better.", "[[B]]"]
        assert page.locator("#judge-test .test-verdict").count() >= 1
    finally:
        desk.close()
        server.close()
        backend_cache_clear()

    # 5. The annotator, on a phone: labels, never scrolls sideways, reads rendered math and highlighted code.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    violations += csp_watch(phone)
    page = phone.new_page()
    try:
        login(page, live_server, "annie", password=password)
        page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
        seen = {"math": False, "code": False, "table": False}
        for labeled in range(40):
            page.locator("#item[data-item]").wait_for()
            _no_sideways_scroll(page, f"labeling, pair {labeled + 1}")
            answers = page.locator(".pair .response")
            if labeled == 0:  # the math as math, the dollar amounts as text
                assert "It costs $5 and $10" in page.locator(".pair").inner_text()
            seen["math"] |= answers.locator("math").count() > 0
            seen["code"] |= answers.locator("pre span[class^='tok-']").count() > 0
            seen["table"] |= answers.locator("table").count() > 0
            if all(seen.values()):
                break
            item = page.get_attribute("#item", "data-item")
            page.locator(".vote-bar label", has_text="A better").tap()
            page.locator(".vote-bar .vote-submit").tap()
            page.locator(f"#item:not([data-item='{item}'])").wait_for()
        assert seen == {"math": True, "code": True, "table": True} and labeled > 20, (seen, labeled)
        assert PairLabel.objects.filter(annotator__username="annie").count() == labeled
        assert f"{102 - labeled} left for you" in page.locator("#progress").inner_text()
    finally:
        phone.close()
    assert violations == [], "Content-Security-Policy violations"
