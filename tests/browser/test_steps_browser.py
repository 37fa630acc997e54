import pytest

from annotate.models import Project, StepLabel
from annotate.services import step_item_create
from tests.browser.conftest import login
from tests.factories import MembershipFactory, ProjectFactory, PromptFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

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
    page.wait_for_function(f"document.querySelector('#item').dataset.item === '{items[1].pk}'")
    label = StepLabel.objects.get(item=items[0], annotator=member.user)
    expected = [1, 1, -1, -1] if mode == Project.StepMode.RATE_ALL else [1, 1, -1, None]
    assert label.ratings == expected
    assert label.outcome == "incorrect" and label.finish_reason == "found_error"
    assert label.flags == ([2] if mode == Project.StepMode.RATE_ALL else [1])
    assert label.time_spent_ms and label.time_spent_ms > 0
