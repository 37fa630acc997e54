"""The annotator's pages on phones (360-414 px, touch) and the reading aids at desktop width: no page wider
than the screen, the vote bar on screen without scrolling, no key hints on touch, math rendered, long
answers with a "more below" cue, Expand and scroll keys, "Saved" after a submit."""

import os

import pytest

from annotate.models import Completion, PairLabel, Project, StepLabel
from annotate.services import step_item_create
from tests.browser.conftest import csp_watch, login
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, PromptFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SHOTS = os.environ.get("SCREENSHOTS_DIR")  # set to keep screenshots of the pages for a look
PHONES = [360, 390, 414]

WIDE_ANSWER = """Here is the plan.

```python
def a_function_with_a_long_line(argument_one, argument_two, argument_three, argument_four, five):
    return argument_one + argument_two + argument_three + argument_four + five  # a long comment too
```

| model | accuracy | latency (ms) | tokens per second | cost per million tokens | notes on the run |
|---|---|---|---|---|---|
| small | 0.71 | 120 | 850 | 0.20 | a short note |
| large | 0.84 | 480 | 210 | 2.40 | a much longer note that goes on |

The result is $(2+2)\\times 3 = 12$, and it costs $5 and $10.

$$\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2} \\quad \\text{for every natural number } n \\geq 1 \\text{ and more text}$$

averylongwordwithoutanyspacesthatwouldotherwisewidenthepagebeyondthescreenofaphone_and_more_and_more
""" + "\n\n".join(f"Paragraph {i}: more reasoning about the question." for i in range(30))


def _pairs_project(n_items=3, turns=5):
    project = ProjectFactory(overlap=1, guidelines="**Ties** only when the answers are equally good.")
    member = MembershipFactory(project=project)
    items = []
    for _ in range(n_items):
        prompt = PromptFactory(project=project, messages=[
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"Turn {i}: a question about sums."}
            for i in range(turns)])
        item = PairItemFactory(project=project, prompt=prompt)
        Completion.objects.filter(pk=item.completion_a_id).update(text=WIDE_ANSWER)
        Completion.objects.filter(pk=item.completion_b_id).update(text="A short answer: $x^2$.",
                                                                  sampling={"finish_reason": "length"})
        items.append(item)
    return project, member.user, items


@pytest.fixture
def phone(browser, request):
    """A phone's browser context (touch, mobile) of the width given by the test's parameter."""
    width = request.param
    context = browser.new_context(viewport={"width": width, "height": 780}, has_touch=True, is_mobile=True,
                                  device_scale_factor=2)
    violations = csp_watch(context)
    page = context.new_page()
    yield page
    context.close()
    assert violations == [], "Content-Security-Policy violations"


def _no_sideways_scroll(page, what):
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{what}: the page is {widths[0]} px wide on a {widths[1]} px screen"


def _shot(page, name):
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)
        page.screenshot(path=f"{SHOTS}/{name}-screen.png")


@pytest.mark.parametrize("phone", PHONES, indirect=True)
def test_pairwise_page_on_a_phone(phone, live_server):
    page = phone
    width = page.viewport_size["width"]
    project, user, items = _pairs_project()
    login(page, live_server, user.username)
    for path in ("/", f"/projects/{project.pk}/"):  # the project list and the project as an annotator sees it
        page.goto(f"{live_server.url}{path}")
        _no_sideways_scroll(page, path)
        _shot(page, f"phone-{width}-{'list' if path == '/' else 'project'}")
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    _no_sideways_scroll(page, "labeling")
    _shot(page, f"phone-{width}-pairwise")
    # Answers titled A and B, one above the other.
    a, b = page.locator(".response[data-side=a]"), page.locator(".response[data-side=b]")
    assert a.locator("h3").inner_text().strip() == "A" and b.locator("h3").inner_text().strip() == "B"
    assert a.bounding_box()["y"] + a.bounding_box()["height"] <= b.bounding_box()["y"]
    # No key hints on a touch screen.
    assert page.locator("kbd").first.is_hidden() and not any(k.is_visible() for k in page.locator("kbd").all())
    # The vote bar is on screen before any scrolling, below the answers' start.
    bar = page.locator(".vote-bar")
    box = bar.bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= page.viewport_size["height"] + 1
    assert page.evaluate("window.scrollY") == 0
    page.locator(".vote-bar label", has_text="B better").tap()
    _shot(page, f"phone-{width}-picked")
    page.locator(".vote-bar .vote-submit").tap()
    page.locator(f"#item:not([data-item='{items[0].pk}'])").wait_for()
    label = PairLabel.objects.get(annotator=user, item=items[0])
    assert label.verdict == label.shown_order[1]  # B as shown
    assert "2 left for you" in page.locator("#progress").inner_text()
    _no_sideways_scroll(page, "labeling after a submit")
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    _no_sideways_scroll(page, "labeling, reloaded")


@pytest.mark.parametrize("phone", PHONES, indirect=True)
def test_steps_page_on_a_phone(phone, live_server):
    page = phone
    width = page.viewport_size["width"]
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS, step_mode=Project.StepMode.RATE_ALL)
    user = MembershipFactory(project=project).user
    steps = ["Let x be the apples: $2x = 10$.",
             "```python\nprint('a rather long line of code that is wider than a phone')\n```",
             "| a | b | c | d | e | f | g |\n|---|---|---|---|---|---|---|\n| 1 | 2 | 3 | 4 | 5 | 6 | 7 |", "So x = 5."]
    item = step_item_create(prompt=PromptFactory(project=project), steps=steps)
    login(page, live_server, user.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    _no_sideways_scroll(page, "steps")
    _shot(page, f"phone-{width}-steps")
    assert not any(k.is_visible() for k in page.locator("kbd").all())
    for i in range(len(steps)):
        page.locator(f"li.step[data-step='{i}'] label", has_text="+1 correct").tap()
    page.locator("#label-form button[type=submit]").first.tap()
    page.locator("#empty-state").wait_for()
    assert StepLabel.objects.get(item=item, annotator=user).ratings == [1, 1, 1, 1]
    assert "All done" in page.locator("#empty-state").inner_text()
    _no_sideways_scroll(page, "steps, all done")


def test_reading_aids_at_desktop_width(page, live_server):
    page.set_viewport_size({"width": 1440, "height": 900})
    project, user, items = _pairs_project()
    login(page, live_server, user.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/annotate/")
    _no_sideways_scroll(page, "labeling at 1440 px")
    # Side by side at desktop width, titled A and B.
    a, b = page.locator(".response[data-side=a]"), page.locator(".response[data-side=b]")
    assert abs(a.bounding_box()["y"] - b.bounding_box()["y"]) < 2
    # Math rendered (MathML), dollar amounts left as text, code highlighted.
    long_side = a if "Paragraph 29" in a.inner_text() else b
    short_side = b if long_side == a else a
    assert long_side.locator("math").count() == 2 and "costs $5 and $10" in long_side.inner_text()
    assert long_side.locator("pre span.tok-k").count() >= 1
    assert long_side.locator("table thead th").count() == 6
    math_box = long_side.locator("math").first.bounding_box()
    assert math_box and math_box["width"] > 10
    # Truncation badge on the short answer only.
    assert short_side.locator(".badge.cut").inner_text() == "cut off (length)"
    assert long_side.locator(".badge.cut").count() == 0
    # The long answer says there is more below; the short one does not.
    assert long_side.locator(".more-below").is_visible() and long_side.locator(".more-cue").is_visible()
    assert short_side.locator(".more-below").is_hidden()
    # Keys scroll each answer: j/k the one titled A, J/K the one titled B.
    key, side = ("j", "a") if long_side == a else ("J", "b")
    page.keyboard.press(key)
    scrolled = f"document.querySelector('.response[data-side={side}] .answer').scrollTop"
    for _ in range(40):  # evaluate, not wait_for_function: the page's CSP allows no eval
        if page.evaluate(scrolled) > 50:
            break
        page.wait_for_timeout(50)
    assert page.evaluate(scrolled) > 50
    # Expand shows it whole.
    long_side.locator(".more-below .expand").click()
    assert long_side.locator(".more-below .expand").inner_text() == "Collapse"
    answer_box = long_side.locator(".answer").bounding_box()
    assert answer_box["height"] > 900
    _no_sideways_scroll(page, "labeling, expanded")
    # The earlier turns are folded; the guidelines are markdown.
    assert page.locator("details.earlier summary").inner_text() == "Show 3 earlier turns"
    page.keyboard.press("g")
    assert page.locator("#guidelines strong").inner_text() == "Ties"
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/desktop-1440-pairwise.png", full_page=True)
    # Submit: "Saved" is said, and the count of what is left goes down.
    page.evaluate("document.activeElement.blur()")  # Enter on the focused Expand button would press it
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    page.locator(f"#item:not([data-item='{items[0].pk}'])").wait_for()
    status = page.locator("#saved-status")
    assert status.get_attribute("role") == "status" and "Saved" in status.inner_text()
    assert "2 left for you" in page.locator("#progress").inner_text()
    # The session's rate is not shown after one label.
    assert page.locator("#session-rate").is_hidden()
    # u edits the last label, Esc cancels the edit: the label stays as it was.
    page.keyboard.press("u")
    page.locator(f"#item[data-item='{items[0].pk}']").wait_for()
    assert page.locator("#cancel-button").is_visible()
    page.keyboard.press("Escape")
    page.locator(f"#item[data-item='{items[1].pk}']").wait_for()
    assert PairLabel.objects.get(annotator=user, item=items[0]).verdict == "tie"
