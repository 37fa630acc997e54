"""The main pages at desktop (1440 px) and phone (390 px) width, with realistic content (code, math, a table,
a long conversation, a cut-off answer, disagreements, a judge's report, a snapshot): each answers 200, fits its
width with no sideways scroll and runs under the strict CSP.

The screenshots in docs/screenshots/ are made by this test:

    SCREENSHOTS_DIR=docs/screenshots bin/test tests/browser/test_main_pages_browser.py
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from annotate.models import Completion, Project
from annotate.roles import researcher_grant
from annotate.services import pair_label_submit, step_item_create, step_label_submit
from judges.models import AIJudgment, Judge
from synth.models import ModelEndpoint
from tests.browser.conftest import csp_watch, login
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, PromptFactory, UserFactory
from training.services import snapshot_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = os.environ.get("SCREENSHOTS_DIR")

GUIDELINES = """Pick the answer that **helps the user more**: correct first, then clear, then concise.

- **Ties**: only when neither answer is better in any way that matters.
- **Both bad**: both are wrong, unsafe or off-topic.
- Cut-off answers are judged on what is there."""

CODE = """To reverse a list in place, use `list.reverse()`; for a reversed copy, slice it:

```python
def reversed_copy(items: list[int]) -> list[int]:
    \"\"\"A new list, last item first.\"\"\"
    return items[::-1]

numbers = [1, 2, 3]
numbers.reverse()  # [3, 2, 1]
```

| way | copies? | cost |
|---|---|---|
| `items[::-1]` | yes | O(n) |
| `items.reverse()` | no | O(n) |
"""

MATH = """First $2 + 2 = 4$, then multiply by three:

$$(2+2) \\times 3 = 12$$

In general $\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}$, which costs $5 less than you think."""

CONVERSATION = [
    {"role": "user", "content": "I am planning a garden. What grows well in shade?"},
    {"role": "assistant", "content": "Ferns, hostas and hellebores all do well in shade."},
    {"role": "user", "content": "Which of those flower in winter?"},
    {"role": "assistant", "content": "Hellebores: they flower from late winter into spring."},
    {"role": "user", "content": "How do I reverse a Python list, and what is (2+2)×3?"},
]


def _pair(project, messages, a, b, *, models=("model-large", "model-small"), cut_b=False):
    item = PairItemFactory(project=project, prompt=PromptFactory(project=project, messages=messages))
    Completion.objects.filter(pk=item.completion_a_id).update(text=a, model_name=models[0])
    Completion.objects.filter(pk=item.completion_b_id).update(
        text=b, model_name=models[1], sampling={"finish_reason": "length"} if cut_b else {})
    return item


def site() -> dict:
    rng = random.Random(7)
    rita = UserFactory(username="rita", is_staff=True, is_superuser=True)
    researcher_grant(user=rita)
    annie, ben = UserFactory(username="annie"), UserFactory(username="ben")
    pairs = ProjectFactory(name="Helpful answers", guidelines=GUIDELINES, overlap=2,
                           criteria=["helpfulness", "honesty"])
    for user, role in ((rita, "researcher"), (annie, "annotator"), (ben, "annotator")):
        MembershipFactory(project=pairs, user=user, researcher=role == "researcher")
    labeled = []
    for i in range(14):
        labeled.append(_pair(pairs, [{"role": "user", "content": f"Explain topic {i} in two sentences."}],
                             f"Topic {i} is explained here in two clear sentences. It covers the main point.",
                             f"Topic {i}: a shorter take.",
                             models=("model-large", "model-small") if i % 3 else ("model-small", "model-large")))
    _pair(pairs, CONVERSATION, CODE + "\n" + MATH,
          "Use `sorted(items, reverse=True)`. And (2+2)×3 is 12 because you add first and then", cut_b=True)
    for i in range(6):
        _pair(pairs, [{"role": "user", "content": f"Write a haiku about season {i}."}],
              "Snow on the cedar\nthe kettle starts its low song\nnight comes in early", "Cold. Dark. Tea.")
    for i, item in enumerate(labeled):
        pair_label_submit(item=item, annotator=annie, verdict="A" if i % 4 else "B", strength=rng.choice([1, 2, 3]),
                          shown_order="AB" if i % 2 else "BA", time_spent_ms=rng.randint(8_000, 40_000),
                          rationale="A is more complete." if i % 4 else "")
        pair_label_submit(item=item, annotator=ben, verdict="A" if i % 5 else "tie", strength=2,
                          shown_order="BA" if i % 2 else "AB", time_spent_ms=rng.randint(8_000, 40_000))
    endpoint = ModelEndpoint.objects.create(name="judge-8b", kind="openai", path="judge-8b",
                                            base_url="http://127.0.0.1:9/v1")
    judge = Judge.objects.create(name="pairwise judge", endpoint=endpoint, debiasing="swap",
                                 verdict_method="generate")
    for i, item in enumerate(labeled):
        ab, ba = ("A", "A") if i % 3 else ("A", "B")
        AIJudgment.objects.create(judge=judge, item=item, template_version=judge.template_version,
                                  verdict=ab if ab == ba else "tie", verdict_ab=ab, verdict_ba=ba,
                                  probability=0.9 if ab == ba else 0.5, prompt_tokens=420, completion_tokens=12)
    snapshot_create(project=pairs, name="helpful-v1", user=rita)

    steps = ProjectFactory(name="Math reasoning steps", task_kind=Project.TaskKind.STEPS, overlap=2,
                           guidelines="Rate each step: **+1** correct and useful, **0** neutral, **−1** wrong.")
    for user, role in ((rita, "researcher"), (annie, "annotator"), (ben, "annotator")):
        MembershipFactory(project=steps, user=user, researcher=role == "researcher")
    solutions = [step_item_create(prompt=PromptFactory(project=steps, messages=[
        {"role": "user", "content": f"A shop sells pens at $3 each. How much do {n} pens cost?"}]),
        steps=[f"Each pen costs $3, and we buy {n} pens.", f"So the cost is $3 \\times {n}$.",
               f"$3 \\times {n} = {3 * n + (1 if n % 2 else 0)}$.", f"The answer is {3 * n + (1 if n % 2 else 0)}."])
        for n in range(2, 9)]
    for item in solutions[:4]:
        step_label_submit(item=item, annotator=ben, ratings=[1, 1, -1, -1], finish_reason="found_error")
    step_label_submit(item=solutions[0], annotator=rita, ratings=[1, 1, 1, 1], finish_reason="solution")
    return {"pairs": pairs, "steps": steps, "judge": judge, "solution": solutions[1]}


def pages(s) -> list[tuple[str, str, str]]:
    """(who, name, path): the researcher's pages, then the annotator's."""
    p, st, j = s["pairs"].pk, s["steps"].pk, s["judge"].pk
    return [
        ("rita", "projects", "/"), ("rita", "new-project", "/projects/new/"),
        ("rita", "project", f"/projects/{p}/"), ("rita", "members", f"/projects/{p}/members/"),
        ("rita", "import", f"/projects/{p}/import/"), ("rita", "quality", f"/projects/{p}/quality/"),
        ("rita", "review", f"/projects/{p}/review/?all=1"), ("rita", "judges", f"/projects/{p}/judges/"),
        ("rita", "judge-form", f"/projects/{p}/judges/{j}/edit/"),
        ("rita", "judge-verdicts", f"/projects/{p}/judges/{j}/items/"),
        ("rita", "leaderboard", f"/projects/{p}/leaderboard/"), ("rita", "datasets", f"/projects/{p}/datasets/"),
        ("rita", "generation", f"/projects/{p}/synthesis/"), ("rita", "endpoints", "/endpoints/"),
        ("rita", "steps-project", f"/projects/{st}/"), ("rita", "steps-quality", f"/projects/{st}/quality/"),
        ("rita", "steps-review", f"/projects/{st}/review/"),
        ("annie", "annotator-projects", "/"),
        ("annie", "labeling", f"/projects/{p}/annotate/"), ("annie", "labeling-steps", f"/projects/{st}/annotate/"),
    ]


@pytest.mark.parametrize("width", [1440, 390])
def test_the_main_pages_fit_and_run_under_the_policy(browser, live_server, tmp_path, settings, width):
    settings.MEDIA_ROOT = tmp_path / "media"
    s = site()
    phone = width < 600
    context = browser.new_context(viewport={"width": width, "height": 900 if not phone else 844},
                                  has_touch=phone, is_mobile=phone)
    violations = csp_watch(context)
    page = context.new_page()

    def shot(name: str) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            # a phone's first screen, as its user sees it (the vote bar fixed at its foot); the whole page
            # at desktop width
            page.screenshot(path=f"{SHOTS}/{name}-{width}.png", full_page=not phone, caret="initial",
                            animations="disabled")

    page.goto(f"{live_server.url}/accounts/login/")
    shot("login")
    who = None
    for user, name, path in pages(s):
        if user != who:
            page.context.clear_cookies()
            login(page, live_server, user)
            who = user
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, name
        page.wait_for_load_state("networkidle")
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll <= inner, f"{name}: {scroll} px wide at {inner} px"
        shot(name)
        if name == "import":  # and the preview of a file with columns to map
            upload = tmp_path / "llmbar-like.jsonl"
            upload.write_text("".join(json.dumps({"input": f"Question {i}", "output_1": f"First answer {i}",
                                                  "output_2": f"Second answer {i}", "label": 1 + i % 2}) + "\n"
                                      for i in range(5)))
            page.set_input_files("input[type=file]", str(upload))
            page.get_by_role("button", name="Upload and preview").click()
            page.locator("#preview").wait_for()
            scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert scroll <= inner, f"import preview: {scroll} px wide at {inner} px"
            shot("import-preview")
    context.close()
    assert violations == [], "Content-Security-Policy violations"
