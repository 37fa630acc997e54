import os

import pytest

from annotate.models import PairLabel
from annotate.views import presentation_order
from tests.browser.conftest import login
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SHOTS = os.environ.get("SCREENSHOTS_DIR")  # set to keep screenshots of the pages for a look


def test_label_three_items_with_the_keyboard_only(page, live_server):
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    items = [PairItemFactory(project=project) for _ in range(4)]
    login(page, live_server, member.user.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    keys = [("1", "x"), ("2", "v"), ("3", None)]  # left better slightly, right better significantly, tie
    seen = []
    for verdict_key, strength_key in keys:
        shown = page.get_attribute("#item", "data-item")
        seen.append(int(shown))
        page.keyboard.press(verdict_key)
        if strength_key:
            page.keyboard.press(strength_key)
        page.keyboard.press("Enter")
        page.locator(f"#item:not([data-item='{shown}'])").wait_for()
    assert seen == [item.pk for item in items[:3]]
    labels = {label.item_id: label for label in PairLabel.objects.filter(annotator=member.user)}
    assert set(labels) == set(seen)
    for item_id, (verdict_key, _) in zip(seen, keys, strict=True):
        label = labels[item_id]
        order = presentation_order(user_id=member.user.pk, item_id=item_id)
        assert label.shown_order == order
        expected = {"1": order[0], "2": order[1], "3": "tie"}[verdict_key]
        assert label.verdict == expected
        assert label.time_spent_ms is not None and label.time_spent_ms > 0
    assert [labels[i].strength for i in seen] == [2, 4, None]
    # u: undo / edit the last label, here changing the tie to "both bad".
    page.keyboard.press("u")
    page.locator(f"#item[data-item='{seen[2]}']").wait_for()
    assert page.is_checked('input[name="choice"][value="tie"]')  # the stored answer is shown
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.locator(f"#item[data-item='{items[3].pk}']").wait_for()
    assert PairLabel.objects.get(annotator=member.user, item_id=seen[2]).verdict == "both_bad"
    assert PairLabel.objects.filter(annotator=member.user).count() == 3


HOSTILE = [
    "<script>fetch('/canary/script')</script>",
    '<img src="/canary/img" onerror="fetch(\'/canary/onerror\')">',
    "[click me](javascript:fetch('/canary/js-link'))",
    '<a href="javascript:alert(1)">js</a>',
    '<div hx-get="/canary/htmx" hx-trigger="load">htmx</div>',
    "</script><script>alert('breakout')</script>",
    "**unclosed *markdown `code",
    '<svg onload="fetch(\'/canary/svg\')"><circle r="5"/></svg>',
    '<iframe src="/canary/iframe"></iframe>',
    '<style>body{background:url("/canary/css")}</style>',
]


def test_hostile_model_output_never_runs(page, live_server):
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    for i, payload in enumerate(HOSTILE):
        item = PairItemFactory(project=project)
        item.prompt.messages = [{"role": "user", "content": payload}]
        item.prompt.save()
        item.completion_a.text = payload
        item.completion_a.model_name = payload[:100]
        item.completion_a.save()
        item.completion_b.text = HOSTILE[(i + 1) % len(HOSTILE)]
        item.completion_b.model_name = "plain-model"
        item.completion_b.save()
    requests, dialogs = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    login(page, live_server, member.user.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    for _ in range(len(HOSTILE)):
        shown = page.get_attribute("#item", "data-item")
        page.wait_for_timeout(150)
        assert "<script>" not in page.inner_html(".pair").lower()
        page.keyboard.press("3")
        page.keyboard.press("Enter")
        page.locator(f"#item:not([data-item='{shown}'])").wait_for()
    assert PairLabel.objects.filter(annotator=member.user).count() == len(HOSTILE)
    # Researchers' pages that show model text or model names: review (after a disagreement),
    # leaderboard, quality, judges, datasets and the admin's lists.
    researcher = MembershipFactory(project=project, researcher=True, user__is_staff=True,
                                   user__is_superuser=True).user
    other = MembershipFactory(project=project).user
    from annotate.services import pair_label_submit

    for label in PairLabel.objects.filter(annotator=member.user):
        pair_label_submit(item=label.item, annotator=other, verdict="A", strength=2)
    page.context.clear_cookies()
    login(page, live_server, researcher.username)
    for path in (f"/projects/{project.pk}/review/", f"/projects/{project.pk}/leaderboard/",
                 f"/projects/{project.pk}/quality/", f"/projects/{project.pk}/judges/",
                 f"/projects/{project.pk}/datasets/", "/admin/annotate/completion/", "/admin/annotate/prompt/"):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        page.wait_for_timeout(200)
    assert page.context.pages == [page]
    for path in ("review", "leaderboard"):  # the hostile text and names are there, as text
        page.goto(f"{live_server.url}/projects/{project.pk}/{path}/")
        assert "&lt;script&gt;" in page.content(), path
    canaries = [url for url in requests if "/canary" in url]
    assert canaries == [] and dialogs == []


@pytest.mark.parametrize("width", [1280, 390])
def test_enter_without_a_verdict_says_pick_one_first(page, live_server, width):
    page.set_viewport_size({"width": width, "height": 900})
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    item = PairItemFactory(project=project)
    login(page, live_server, member.user.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    hint = page.get_by_role("alert")
    assert not hint.is_visible()
    page.keyboard.press("x")  # a strength is no verdict
    page.keyboard.press("Enter")
    assert hint.is_visible() and "Pick a verdict first" in hint.inner_text()
    assert page.get_attribute('[role=radiogroup][aria-label="Verdict"]', "aria-invalid") == "true"
    assert not PairLabel.objects.filter(item=item).exists()
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/pick-a-verdict-{width}.png", full_page=True)
    page.keyboard.press("2")  # picking one clears it
    assert not hint.is_visible()
    assert page.get_attribute('[role=radiogroup][aria-label="Verdict"]', "aria-invalid") is None
    page.keyboard.press("Enter")
    page.locator(f"#item:not([data-item='{item.pk}'])").wait_for()
    label = PairLabel.objects.get(item=item)
    assert label.verdict == presentation_order(user_id=member.user.pk, item_id=item.pk)[1] and label.strength == 2


def test_fast_typing_labels_every_item_in_order_without_a_reload(page, live_server):
    """Keys typed faster than the server answers wait for the next item: every label is stored, on the
    item it was typed for, and no submit falls back to a full page load."""
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    n = 12
    items = [PairItemFactory(project=project) for _ in range(n + 1)]
    login(page, live_server, member.user.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    loads = []
    page.on("load", lambda p: loads.append(p.url))
    page.evaluate("window.__samePage = true")
    verdicts = ["1", "2", "3", "4"]
    for i in range(n):
        page.keyboard.press(verdicts[i % 4], delay=0)
        page.wait_for_timeout(3)
        page.keyboard.press("Enter", delay=0)
        page.wait_for_timeout(3)
    page.locator(f"#item[data-item='{items[n].pk}']").wait_for(timeout=20_000)
    assert loads == [] and page.evaluate("window.__samePage") is True
    labels = list(PairLabel.objects.filter(annotator=member.user).order_by("id"))
    assert [label.item_id for label in labels] == [item.pk for item in items[:n]]
    for i, label in enumerate(labels):
        order = presentation_order(user_id=member.user.pk, item_id=label.item_id)
        assert label.verdict == {"1": order[0], "2": order[1], "3": "tie", "4": "both_bad"}[verdicts[i % 4]]
