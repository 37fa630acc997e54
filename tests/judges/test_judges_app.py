"""Judges in the app and the API: created and changed by researchers (endpoints offered: those they may use),
each error on its field; the prompt previewed on a pair of the project, escaped; a test on one pair, run on a
scripted OpenAI-compatible server, shows both orders' raw answers and stores nothing; the estimate of a run."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from html import unescape as html_unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.jobs import JobStatus
from annotate.roles import researcher_grant
from judges.models import DEFAULT_PAIRWISE_TEMPLATE, AIJudgment, Judge, JudgeRun
from judges.reports import judge_report
from judges.services import CHARS_PER_TOKEN, items_judge, judge_run_estimate
from synth.models import Constitution, ModelEndpoint
from tests.factories import (
    CompletionFactory,
    MembershipFactory,
    PairItemFactory,
    ProjectFactory,
    PromptFactory,
    UserFactory,
)
from tests.http_server import Server

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_backends")]


@pytest.fixture
def server():
    # Whatever the order, the model prefers the response shown first: each order's verdict differs.
    server = Server(reply=lambda n: "Response A is better. <i>Sure</i>")
    yield server
    server.close()


@pytest.fixture
def world(server):
    project = ProjectFactory()
    researcher = MembershipFactory(project=project, researcher=True).user
    researcher_grant(user=researcher)
    items = [PairItemFactory(project=project) for _ in range(3)]
    endpoint = ModelEndpoint.objects.create(name="http", kind="openai", path="judge", base_url=server.url,
                                            cost_per_million_input=2.0, cost_per_million_output=10.0)
    return {"project": project, "researcher": researcher, "items": items, "endpoint": endpoint}


def _form(endpoint, **changes) -> dict:
    data = {"name": "helpful", "endpoint": endpoint.pk, "mode": "pairwise", "template": DEFAULT_PAIRWISE_TEMPLATE,
            "constitution": "", "principle_use": "sample_one", "debiasing": "swap", "verdict_method": "generate",
            "votes": 1, "temperature": 0.0, "max_new_tokens": 64}
    data.update(changes)
    return data


def test_who_may_open_the_judge_pages(world, client):
    project = world["project"]
    url = reverse("judges:judge_new", args=[project.pk])
    client.force_login(UserFactory())  # a stranger: the project does not exist for them
    assert client.get(url).status_code == 404
    client.force_login(MembershipFactory(project=project).user)  # an annotator of the project
    assert client.get(url).status_code == 403
    member = MembershipFactory(project=project, researcher=True).user  # the role, without the permission
    client.force_login(member)
    response = client.get(url)
    assert response.status_code == 403 and b"Only researchers create judges" in response.content
    assert client.post(url, _form(world["endpoint"])).status_code == 403
    assert not Judge.objects.exists()


def test_a_researcher_creates_a_judge_and_each_error_is_on_its_field(world, client):
    project, endpoint = world["project"], world["endpoint"]
    elsewhere = ModelEndpoint.objects.create(name="kept-elsewhere", path="x")
    elsewhere.allowed_projects.add(ProjectFactory())
    client.force_login(world["researcher"])
    url = reverse("judges:judge_new", args=[project.pk])
    page = client.get(url).content.decode()
    assert ">http<" in page and "kept-elsewhere" not in page  # only the endpoints usable here are offered

    no_b = DEFAULT_PAIRWISE_TEMPLATE.replace("{response_b}", "")
    response = client.post(url, _form(endpoint, template=no_b))
    assert response.status_code == 422
    assert response.context["form"].errors["template"] == ["Missing placeholder {response_b}."]
    endpoint.capabilities = {"logprobs": False, "checked_at": "2026-01-01"}
    endpoint.save()
    response = client.post(url, _form(endpoint, verdict_method="logprob"))
    assert "returns no log-probabilities" in response.context["form"].errors["verdict_method"][0]
    response = client.post(url, _form(endpoint, votes=3, temperature=0.0))
    assert "temperature above 0" in response.context["form"].errors["temperature"][0]
    response = client.post(url, _form(elsewhere))
    assert "endpoint" in response.context["form"].errors
    assert not Judge.objects.exists()

    response = client.post(url, _form(endpoint, votes=3, temperature=0.7))
    assert response.status_code == 302
    judge = Judge.objects.get(name="helpful")
    assert (judge.endpoint, judge.debiasing, judge.votes, judge.temperature) == (endpoint, "swap", 3, 0.7)
    # Editing what it does raises its version; the template of its mode is the one edited.
    edit = reverse("judges:judge_edit", args=[project.pk, judge.pk])
    assert client.post(edit, _form(endpoint, votes=3, temperature=0.7,
                                   template=DEFAULT_PAIRWISE_TEMPLATE + "\nBe brief.")).status_code == 302
    judge.refresh_from_db()
    assert judge.template_version == 2 and judge.pairwise_template.endswith("Be brief.")
    assert client.post(url, _form(endpoint, votes=3, temperature=0.7)).context["form"].errors["name"]


def test_preview_renders_both_orders_of_a_real_pair_escaped(world, client):
    project = world["project"]
    prompt = PromptFactory(project=project, messages=[{"role": "user", "content": "Say <script>alert(1)</script>"}])
    item = PairItemFactory(project=project, prompt=prompt, completion_a=CompletionFactory(prompt=prompt, text="first"),
                           completion_b=CompletionFactory(prompt=prompt, text="second <img src=x>"))
    client.force_login(world["researcher"])
    url = reverse("judges:judge_preview", args=[project.pk])
    html = client.post(url, {**_form(world["endpoint"]), "item": item.pk}, HTTP_HX_REQUEST="true").content.decode()
    assert html.count('<pre class="prompt-text" hx-disable>') == 2  # A first, then B first
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "second &lt;img src=x&gt;" in html
    first, second = html.index("[Response A]\nfirst"), html.index("[Response A]\nsecond")
    assert first < second
    one_order = client.post(url, {**_form(world["endpoint"], debiasing="none"), "item": item.pk}).content.decode()
    assert one_order.count("<pre class=\"prompt-text\"") == 1
    bad = client.post(url, {**_form(world["endpoint"], template="{response_a} only"), "item": item.pk})
    assert "Missing placeholder {response_b}" in bad.content.decode()
    # A pair of another project is not found; an empty choice draws one of this project's.
    other = PairItemFactory()
    assert "No pair" in client.post(url, {**_form(world["endpoint"]), "item": other.pk}).content.decode()
    assert "Prompt, A first" in client.post(url, {**_form(world["endpoint"]), "item": ""}).content.decode()


def test_a_test_on_one_pair_shows_both_orders_and_stores_nothing(world, client, server):
    project, item = world["project"], world["items"][0]
    client.force_login(world["researcher"])
    url = reverse("judges:judge_test", args=[project.pk])
    html = client.post(url, {**_form(world["endpoint"]), "item": item.pk}, HTTP_HX_REQUEST="true").content.decode()
    # Both orders' raw answers, escaped; each order's verdict about the stored A and B; the swap's tie.
    assert html.count("Response A is better. &lt;i&gt;Sure&lt;/i&gt;") == 2 and "<i>Sure" not in html
    assert "A first: verdict <b>A</b>" in html and "B first: verdict <b>B</b>" in html
    assert ">Tie</b>" in html
    assert len(server.requests) == 2
    tokens_in = sum(10 + sum(len(m["content"]) for m in r["body"]["messages"]) // 100 for r in server.requests)
    assert f"<dd>{tokens_in}</dd>" in html and "<dd>10</dd>" in html  # 5 completion tokens a request
    assert f"{(tokens_in * 2.0 + 10 * 10.0) / 1e6:.6f}" in html
    # Nothing stored: no judgment, and a report of the judge counts none.
    assert not AIJudgment.objects.exists() and not Judge.objects.exists()
    judge = Judge.objects.create(name="saved", endpoint=world["endpoint"], debiasing="swap", verdict_method="generate")
    api = client.post(reverse("api_judge_test", args=[project.pk, judge.pk]), {"item": item.pk},
                      content_type="application/json")
    assert api.status_code == 200, api.content
    body = api.json()
    assert [o["verdict"] for o in body["orders"]] == ["A", "B"] and body["verdict"] == "tie"
    assert all(o["raw"] == "Response A is better. <i>Sure</i>" for o in body["orders"])
    assert not AIJudgment.objects.exists() and judge_report(judge=judge, project=project)["judgments"] == 0


def test_a_failing_endpoint_is_one_line(world, client, server):
    project, item = world["project"], world["items"][0]
    judge = Judge.objects.create(name="saved", endpoint=world["endpoint"], debiasing="swap", verdict_method="generate")
    server.close()
    client.force_login(world["researcher"])
    html = client.post(reverse("judges:judge_test", args=[project.pk]),
                       {**_form(world["endpoint"]), "item": item.pk}).content.decode()
    error = html[html.index('class="errorlist test-error"'):]
    error = html_unescape(error[error.index(">") + 1: error.index("</p>")])
    assert error.startswith("The endpoint 'http' failed:") and "\n" not in error and len(error) < 400
    api = client.post(reverse("api_judge_test", args=[project.pk, judge.pk]), {}, content_type="application/json")
    assert api.status_code == 409 and api.json()["detail"].startswith("The endpoint 'http' failed:")
    assert not AIJudgment.objects.exists()
    judge.verdict_method = "logprob"
    judge.save()
    world["endpoint"].capabilities = {"logprobs": False}
    world["endpoint"].save()
    refused = client.post(reverse("api_judge_test", args=[project.pk, judge.pk]), {}, content_type="application/json")
    assert refused.status_code == 409 and "returns no log-probabilities" in refused.json()["detail"]


def test_estimate_counts_requests_tokens_cost_and_time(world, client):
    project, endpoint, items = world["project"], world["endpoint"], world["items"]
    endpoint.capabilities = {"n": False}  # votes are one request each
    endpoint.save()
    judge = Judge.objects.create(name="est", endpoint=endpoint, debiasing="swap", verdict_method="generate", votes=3,
                                 temperature=0.7, max_new_tokens=100)
    estimate = judge_run_estimate(judge=judge, project=project)
    assert (estimate["items"], estimate["orders"], estimate["votes"]) == (3, 2, 3)
    assert estimate["prompts"] == 6 and estimate["samples"] == 18 and estimate["requests"] == 18
    base = len(DEFAULT_PAIRWISE_TEMPLATE) - sum(len(p) for p in ("{conversation}", "{response_a}", "{response_b}",
                                                                  "{question}")) + len("Which response is better?")
    chars = sum(2 * (base + len(json.dumps(i.prompt.messages)) + len(i.completion_a.text) + len(i.completion_b.text))
                for i in items)
    assert estimate["prompt_tokens"] == math.ceil(chars / CHARS_PER_TOKEN)
    assert estimate["completion_tokens"] == 18 * 100 and estimate["completion_tokens_upper_bound"]
    expected_cost = (estimate["prompt_tokens"] * 2.0 + 1800 * 10.0) / 1e6
    assert estimate["cost"] == pytest.approx(expected_cost, abs=1e-6)
    assert estimate["seconds"] is None and estimate["time_note"].startswith("unknown")
    # A finished run on the endpoint: 2 pairs x 2 orders in 60 s is 15 s a request.
    done = Judge.objects.create(name="done", endpoint=endpoint, debiasing="swap", verdict_method="logprob")
    now = timezone.now()
    run = JudgeRun.objects.create(judge=done, project=ProjectFactory(), status=JobStatus.DONE,
                                  started_at=now - timedelta(seconds=60), finished_at=now)
    for item in (PairItemFactory(project=run.project), PairItemFactory(project=run.project)):
        AIJudgment.objects.create(judge=done, item=item, run=run, template_version=1, verdict="A", probability=0.9)
    estimate = judge_run_estimate(judge=judge, project=project)
    assert estimate["seconds_per_request"] == 15.0 and estimate["seconds"] == 15.0 * 18
    # Judged pairs are not counted again; without n a server answers every vote in a request of its own.
    items_judge(judge=judge, items=items[:1], backend=_Scripted())
    assert judge_run_estimate(judge=judge, project=project)["items"] == 2
    # Without prices the cost is unknown, not 0.
    endpoint.cost_per_million_input = endpoint.cost_per_million_output = 0.0
    endpoint.save()
    judge.refresh_from_db()
    assert judge_run_estimate(judge=judge, project=project)["cost"] is None
    # The run form shows it; the API answers it.
    client.force_login(world["researcher"])
    html = client.get(reverse("judges:run_estimate", args=[project.pk]), {"judge": judge.pk}).content.decode()
    assert "<b>12</b> samples in <b>12</b> requests" in html and "unknown: the endpoint has no prices" in html
    api = client.get(reverse("api_judge_estimate", args=[project.pk, judge.pk])).json()
    assert api["requests"] == 12 and api["cost"] is None and api["seconds"] == 15.0 * 12


class _Scripted:
    name = "scripted"

    def generate(self, conversations, sampling):
        return [["A"] * sampling.n for _ in conversations]


def test_api_creates_changes_previews_and_scopes(world, client):
    project, endpoint = world["project"], world["endpoint"]
    url = reverse("api_judges", args=[project.pk])
    client.force_login(world["researcher"])
    bad = client.post(url, {"name": "j", "endpoint": endpoint.pk, "template": "{response_a}"},
                      content_type="application/json")
    assert bad.status_code == 400 and bad.json()["template"] == ["Missing placeholder {response_b}."]
    created = client.post(url, {"name": "j", "endpoint": endpoint.pk, "verdict_method": "generate",
                                "debiasing": "swap", "constitution": Constitution.objects.create(name="c").pk},
                          content_type="application/json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["template"] == DEFAULT_PAIRWISE_TEMPLATE and body["template_version"] == 1
    assert "api_key" not in json.dumps(body)
    detail = reverse("api_judge_detail", args=[project.pk, body["id"]])
    changed = client.patch(detail, {"votes": 5, "temperature": 0.8}, content_type="application/json")
    assert changed.status_code == 200 and changed.json()["votes"] == 5 and changed.json()["template_version"] == 2
    refused = client.patch(detail, {"votes": 5, "temperature": 0.0}, content_type="application/json")
    assert refused.status_code == 400 and "temperature" in refused.json()
    assert client.patch(detail, {"mode": "steps"}, content_type="application/json").status_code == 400
    preview = client.post(reverse("api_judge_preview", args=[project.pk]),
                          {"template": "Q {conversation}\n1: {response_a}\n2: {response_b}", "debiasing": "swap",
                           "item": world["items"][1].pk}, content_type="application/json")
    assert preview.status_code == 200
    item = world["items"][1]
    assert [p["text"] for p in preview.json()["prompts"]] == [
        f"Q User: {item.prompt.messages[0]['content']}\n1: {item.completion_a.text}\n2: {item.completion_b.text}",
        f"Q User: {item.prompt.messages[0]['content']}\n1: {item.completion_b.text}\n2: {item.completion_a.text}"]
    assert client.get(url).json()[0]["name"] == "j"
    # A stranger: 404; an annotator: 403; a judge on an endpoint kept to other researchers: 404.
    client.force_login(UserFactory())
    assert client.get(detail).status_code == 404 and client.post(url, {}).status_code == 404
    client.force_login(MembershipFactory(project=project).user)
    assert client.get(detail).status_code == 403
    assert client.post(reverse("api_judge_test", args=[project.pk, body["id"]]), {}).status_code == 403
    endpoint.allowed_users.add(UserFactory())
    client.force_login(world["researcher"])
    assert client.get(detail).status_code == 404
    assert client.get(reverse("api_judge_estimate", args=[project.pk, body["id"]])).status_code == 404
