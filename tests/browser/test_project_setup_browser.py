"""A researcher sets a project up in the browser: the New project page (live preview, criteria as tags), the
Members page (an annotator account with its password shown once), then on to the import; the pages fit a
phone's width."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from annotate.models import Membership, Project
from annotate.roles import researcher_grant
from tests.browser.conftest import csp_watch, login
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
SHOTS = Path(os.environ.get("SHOTS_DIR", "/tmp/shots-setup"))


def _shot(page, name: str) -> None:
    if SHOTS.parent.exists():
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_a_researcher_creates_a_project_adds_an_annotator_and_lands_on_import(page, live_server):
    researcher_grant(user=UserFactory(username="rita"))
    login(page, live_server, "rita")
    page.click("text=New project")
    page.wait_for_url(f"{live_server.url}/projects/new/")
    page.check("input[name=task_kind][value=pairwise]")
    assert not page.is_visible("#id_step_mode")  # steps projects only
    page.check("input[name=task_kind][value=steps]")
    assert page.is_visible("#id_step_mode")
    page.check("input[name=task_kind][value=pairwise]")
    page.fill("#id_name", "Helpfulness, in the browser")
    page.fill("#id_guidelines", "# Read both\n\nPick the **more helpful** answer.")
    page.wait_for_selector("#guidelines-preview strong:text('more helpful')")
    assert page.inner_html("#guidelines-preview h1") == "Read both"
    page.type("#id_criteria", "helpfulness")
    page.keyboard.press("Enter")
    page.type("#id_criteria", "harmlessness,honesty,")
    assert page.locator(".tags .tag").count() == 3
    page.click(".tag:has-text('honesty') button")
    assert page.locator(".tags .tag").count() == 2
    page.fill("#id_overlap", "3")
    page.fill("#id_gold_rate", "0.05")
    _shot(page, "new-project-1440")
    page.click("button:text('Create project')")
    project = Project.objects.get(name="Helpfulness, in the browser")
    page.wait_for_url(f"{live_server.url}/projects/{project.pk}/members/")
    assert project.criteria == ["helpfulness", "harmlessness"] and project.overlap == 3

    page.fill("#create-account #id_username", "annie")
    page.click("#create-account button[type=submit]")
    password = page.inner_text("#created-password")
    assert len(password) >= 16
    membership = Membership.objects.get(project=project, user__username="annie")
    assert membership.role == Membership.Role.ANNOTATOR and membership.user.check_password(password)
    assert page.locator("table.members tr:has-text('annie')").count() == 1
    _shot(page, "members-1440")
    page.click("text=Import pairs →")
    page.wait_for_url(f"{live_server.url}/projects/{project.pk}/import/")


def test_field_errors_show_next_to_their_fields(page, live_server):
    researcher_grant(user=UserFactory(username="rita"))
    login(page, live_server, "rita")
    page.goto(f"{live_server.url}/projects/new/")
    page.fill("#id_name", "Errors")
    page.fill("#id_overlap", "0")
    page.click("button:text('Create project')")
    assert page.locator("#id_overlap[aria-invalid=true]").count() == 1
    assert "greater than or equal to 1" in page.inner_text(".field:has(#id_overlap)")
    assert not Project.objects.filter(name="Errors").exists()


@pytest.mark.parametrize("path", ["/", "/projects/new/", "members"])
def test_the_setup_pages_fit_a_phone(browser, live_server, path):
    user = UserFactory(username="rita")
    researcher_grant(user=user)
    project = Project.objects.create(name="A project with a rather long name to wrap", overlap=2)
    Membership.objects.create(project=project, user=user, role=Membership.Role.RESEARCHER)
    Membership.objects.create(project=project, user=UserFactory(username="an-annotator-with-a-long-name",
                                                                email="annotator.long@example.org"))
    context = browser.new_context(viewport={"width": 390, "height": 844})
    violations = csp_watch(context)
    page = context.new_page()
    try:
        login(page, live_server, "rita")
        page.goto(live_server.url + (f"/projects/{project.pk}/members/" if path == "members" else path))
        _shot(page, f"{path.strip('/').replace('/', '-') or 'projects'}-390")
        assert _page_width(page) <= 390
        logout = page.locator("header.top button:text('Log out')").bounding_box()
        assert logout["x"] + logout["width"] <= 390
    finally:
        context.close()
    assert violations == []
