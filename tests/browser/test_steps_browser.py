import os

import pytest

from annotate.models import Project, StepLabel
from annotate.services import step_item_create
from tests.browser.conftest import login
from tests.factories import MembershipFactory, ProjectFactory, PromptFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SHOTS = os.environ.get("SCREENSHOTS_DIR")  # set to keep screenshots of the pages for a look
STEPS = ["Let x be the apples.", "Then 2x = 10.", "So x = 6.", "The answer is 6."]


@pytest.mark.parametrize("mode", [Project.StepMode.RATE_ALL, Project.StepMode.FIRST_ERROR])
def test_rate_steps_with_the_keyboard(page, live_server, mode):
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS, step_mode=mode)
    member = MembershipFactory(project=project)
    items = [step_item_create(prompt=PromptFactory(project=project), steps=STEPS) for _ in range(2)]
    login(page, live_server, member.user.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    assert page.get_attribute("#item", "data-item") == str(items[0].pk)
    # Step 1 +1, step 2 +1, step 3 -1 (the error). A rating moves to the next step, except a -1 in
    # first-error mode, which ends the rating there and disables the later steps.
    for key in ("1", "1", "3"):
        page.keyboard.press(key)
    if mode == Project.StepMode.RATE_ALL:
        page.keyboard.press("j")  # already on step 4: stays there
        page.keyboard.press("k")  # step 3
        page.keyboard.press("j")  # step 4
        page.keyboard.press("3")  # step 4: -1
    else:
        assert page.is_disabled('input[name="rating_3"][value="1"]')
        assert page.input_value('select[name="finish_reason"]') == "found_error"
    page.keyboard.press("k")  # one step back (rate all: step 3; first error: step 2), flagged
    page.keyboard.press("f")
    page.keyboard.press("n")  # final answer incorrect
    if mode == Project.StepMode.RATE_ALL:
        page.select_option('select[name="finish_reason"]', "found_error")
        page.focus("body")
    page.keyboard.press("Enter")
    page.locator(f"#item[data-item='{items[1].pk}']").wait_for()
    label = StepLabel.objects.get(item=items[0], annotator=member.user)
    expected = [1, 1, -1, -1] if mode == Project.StepMode.RATE_ALL else [1, 1, -1, None]
    assert label.ratings == expected
    assert label.outcome == "incorrect" and label.finish_reason == "found_error"
    assert label.flags == ([2] if mode == Project.StepMode.RATE_ALL else [1])
    assert label.time_spent_ms and label.time_spent_ms > 0


@pytest.mark.parametrize("width", [1280, 390])
def test_a_refused_submit_keeps_what_was_entered_and_marks_the_missing_steps(page, live_server, width):
    page.set_viewport_size({"width": width, "height": 900})
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS, step_mode=Project.StepMode.RATE_ALL)
    member = MembershipFactory(project=project)
    items = [step_item_create(prompt=PromptFactory(project=project), steps=STEPS) for _ in range(2)]
    login(page, live_server, member.user.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    page.keyboard.press("1")  # step 1: +1, now on step 2
    page.keyboard.press("j")  # step 2 left unrated, now on step 3
    page.keyboard.press("f")  # step 3 flagged
    page.keyboard.press("3")  # step 3: -1, now on step 4 (left unrated)
    page.keyboard.press("n")  # final answer incorrect
    page.select_option('select[name="finish_reason"]', "found_error")
    page.click("summary:has-text('corrected step')")
    page.select_option('select[name="corrected_step_index"]', "2")
    page.fill('textarea[name="corrected_step"]', "So x = 5.")
    page.wait_for_timeout(300)
    page.keyboard.press("Escape")  # out of the text field: keys label again
    page.keyboard.press("Enter")
    page.get_by_role("alert").wait_for()
    # Refused (steps 2 and 4 are not rated), and said so, with everything entered still there.
    assert "Not rated yet: steps 2, 4." in page.get_by_role("alert").inner_text()
    assert not StepLabel.objects.filter(item=items[0]).exists()
    assert page.get_attribute("#item", "data-item") == str(items[0].pk)
    assert page.is_checked('input[name="rating_0"][value="1"]')
    assert page.is_checked('input[name="rating_2"][value="-1"]') and page.is_checked('input[name="flag_2"]')
    assert page.is_checked('input[name="outcome"][value="incorrect"]')
    assert page.input_value('select[name="finish_reason"]') == "found_error"
    assert page.input_value('select[name="corrected_step_index"]') == "2"
    assert page.input_value('textarea[name="corrected_step"]') == "So x = 5."
    assert int(page.input_value('input[name="time_spent_ms"]')) >= 300
    missing = page.locator("li.step.missing")
    assert [li.get_attribute("data-step") for li in missing.all()] == ["1", "3"]
    assert missing.first.locator("[role=radiogroup]").get_attribute("aria-invalid") == "true"
    assert "Step 2 is not rated yet." in missing.first.inner_text()
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/steps-refused-{width}.png", full_page=True)
    # The keys start at the first missing step: rate it, move to step 4, rate it, submit.
    page.keyboard.press("2")  # step 2: 0, now on step 3
    assert page.locator("li.step.missing").count() == 1
    page.keyboard.press("j")
    page.keyboard.press("1")  # step 4: +1
    page.keyboard.press("Enter")
    page.locator(f"#item[data-item='{items[1].pk}']").wait_for()
    label = StepLabel.objects.get(item=items[0], annotator=member.user)
    assert label.ratings == [1, 0, -1, 1] and label.flags == [2]
    assert (label.outcome, label.finish_reason) == ("incorrect", "found_error")
    assert (label.corrected_step_index, label.corrected_step) == (2, "So x = 5.")
    assert label.time_spent_ms >= 300
