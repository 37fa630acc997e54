"""The import page in a browser: upload a file no format knows, see its first rows, map its columns
(checked as they change), import it; no Content-Security-Policy violation, at desktop and phone widths."""

import json
import os

import pytest

from annotate.imports import import_job_run
from annotate.models import ImportJob, Prompt
from tests.browser.conftest import csp_watch, login
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SHOTS = os.environ.get("SCREENSHOTS_DIR")
ROWS = [{"input": f"Write a haiku about <b>topic {i}</b>", "output_1": f"first answer {i} " * 8,
         "output_2": f"second answer {i}", "label": 1 + i % 2} for i in range(6)]


@pytest.mark.parametrize("width", [1440, 390])
def test_upload_preview_map_and_import(browser, live_server, tmp_path, settings, monkeypatch, width):
    settings.MEDIA_ROOT = tmp_path / "media"
    queued = []
    monkeypatch.setattr("annotate.imports.job_queue", queued.append)  # no worker here: run it below
    member = MembershipFactory(researcher=True, user__username=f"importer{width}")
    path = tmp_path / "llmbar.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    context = browser.new_context(viewport={"width": width, "height": 900})
    violations = csp_watch(context)
    page = context.new_page()
    login(page, live_server, member.user.username)
    page.goto(f"{live_server.url}/projects/{member.project.pk}/import/")
    assert page.locator("h1").inner_text() == "Import pairs"
    page.set_input_files("input[type=file]", str(path))
    page.get_by_role("button", name="Upload and preview").click()
    page.locator("#preview").wait_for()
    preview = page.locator("#preview").inner_text()
    assert "no format of pairs recognises it" in preview
    assert "<b>topic 0</b>" in preview  # the cell's text, escaped: shown as written, not as markup
    assert page.locator("#preview table.preview b").count() == 0
    # The mapping suggested from the names; a wrong column is refused at once, naming it.
    assert page.input_value("#map_response_b") == "output_2"
    assert page.input_value("select[name=gold_verdict_0]") == "A"  # label 1
    page.select_option("#map_response_b", "output_1")
    page.locator("#preview .import-errors").wait_for()
    assert "output_1: the same text as output_1" in page.locator("#preview .import-errors").inner_text()
    page.select_option("#map_response_b", "output_2")
    page.locator("#preview .import-errors").wait_for(state="detached")
    page.select_option("select[name=gold_verdict_1]", "")  # label 2: no verdict
    page.locator("#preview .import-errors").wait_for()
    assert "line 2, field 'label'" in page.locator("#preview .import-errors").inner_text()
    page.select_option("select[name=gold_verdict_1]", "B")
    page.locator("#preview .import-errors").wait_for(state="detached")
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/import-preview-{width}.png", full_page=True)
    page.get_by_role("button", name="Import", exact=True).click()
    page.wait_for_load_state()
    assert "Queued the import of llmbar.jsonl" in page.locator("body").inner_text()
    [job] = queued
    assert "waiting: next in the default queue" in page.locator("#jobs").inner_text()
    import_job_run(job_id=job.pk)
    job = ImportJob.objects.get()
    assert (job.status, job.items, job.format) == ("done", 6, "mapped"), job.error
    assert [p.metadata["source_preference"] for p in Prompt.objects.order_by("id")] == ["A", "B"] * 3
    page.reload()
    assert "output_1" in page.locator("#jobs").inner_text()
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/import-done-{width}.png", full_page=True)
    context.close()
    assert violations == [], "Content-Security-Policy violations"
