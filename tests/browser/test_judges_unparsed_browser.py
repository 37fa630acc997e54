"""The judge runs page shows each run's unparsed answers: model text, escaped, under the strict CSP, also in the
fragment the page polls while a run is running."""

from datetime import timedelta

import pytest
from django.utils import timezone

from judges.models import Judge, JudgeRun
from synth.models import ModelEndpoint
from tests.browser.conftest import login
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script> Both have merits.'


def test_unparsed_answers_are_shown_escaped(page, live_server):
    member = MembershipFactory(researcher=True, user__username="unparsed-researcher")
    project = member.project
    judge = Judge.objects.create(name="talker", endpoint=ModelEndpoint.objects.create(name="m", path="unused"),
                                 verdict_method="generate")
    now = timezone.now()
    JudgeRun.objects.create(judge=judge, project=project, status="running", started_at=now, heartbeat_at=now,
                            lease_until=now + timedelta(seconds=60), lease_token="t", progress=2, total=8,
                            answers=40, unparsed=3, unparsed_examples=[HOSTILE, "I like them both."])
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    login(page, live_server, member.user.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/judges/")
    cell = page.locator("#runs details.unparsed")
    assert page.locator("#runs").get_by_text("3 of 40").is_visible()
    # The running run makes the page poll: wait for a swap of the fragment, then open the examples.
    with page.expect_response(lambda r: f"/projects/{project.pk}/judges/" in r.url and r.request.headers.get(
            "hx-request") == "true"):
        pass
    cell.locator("summary").click()
    shown = cell.locator("pre.raw-answer")
    assert shown.nth(0).text_content() == HOSTILE and shown.nth(1).text_content() == "I like them both."
    assert shown.nth(0).evaluate("e => getComputedStyle(e).whiteSpace") == "pre-wrap"  # app.css, not inline
    assert page.locator("#runs img").count() == 0 and dialogs == []
