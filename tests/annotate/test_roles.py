"""Roles and limits: only researchers spend (projects, judge runs, generation, retries), paid endpoints
can be kept to chosen projects and researchers with a spending cap per run, and logins and the API are
rate-limited (the annotation hot path too)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from rest_framework.authtoken.models import Token

from annotate.roles import RESEARCHERS_GROUP, researcher_grant
from judges.models import AIJudgment, Judge, JudgeRun
from judges.services import judge_run_execute
from synth.backends.loader import backend_cache_clear
from synth.models import ModelEndpoint, SynthesisJob
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, UserFactory
from tests.http_server import Server

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(client):
    """A researcher of a project (its role) who is not (yet) in the Researchers group."""
    member = MembershipFactory(researcher=True)
    client.force_login(member.user)
    return member


def test_the_command_makes_the_group_and_researchers(capsys):
    UserFactory(username="alice")
    call_command("researchers", "add", "alice")
    alice = Group.objects.get(name=RESEARCHERS_GROUP).user_set.get()
    assert alice.username == "alice" and alice.is_staff
    for permission in ("annotate.add_project", "judges.add_judgerun", "synth.add_synthesisjob",
                       "training.add_trainingjob", "synth.add_modelendpoint", "judges.add_judge"):
        assert alice.has_perm(permission), permission
    call_command("researchers", "list")
    assert "alice" in capsys.readouterr().out
    call_command("researchers", "remove", "alice")
    alice.refresh_from_db()
    assert not alice.is_staff and not alice.groups.exists()
    with pytest.raises(Exception, match="no such user: bob"):
        call_command("researchers", "add", "bob")


def test_only_researchers_create_projects(client):
    annotator = UserFactory()
    client.force_login(annotator)
    response = client.post(reverse("api_project_list"), {"name": "Mine now"}, content_type="application/json")
    assert response.status_code == 403 and "Only researchers may create projects" in response.json()["detail"]
    researcher_grant(user=annotator)
    response = client.post(reverse("api_project_list"), {"name": "Mine now"}, content_type="application/json")
    assert response.status_code == 201


@pytest.fixture
def endpoint():
    return ModelEndpoint.objects.create(name="paid", path="unused", cost_per_million_input=1.0)


def test_starting_or_retrying_a_judge_run_needs_the_researcher_permission(client, member, endpoint,
                                                                            django_capture_on_commit_callbacks):
    judge = Judge.objects.create(name="j", endpoint=endpoint)
    page = reverse("judges:runs", args=[member.project.pk])
    api = reverse("api_judge_run_start", args=[member.project.pk, judge.pk])
    assert "Only researchers start judge runs" in client.get(page).content.decode()
    assert client.post(page, {"judge": judge.pk}).status_code == 403
    assert client.post(api).status_code == 403
    assert not JudgeRun.objects.exists()
    researcher_grant(user=member.user)
    with django_capture_on_commit_callbacks(execute=False):
        assert client.post(page, {"judge": judge.pk}).status_code == 302
        assert client.post(api).status_code == 202
    run = JudgeRun.objects.first()
    assert run.created_by == member.user
    run.status = "failed"
    run.save()
    member.user.groups.clear()
    member.user = type(member.user).objects.get(pk=member.user.pk)  # drop the cached permissions
    retry = reverse("api_job_retry", args=[member.project.pk, "judge-runs", run.pk])
    assert client.post(retry).status_code == 403
    run.refresh_from_db()
    assert run.status == "failed"


def test_starting_generation_needs_the_researcher_permission(client, member, endpoint):
    url = reverse("synth:jobs", args=[member.project.pk])
    form = {"endpoint": endpoint.pk, "max_new_tokens": 8, "temperature": 0.5}
    assert "Only researchers start generation" in client.get(url).content.decode()
    assert client.post(url, form).status_code == 403
    researcher_grant(user=member.user)
    assert "Only researchers" not in client.get(url).content.decode()
    assert client.post(url, form).status_code == 302
    assert SynthesisJob.objects.get().created_by == member.user


def test_a_paid_endpoint_can_be_kept_to_chosen_projects_and_researchers(client, member, endpoint):
    researcher_grant(user=member.user)
    other_project = ProjectFactory()
    judge = Judge.objects.create(name="paid judge", endpoint=endpoint)
    endpoint.allowed_projects.add(other_project)
    page = reverse("judges:runs", args=[member.project.pk])
    assert "paid judge" not in client.get(page).content.decode()  # not offered
    api = reverse("api_judge_run_start", args=[member.project.pk, judge.pk])
    response = client.post(api)
    assert response.status_code == 403 and "limited to other projects" in response.json()["detail"]
    synth = reverse("synth:jobs", args=[member.project.pk])
    assert client.post(synth, {"endpoint": endpoint.pk, "max_new_tokens": 8, "temperature": 0.5}).status_code == 200
    assert not SynthesisJob.objects.exists()  # the form refuses an endpoint it does not offer
    endpoint.allowed_projects.add(member.project)
    endpoint.allowed_users.add(UserFactory())
    response = client.post(api)
    assert response.status_code == 403 and "limited to other researchers" in response.json()["detail"]
    endpoint.allowed_users.add(member.user)
    assert client.post(api).status_code == 202


def paid(server) -> float:
    """What the stand-in server's answers cost at 1000 / 2000 a million tokens (its usage: 10 + a token a
    hundred characters of prompt, and 5)."""
    return sum((10 + sum(len(m["content"]) for m in r["body"]["messages"]) // 100) * 1000e-6 + 5 * 2000e-6
               for r in server.requests)


def test_a_judge_run_stops_at_its_endpoint_s_spending_cap_and_goes_on_when_it_is_raised(settings):
    backend_cache_clear()
    server = Server(reply=lambda n: "Verdict: [[A]]")
    try:
        project = ProjectFactory()
        for _ in range(24):
            PairItemFactory(project=project)
        # About 12 prompt + 5 completion tokens a request: 0.022 a request, 0.35 a batch of 8 pairs in both orders.
        endpoint = ModelEndpoint.objects.create(name="priced", kind="openai", path="m", base_url=server.url,
                                                cost_per_million_input=1000.0, cost_per_million_output=2000.0,
                                                max_cost_per_run=0.5)
        judge = Judge.objects.create(name="priced judge", endpoint=endpoint, verdict_method="generate")
        run = judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk)
        assert run.status == "failed" and "spending cap" in run.error and "retry" in run.error
        assert len(server.requests) == 16  # the second batch was never sent
        assert run.cost == pytest.approx(paid(server)) and 0.32 < run.cost < 0.5
        assert AIJudgment.objects.filter(run=run).count() == 8
        ModelEndpoint.objects.filter(pk=endpoint.pk).update(max_cost_per_run=5.0)
        backend_cache_clear()
        from annotate.job_lifecycle import job_retry

        run = judge_run_execute(run_id=job_retry(job=run).pk)
        assert (run.status, run.progress, run.total) == ("done", 24, 24)
        assert run.cost == pytest.approx(paid(server)) and AIJudgment.objects.filter(judge=judge).count() == 24
        # Each judgment's cost is its own two requests', and they add up to the run's.
        assert sum(j.cost for j in AIJudgment.objects.filter(judge=judge)) == pytest.approx(run.cost)
    finally:
        server.close()
        backend_cache_clear()


# -- rate limits ---------------------------------------------------------------------------------------------


@pytest.fixture
def rates(settings):
    cache.clear()
    settings.API_THROTTLE_RATES = {"user": None, "anon": None, "login_ip": None, "login_account": None}
    yield settings.API_THROTTLE_RATES
    cache.clear()


def test_getting_a_token_is_limited_per_address_and_per_account(client, rates):
    UserFactory(username="ann")
    rates.update(login_account="3/min", login_ip="5/min")
    url = reverse("api_token")
    for _ in range(3):
        assert client.post(url, {"username": "ann", "password": "wrong"}).status_code == 400
    response = client.post(url, {"username": "ann", "password": "pw-for-tests"})
    assert response.status_code == 429 and "Retry-After" in response and "throttled" in response.json()["detail"]
    assert client.post(url, {"username": "bob", "password": "x"}).status_code == 400  # another account
    assert client.post(url, {"username": "carl", "password": "x"}).status_code == 429  # this address: 5 a minute
    assert client.post(url, {"username": "ann", "password": "pw-for-tests"},
                       REMOTE_ADDR="10.1.2.3").status_code == 429  # the account, from anywhere


def test_repeated_failed_logins_lock_the_account_out(client, settings, rates):
    settings.AXES_FAILURE_LIMIT = 3
    UserFactory(username="dora")
    login = reverse("login")
    for _ in range(2):
        assert client.post(login, {"username": "dora", "password": "wrong"}).status_code == 200  # the form again
    assert client.post(login, {"username": "dora", "password": "wrong"}).status_code == 429  # the third: locked
    locked = client.post(login, {"username": "dora", "password": "pw-for-tests"})
    assert locked.status_code == 429  # even with the right password, for now
    assert "_auth_user_id" not in client.session
    token = client.post(reverse("api_token"), {"username": "dora", "password": "pw-for-tests"})
    assert token.status_code in (400, 403, 429) and "token" not in token.json()


def test_the_api_limits_each_user(client, rates):
    rates["user"] = "2/min"
    member = MembershipFactory()
    token = Token.objects.create(user=member.user)
    url = reverse("api_project_detail", args=[member.project.pk])
    answers = [client.get(url, HTTP_AUTHORIZATION=f"Token {token.key}").status_code for _ in range(3)]
    assert answers == [200, 200, 429]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the SQL hot path is PostgreSQL's")
def test_the_hot_path_obeys_the_user_limit_as_drf_does(client, rates):
    rates["user"] = "2/min"
    member = MembershipFactory()
    for _ in range(3):
        PairItemFactory(project=member.project)
    token = Token.objects.create(user=member.user)
    url = reverse("api_next_item", args=[member.project.pk])
    headers = {"HTTP_AUTHORIZATION": f"Token {token.key}", "HTTP_ACCEPT": "application/json"}
    first, second, third = (client.get(url, **headers) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    cache.clear()
    client.get(url, **headers)
    client.get(url, **headers)
    drf = client.get(url + "?format=json", HTTP_AUTHORIZATION=f"Token {token.key}")  # the DRF view answers
    assert drf.status_code == 429
    assert third.json()["detail"].split(" Expected")[0] == drf.json()["detail"].split(" Expected")[0]
    assert third["Retry-After"].isdigit() and drf["Retry-After"].isdigit()
    assert connection.vendor == "postgresql"


def test_the_judges_page_offers_only_judges_that_fit_the_project(client, member, endpoint):
    researcher_grant(user=member.user)
    Judge.objects.create(name="pairs judge", endpoint=endpoint)
    steps_judge = Judge.objects.create(name="steps judge", endpoint=endpoint, mode="steps")
    page = client.get(reverse("judges:runs", args=[member.project.pk])).content.decode()
    assert "pairs judge" in page and "steps judge" not in page
    response = client.post(reverse("judges:runs", args=[member.project.pk]), {"judge": steps_judge.pk})
    assert response.status_code == 200 and not JudgeRun.objects.exists()  # refused in the form, no 500
