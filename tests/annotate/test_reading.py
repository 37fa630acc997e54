"""Reading model answers on the labeling pages: code, math and tables rendered safely, truncated answers
marked, and what the annotator is told around the item (left for them, saved, empty states, cancel)."""

import re

import pytest
from django.urls import reverse

from annotate.models import Completion, ImportJob, PairLabel, Project
from annotate.services import pair_label_submit, step_item_create
from annotate.templatetags.markup import markdown_to_safe_html
from synth.models import ModelEndpoint, SynthesisJob
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db


# ---- markdown: code, math, tables ----

def test_fenced_code_is_highlighted_with_token_classes():
    html = markdown_to_safe_html("```python\ndef f(x):\n    return '<b>'  # note\n```")
    assert '<code class="language-python">' in html
    assert '<span class="tok-k">def</span>' in html and '<span class="tok-c1"># note</span>' in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "style=" not in html  # classes only: the CSP allows no inline style


def test_unknown_or_absent_language_stays_plain_and_escaped():
    for fence in ("```nosuchlanguage\n", "```\n"):
        html = markdown_to_safe_html(f"{fence}<script>alert(1)</script>\n```")
        assert "tok-" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html


def test_script_in_a_highlighted_fence_is_inert_text():
    html = markdown_to_safe_html("```html\n<script>alert(1)</script><img src=x onerror=alert(2)>\n```")
    assert "<script" not in html and "<img" not in html
    text = re.sub(r"<[^>]+>", "", html)  # the text, escaped, once the highlighting spans are gone
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in text


@pytest.mark.parametrize("source", [r"$(2+2)\times 3$", r"$$\frac{1}{2}$$", r"\(x^2\)", "\\[\nx = 1\n\\]",
                                    "We have\n\\[x = 1\\]\nso"])
def test_math_is_rendered_as_mathml(source):
    html = markdown_to_safe_html(source)
    assert "<math" in html and "$" not in html and "\\(" not in html and "\\[" not in html


def test_times_is_a_multiplication_sign():
    html = markdown_to_safe_html(r"$(2+2)\times 3$")
    assert re.search(r"<mn>2</mn><mo>\+</mo><mn>2</mn>", html) and "×" in html


@pytest.mark.parametrize("text", ["It costs $5 and $10.", "Between $5 and $ 10", "$ 5 or $6", "costs $5 and $10"])
def test_dollar_amounts_stay_text(text):
    html = markdown_to_safe_html(text)
    assert "<math" not in html and f"<p>{text}</p>" in html


def test_script_in_math_is_inert_text():
    html = markdown_to_safe_html(r"$\text{<script>alert(1)</script>} + x < y$ and \(a <img src=x onerror=f()>\)")
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text inside the math
    assert html.count("<math") == 2


def test_math_that_cannot_be_read_shows_its_source():
    html = markdown_to_safe_html(r"$\left( x^$ and $\begin{matrix} <b>$")
    assert "<math" not in html
    assert r'<code class="math-source">\left( x^</code>' in html and "\\begin{matrix} &lt;b&gt;</code>" in html


def test_math_links_and_styles_are_dropped():
    html = markdown_to_safe_html(r"$\href{javascript:alert(1)}{x} \style{color:red}{y}$")
    assert "<math" in html and "javascript" not in html and "style=" not in html and "href" not in html


def test_tables_have_a_header():
    html = markdown_to_safe_html("| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<table>" in html and "<thead>" in html and "<th>a</th>" in html and "<td>2</td>" in html


# ---- the pairwise page ----

def _page(client, project):
    return client.get(reverse("annotate:annotate", args=[project.pk])).content.decode()


def test_guidelines_are_markdown(client):
    project = ProjectFactory(guidelines="**Ties** are for equal answers.\n\n<script>alert(1)</script>")
    member = MembershipFactory(project=project)
    PairItemFactory(project=project)
    client.force_login(member.user)
    page = _page(client, project)
    assert "<strong>Ties</strong> are for equal answers." in page
    assert "**Ties**" not in page and "<script>alert" not in page


def test_answers_are_titled_a_and_b_and_rendered(client):
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    item = PairItemFactory(project=project)
    Completion.objects.filter(pk=item.completion_a_id).update(text="Area is $\\pi r^2$.\n\n```python\nx = 1\n```")
    client.force_login(member.user)
    page = _page(client, project)
    assert '<h3 id="answer-a-title">A <kbd>1</kbd></h3>' in page
    assert '<h3 id="answer-b-title">B <kbd>2</kbd></h3>' in page
    assert "Left" not in page and "Right better" not in page
    assert "A better" in page and "B better" in page
    assert "<math" in page and 'class="tok-' in page


@pytest.mark.parametrize("reasons", [("length", "stop"), ("stop", "length"), ("stop", ""), ("length", "length")])
def test_cut_off_badge_only_on_answers_that_hit_the_length_limit(client, reasons):
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    item = PairItemFactory(project=project)
    for completion, reason in zip((item.completion_a, item.completion_b), reasons, strict=True):
        completion.sampling = {"temperature": 1.0, **({"finish_reason": reason} if reason else {})}
        completion.save()
    client.force_login(member.user)
    response = client.get(reverse("annotate:annotate", args=[project.pk]))
    page = response.content.decode()
    assert page.count("cut off (length)") == reasons.count("length")
    # The badge is on the side the truncated answer is shown on.
    heads = re.findall(r'<div class="response-head">(.*?)</div>', page)
    shown = (response.context["left"], response.context["right"])
    assert ["cut off" in head for head in heads] == [c.sampling.get("finish_reason") == "length" for c in shown]


def test_a_long_conversation_shows_the_last_turns_and_folds_the_rest(client):
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    prompt = PromptFactory(project=project, messages=[
        {"role": "user", "content": f"turn {i}"} if i % 2 == 0 else {"role": "assistant", "content": f"turn {i}"}
        for i in range(5)])
    PairItemFactory(project=project, prompt=prompt)
    client.force_login(member.user)
    page = _page(client, project)
    folded = re.search(r'<details class="earlier"><summary class="small">(.*?)</summary>(.*?)</details>', page, re.S)
    assert folded and folded[1] == "Show 3 earlier turns"
    assert all(f"turn {i}" in folded[2] for i in range(3))
    after = page[folded.end():]
    assert "turn 3" in after and "turn 4" in after


def test_a_short_conversation_is_not_folded(client):
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    PairItemFactory(project=project)
    client.force_login(member.user)
    assert "earlier turn" not in _page(client, project)


# ---- progress, saved, empty states, cancel ----

def _left(page: str) -> str:
    return re.search(r'<b id="left-count">([^<]*)</b> left for you', page)[1]


def test_left_for_you_counts_down_with_labels_and_a_submit_says_saved(client):
    project = ProjectFactory(overlap=2)
    member = MembershipFactory(project=project)
    other = MembershipFactory(project=project).user
    items = [PairItemFactory(project=project) for _ in range(4)]
    pair_label_submit(item=items[3], annotator=other, verdict="A")  # one slot of four left open by others
    client.force_login(member.user)
    page = _page(client, project)
    assert _left(page) == "4" and 'value="0" max="4"' in page and 'data-saved=""' in page
    shown = client.get(reverse("annotate:annotate", args=[project.pk])).context["item"]
    response = client.post(reverse("annotate:annotate_submit", args=[project.pk, shown.pk]), {"choice": "tie"},
                           HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert _left(page) == "3" and "1 done" in page and 'value="1" max="4"' in page
    assert 'data-saved="1"' in page  # reading.js says "Saved" in the page's status line
    client.post(reverse("annotate:annotate_skip", args=[project.pk, response.context["item"].pk]))
    assert _left(_page(client, project)) == "2"  # a skip is not left for them either


def test_left_for_you_costs_the_same_queries_whatever_the_project_size(client, django_assert_num_queries):
    def queries(n_items):
        project = ProjectFactory(overlap=1)
        member = MembershipFactory(project=project)
        for _ in range(n_items):
            PairItemFactory(project=project)
        client.force_login(member.user)
        url = reverse("annotate:annotate", args=[project.pk])
        client.get(url)  # lease one
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            client.get(url, HTTP_HX_REQUEST="true")
        return len(ctx)

    assert queries(2) == queries(12)


def test_nothing_assigned(client):
    project = ProjectFactory()
    member = MembershipFactory(project=project)
    client.force_login(member.user)
    page = _page(client, project)
    assert "Nothing assigned to you" in page and "All done" not in page and "still being" not in page


def test_all_done(client):
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    item = PairItemFactory(project=project)
    pair_label_submit(item=item, annotator=member.user, verdict="A")
    client.force_login(member.user)
    page = _page(client, project)
    assert "All done" in page and "You labeled 1 item here" in page and _left(page) == "0"
    assert "Nothing assigned" not in page


def test_pairs_still_being_generated(client):
    project = ProjectFactory()
    member = MembershipFactory(project=project)
    endpoint = ModelEndpoint.objects.create(name="demo-model", path="unused")
    SynthesisJob.objects.create(project=project, endpoint=endpoint, status="done", progress=10, total=10)
    job = SynthesisJob.objects.create(project=project, endpoint=endpoint, status="running", progress=2, total=10)
    client.force_login(member.user)
    page = _page(client, project)
    assert "Pairs are still being generated: 2 of 10 prompts done." in page
    assert 'hx-trigger="every 5s"' in page and "Nothing assigned" not in page
    job.status = "failed"
    job.save()
    assert "Nothing assigned to you" in _page(client, project)


def test_items_still_being_imported(client):
    project = ProjectFactory()
    member = MembershipFactory(project=project)
    ImportJob.objects.create(project=project, file_name="pairs.jsonl", path="x", status="queued")
    client.force_login(member.user)
    assert "Items are still being imported: 0 records read so far." in _page(client, project)


def test_cancel_an_edit_leaves_the_label_as_it_was(client):
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    first, second = PairItemFactory(project=project), PairItemFactory(project=project)
    client.force_login(member.user)
    url = reverse("annotate:annotate", args=[project.pk])
    assert client.get(url).context["item"] == first
    client.post(reverse("annotate:annotate_submit", args=[project.pk, first.pk]), {"choice": "tie", "strength": ""})
    before = PairLabel.objects.get(item=first, annotator=member.user)
    editing = client.get(reverse("annotate:annotate_last", args=[project.pk]), HTTP_HX_REQUEST="true")
    page = editing.content.decode()
    assert editing.context["editing"] == before
    cancel = re.search(r'<a class="btn secondary" href="([^"]+)" hx-get="([^"]+)"[^>]*id="cancel-button">', page)
    assert cancel and cancel[1] == cancel[2] == url
    assert 'id="skip-button"' not in page
    back = client.get(cancel[2], HTTP_HX_REQUEST="true")
    assert back.context["item"] == second and back.context["editing"] is None
    after = PairLabel.objects.get(item=first, annotator=member.user)
    assert (after.verdict, after.strength, after.updated_at) == (before.verdict, before.strength, before.updated_at)


# ---- the steps page ----

def test_steps_page_left_for_you_saved_and_cancel(client):
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS, step_mode=Project.StepMode.RATE_ALL,
                             guidelines="Rate **each** step.")
    member = MembershipFactory(project=project)
    items = [step_item_create(prompt=PromptFactory(project=project), steps=["a", "b"]) for _ in range(3)]
    client.force_login(member.user)
    page = _page(client, project)
    assert _left(page) == "3" and "<strong>each</strong>" in page
    response = client.post(reverse("annotate:steps_submit", args=[project.pk, items[0].pk]),
                           {"rating_0": "1", "rating_1": "1", "finish_reason": "solution"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert response.status_code == 200 and _left(page) == "2" and 'data-saved="1"' in page
    editing = client.get(reverse("annotate:annotate_last", args=[project.pk]), HTTP_HX_REQUEST="true")
    assert 'id="cancel-button"' in editing.content.decode()
