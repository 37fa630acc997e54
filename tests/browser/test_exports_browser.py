"""Exports in the browser: the preview appears by itself and follows the options, an identical snapshot
asks for confirmation; a steps project pages through its solutions. At desktop and phone width, no CSP
violation."""

import os
from pathlib import Path

import pytest
from django.urls import reverse

from annotate.models import Project, Prompt, StepItem
from tests.browser.conftest import csp_watch, login
from tests.factories import MembershipFactory, PairLabelFactory
from training.models import DatasetSnapshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = os.environ.get("SCREENSHOTS_DIR")  # set to keep screenshots of the pages for a look


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture
def context_at(browser):
    contexts = []

    def make(width: int):
        context = browser.new_context(viewport={"width": width, "height": 900})
        contexts.append((context, csp_watch(context)))
        return context.new_page()

    yield make
    for context, violations in contexts:
        context.close()
        assert violations == [], "Content-Security-Policy violations"


@pytest.mark.parametrize("width", [1440, 390])
def test_preview_dropped_counts_and_an_identical_snapshot(context_at, live_server, width, media):
    member = MembershipFactory(researcher=True, user__username=f"exporter{width}")
    project = member.project
    for i in range(11):
        PairLabelFactory(item__project=project, verdict="tie" if i < 2 else "A", strength=None if i < 2 else 3,
                         item__completion_a__text=f"<b>not bold {i}</b>")
    page = context_at(width)
    login(page, live_server, member.user.username)
    page.goto(live_server.url + reverse("training:datasets", args=[project.pk]))
    count = page.locator("#preview .export-count")
    count.wait_for()
    assert "9 rows" in count.inner_text() and "(2 ties dropped)" in count.inner_text()
    assert "<b>not bold" in page.locator("pre.rows-preview").inner_text(), "model text shown as text"
    shot(page, f"datasets-preview-{width}")

    page.fill("#id_name", "prefs-v1")
    page.click("button[value=create]")
    # The form posts to the page it is on: wait for the new row, not for the address.
    page.locator("table.snapshots", has_text="prefs-v1").wait_for()
    assert "9 rows (2 ties dropped)" in page.locator("table.snapshots").inner_text()
    # The preview now names the identical snapshot, and exporting again asks first.
    page.locator("#preview .identical").wait_for()
    assert "Identical to prefs-v1" in page.locator("#preview .identical").inner_text()
    page.fill("#id_name", "prefs-v2")
    page.click("button[value=create]")
    page.locator(".errorlist").wait_for()
    assert DatasetSnapshot.objects.count() == 1
    shot(page, f"datasets-identical-{width}")
    page.locator("#preview input[name=allow_duplicate]").check()
    page.click("button[value=create]")
    page.locator("table.snapshots", has_text="prefs-v2").wait_for()
    assert DatasetSnapshot.objects.count() == 2
    shot(page, f"datasets-list-{width}")


@pytest.mark.parametrize("width", [1440, 390])
def test_a_steps_project_pages_through_solutions(context_at, live_server, width):
    member = MembershipFactory(researcher=True, user__username=f"steps{width}",
                               project__task_kind=Project.TaskKind.STEPS)
    project = member.project
    prompts = Prompt.objects.bulk_create([Prompt(project=project, messages=[{"role": "user", "content": f"P {i}"}])
                                          for i in range(120)])
    StepItem.objects.bulk_create([StepItem(project=project, prompt=p, steps=["a", "b"]) for p in prompts])
    page = context_at(width)
    login(page, live_server, member.user.username)
    page.goto(live_server.url + reverse("annotate:project_detail", args=[project.pk]))
    assert page.get_by_role("link", name="Leaderboard").count() == 0
    assert page.get_by_role("link", name="Import solutions").count() == 1
    shot(page, f"steps-project-{width}")
    page.locator("nav.pager").first.get_by_role("link", name="3", exact=True).click()
    page.wait_for_url("**?page=3#solutions")
    pagers = page.locator("nav.pager")
    assert pagers.count() == 2, "above and below the list"
    for i in range(2):
        assert "101–120 of 120" in pagers.nth(i).inner_text()
        assert pagers.nth(i).get_by_role("link", name="2", exact=True).count() == 1
    assert page.locator("table.list tr").count() == 21  # a header and 20 solutions
    shot(page, f"steps-project-page3-{width}")
    page.goto(live_server.url + reverse("training:datasets", args=[project.pk]))
    page.locator("#preview .export-count").wait_for()
    shot(page, f"steps-datasets-{width}")


@pytest.mark.parametrize("width", [1440, 390])
def test_filters_a_split_layout_and_the_compare_page(context_at, live_server, width, media):
    member = MembershipFactory(researcher=True, user__username=f"filters{width}")
    project = member.project
    for i in range(12):
        PairLabelFactory(item__project=project, item__prompt__messages=[{"role": "user", "content": f"q{i}?"}],
                         verdict="A", strength=4 if i < 5 else 1, annotator__username=f"ann{width}-{i % 2}")
    page = context_at(width)
    login(page, live_server, member.user.username)
    page.goto(live_server.url + reverse("training:datasets", args=[project.pk]))
    page.locator("#preview .export-count", has_text="12 rows").wait_for()
    # A filter narrows the preview as it changes: the agreeing votes' strength.
    page.locator("#export-filters summary").click()
    page.fill("#id_min_strength", "3")
    page.locator("#id_min_strength").dispatch_event("change")
    page.locator("#preview .export-count", has_text="5 rows").wait_for()
    assert "7 weaker than asked for" in page.locator("#preview").inner_text()
    page.locator("#export-layout summary").click()
    page.fill("#id_test_share", "0.4")
    shot(page, f"datasets-filters-{width}")
    page.fill("#id_name", "strong-split")
    page.click("button[value=create]")
    page.locator("table.snapshots", has_text="strong-split").wait_for()
    snapshot = DatasetSnapshot.objects.get(name="strong-split")
    assert set(snapshot.manifest["splits"]) <= {"train", "test"} and snapshot.rows == 5
    assert "split" in page.locator("table.snapshots").inner_text()
    # A second snapshot of every row (the page came back with its sections closed), then the compare page.
    page.fill("#id_name", "all")
    page.click("button[value=create]")
    page.locator("table.snapshots", has_text="all").wait_for()
    page.get_by_role("link", name="Compare two snapshots →").click()
    page.locator(".diff-counts").wait_for()
    assert "7 added" in " ".join(page.locator(".diff-counts").inner_text().split())
    width_now, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width_now <= inner, f"the compare page is {width_now} px wide on a {inner} px screen"
    shot(page, f"datasets-compare-{width}")
