"""Review: a reviewer decides a disagreement in the browser and sees the decision taken."""

import os

import pytest

from annotate.models import PairItem
from annotate.services import pair_label_submit
from tests.browser.conftest import login
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SHOTS = os.environ.get("SCREENSHOTS_DIR")  # set to keep screenshots of the pages for a look


def disputed_pairs(n=2):
    project = ProjectFactory(overlap=2)
    reviewer = MembershipFactory(project=project, researcher=True).user
    first, second = MembershipFactory(project=project).user, MembershipFactory(project=project).user
    items = [PairItemFactory(project=project) for _ in range(n)]
    for item in items:
        pair_label_submit(item=item, annotator=first, verdict="A", strength=2)
        pair_label_submit(item=item, annotator=second, verdict="B", strength=3)
    return project, reviewer, items


@pytest.mark.parametrize("width", [1280, 390])
def test_decide_a_disagreement(page, live_server, width):
    page.set_viewport_size({"width": width, "height": 900})
    project, reviewer, items = disputed_pairs()
    login(page, live_server, reviewer.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/review/")
    page.evaluate("window.__samePage = true")  # gone if anything below reloads the page
    decision = page.locator(f"#decision-{items[0].pk}")
    # The verdict starts empty: nothing is decided by a reviewer who did not choose.
    assert decision.locator("select[name=verdict]").input_value() == ""
    assert page.locator("select[name=verdict] option:checked").all_inner_texts() == ["— verdict —"] * 2
    decision.get_by_role("button", name="Decide").click()
    # The browser says the verdict is needed and sends nothing.
    assert decision.locator("select[name=verdict]").evaluate("el => el.validationMessage") != ""
    assert PairItem.objects.get(pk=items[0].pk).final_verdict == ""
    decision.locator("select[name=verdict]").select_option("B")
    decision.locator("select[name=strength]").select_option("3")
    decision.get_by_role("button", name="Decide").click()
    # The page shows the decision at once, in place of the form.
    page.locator(f"#decision-{items[0].pk} [role=status]").wait_for()
    text = page.locator(f"#decision-{items[0].pk}").inner_text()
    assert "Final: B is better (better)" in text and reviewer.username in text
    assert page.locator(f"#decision-{items[0].pk} form").count() == 0
    assert page.evaluate("window.__samePage") is True
    item = PairItem.objects.get(pk=items[0].pk)
    assert (item.final_verdict, item.final_strength, item.adjudicated_by_id) == ("B", 3, reviewer.pk)
    # The other pair is untouched and still offers its form.
    assert PairItem.objects.get(pk=items[1].pk).final_verdict == ""
    assert page.locator(f"#decision-{items[1].pk} select[name=verdict]").input_value() == ""
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/review-decided-{width}.png", full_page=True)
    # Showing decided ones too: the form stays, starting on the stored verdict, and can change it.
    page.goto(f"{live_server.url}/projects/{project.pk}/review/?all=1")
    decision = page.locator(f"#decision-{items[0].pk}")
    assert decision.locator("select[name=verdict]").input_value() == "B"
    assert decision.locator("select[name=strength]").input_value() == "3"
    decision.locator("select[name=verdict]").select_option("tie")
    decision.get_by_role("button", name="Decide").click()
    page.locator(f"#decision-{items[0].pk} [role=status]", has_text="Final: Tie").wait_for()
    assert page.locator(f"#decision-{items[0].pk} select[name=verdict]").input_value() == "tie"
    item.refresh_from_db()
    assert (item.final_verdict, item.final_strength) == ("tie", None)


def test_deciding_without_a_verdict_says_so_when_the_browser_does_not(page, live_server):
    """Without the browser's own check (an old browser, a script), the server answers in place."""
    project, reviewer, items = disputed_pairs(1)
    login(page, live_server, reviewer.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/review/")
    page.locator("select[name=verdict]").evaluate("el => el.removeAttribute('required')")
    page.get_by_role("button", name="Decide").click()
    alert = page.locator(f"#decision-{items[0].pk} [role=alert]")
    alert.wait_for()
    assert alert.inner_text() == "Pick a verdict first."
    assert page.locator("select[name=verdict]").get_attribute("aria-invalid") == "true"
    assert PairItem.objects.get(pk=items[0].pk).final_verdict == ""
    page.locator("select[name=verdict]").select_option("A")
    page.get_by_role("button", name="Decide").click()
    page.locator(f"#decision-{items[0].pk} [role=status]").wait_for()
    assert page.locator(f"#decision-{items[0].pk} [role=alert]").count() == 0
    assert PairItem.objects.get(pk=items[0].pk).final_verdict == "A"


@pytest.mark.django_db
def test_decide_answers_with_the_decision_or_what_is_missing(client):
    """The answer to Decide, without a browser: htmx gets the decision fragment (it was a 500), or what
    is missing (422, nothing stored); a plain POST is redirected back with a message."""
    project, reviewer, items = disputed_pairs(2)
    client.force_login(reviewer)
    url = f"/projects/{project.pk}/review/{items[0].pk}/"
    response = client.post(url, {"verdict": "", "strength": ""}, headers={"HX-Request": "true"})
    assert response.status_code == 422 and "Pick a verdict first." in response.content.decode()
    assert PairItem.objects.get(pk=items[0].pk).final_verdict == ""
    response = client.post(url, {"verdict": "A", "strength": "4"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200 and "Final: A is better (significantly better)" in html
    assert f'id="decision-{items[0].pk}"' in html and "<form" not in html
    response = client.post(f"/projects/{project.pk}/review/{items[1].pk}/", {"verdict": ""}, follow=True)
    assert response.redirect_chain[-1][0] == f"/projects/{project.pk}/review/"
    assert "Pick a verdict first." in response.content.decode()
    assert PairItem.objects.get(pk=items[1].pk).final_verdict == ""
