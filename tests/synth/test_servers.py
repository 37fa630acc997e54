"""The differences between OpenAI-compatible servers, on scripted stand-ins (tests/http_server.py): n
honoured, ignored or refused, log-probabilities or none, a model the server does not serve; answers kept
as they arrive, so a run that fails part-way never pays twice; each judgment's own tokens; endpoints
checked when they are saved."""

from __future__ import annotations

from collections import Counter

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotate.job_lifecycle import job_retry
from annotate.models import PairItem
from annotate.roles import researcher_grant
from judges.models import AIJudgment, Judge, JudgeRun
from judges.services import judge_run_create, judge_run_execute
from synth.backends.base import Sampling
from synth.backends.loader import backend_cache_clear
from synth.backends.openai import OpenAIBackend
from synth.models import CachedResponse, ModelEndpoint, SynthesisJob
from synth.secrets import base_url_normalise
from synth.services import endpoint_probe, synthesis_job_create, synthesis_job_run
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, PromptFactory, UserFactory
from tests.http_server import Server

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_backends")]


def serve(flavour, **kwargs):
    server = Server(flavour=flavour, **kwargs)
    return server


@pytest.mark.parametrize("flavour, sent", [("openai", 2), ("vllm", 2), ("llamacpp", 2 + 2 * 2), ("ollama", 2 + 2 * 2),
                                           ("tgi", 2 + 3 * 2)])
def test_every_server_gives_the_number_of_samples_asked_for(flavour, sent):
    server = serve(flavour, reply=lambda n: f"sample {n}")
    try:
        client = OpenAIBackend(base_url=server.url, model="m", max_concurrency=2)
        replies = client.generate([[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]],
                                  Sampling(n=3, temperature=0.7, seed=5))
        assert [len(r) for r in replies] == [3, 3]
        assert len(set(replies[0])) == 3  # three samples, not one thrice
        if flavour == "tgi":
            # The refusal of n cancels the n-request not yet sent (the other may already be on its way).
            refused = [r for r in server.requests if r["body"].get("n", 1) > 1]
            assert 1 <= len(refused) <= 2 and len(server.requests) - len(refused) == sent - 2
        else:
            assert len(server.requests) == sent
        assert client.supports_n is (flavour in ("openai", "vllm"))
        if flavour in ("llamacpp", "ollama", "tgi"):  # the samples asked for one by one have their own seeds
            seeds = sorted(r["body"].get("seed") for r in server.requests if r["body"].get("n", 1) == 1)
            assert seeds == [6, 6, 7, 7] if flavour != "tgi" else [5, 5, 6, 6, 7, 7]
        # Knowing it, the next call asks the right way at once.
        again = OpenAIBackend(base_url=server.url, model="m", capabilities={"n": client.supports_n})
        before = len(server.requests)
        again.generate([[{"role": "user", "content": "q3"}]], Sampling(n=3, temperature=0.7, seed=5))
        assert len(server.requests) - before == (1 if client.supports_n else 3)
    finally:
        server.close()


def test_synthesis_makes_pairs_on_a_server_that_ignores_n_and_remembers_it():
    server = serve("llamacpp", reply=lambda n: f"an answer, number {n}")
    try:
        project = ProjectFactory()
        for _ in range(3):
            PromptFactory(project=project)
        endpoint = ModelEndpoint.objects.create(name="llama", kind="openai", path="m", base_url=server.url)
        job = synthesis_job_run(job_id=synthesis_job_create(project=project, endpoint=endpoint, start=False).pk)
        assert job.status == "done", job.error
        assert PairItem.objects.filter(project=project).count() == 3
        endpoint.refresh_from_db()
        assert endpoint.capabilities["n"] is False  # learnt, for the next run
        # What the server gave for the n=2 requests was kept as the first samples: the one-by-one requests
        # asked only for the second ones.
        assert [r["body"].get("n", 1) for r in server.requests] == [2, 2, 2, 1, 1, 1]
    finally:
        server.close()


def test_generated_answers_keep_why_they_ended_and_a_cut_one_is_marked_on_the_labeling_page(client):
    """The server's finish_reason is kept with each completion: an answer cut at max_new_tokens is shown
    to the annotator as cut off, a complete one is not."""
    server = serve("llamacpp", reply=lambda n: "short" if n % 2 else "a long answer that goes on past the limit")
    try:
        project = ProjectFactory()
        PromptFactory(project=project)
        annotator = MembershipFactory(project=project).user
        endpoint = ModelEndpoint.objects.create(name="m", kind="openai", path="m", base_url=server.url)
        job = synthesis_job_run(job_id=synthesis_job_create(project=project, endpoint=endpoint, max_new_tokens=4,
                                                            start=False).pk)
        assert job.status == "done", job.error
        item = PairItem.objects.get(project=project)
        reasons = {item.completion_a.text: item.completion_a.sampling["finish_reason"],
                   item.completion_b.text: item.completion_b.sampling["finish_reason"]}
        assert sorted(reasons.values()) == ["length", "stop"]
        assert reasons["a long answer that"] == "length"
        client.force_login(annotator)
        page = client.get(reverse("annotate:annotate", args=[project.pk])).content.decode()
        assert page.count("cut off (length)") == 1
    finally:
        server.close()


def test_votes_are_the_number_asked_for_on_a_server_that_ignores_n():
    server = serve("ollama", reply=lambda n: "[[A]]" if n % 2 else "Assistant B is better.")
    try:
        project = ProjectFactory()
        for _ in range(2):
            PairItemFactory(project=project)
        endpoint = ModelEndpoint.objects.create(name="ollama", kind="openai", path="m", base_url=server.url)
        judge = Judge.objects.create(name="voter", endpoint=endpoint, verdict_method="generate", votes=3,
                                     temperature=0.7)
        run = judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk)
        assert run.status == "done", run.error
        for judgment in AIJudgment.objects.filter(judge=judge):
            assert len(judgment.votes) == 6  # 3 votes in each order
    finally:
        server.close()


def test_a_run_that_fails_part_way_never_pays_twice():
    server = serve("openai", reply=lambda n: "[[A]]")
    try:
        project = ProjectFactory()
        for _ in range(12):
            PairItemFactory(project=project)
        endpoint = ModelEndpoint.objects.create(name="flaky", kind="openai", path="m", base_url=server.url,
                                                max_concurrency=4, max_retries=0)
        judge = Judge.objects.create(name="j", endpoint=endpoint, verdict_method="generate")
        server.fail_after = 11  # the server goes down in the middle of the second batch (16 requests a batch)
        run = judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk)
        assert run.status == "failed" and "500" in run.error
        kept = CachedResponse.objects.filter(endpoint=endpoint).count()
        # Every answer that came back was kept, those of the failed batch too (a few more than 11 may have
        # been answered: they were in flight when the server began to fail).
        assert kept == server.answered >= 11
        server.fail_after = None
        backend_cache_clear()
        run = judge_run_execute(run_id=job_retry(job=run).pk)
        assert (run.status, run.progress) == ("done", 12)
        answered = Counter(repr(sorted(body.items())) for body, status in server.log if status == 200)
        assert answered and max(answered.values()) == 1  # no request was paid for twice
        assert sum(answered.values()) == 24 == CachedResponse.objects.filter(endpoint=endpoint).count()
        assert AIJudgment.objects.filter(judge=judge).count() == 12
    finally:
        server.close()


def test_each_judgment_has_its_own_tokens_and_cost():
    server = serve("openai", reply=lambda n: "[[A]]")
    try:
        project = ProjectFactory()
        short = PairItemFactory(project=project)
        long = PairItemFactory(project=project, prompt__messages=[{"role": "user", "content": "why? " * 400}])
        endpoint = ModelEndpoint.objects.create(name="priced", kind="openai", path="m", base_url=server.url,
                                                cost_per_million_input=1.0, cost_per_million_output=2.0)
        judge = Judge.objects.create(name="j", endpoint=endpoint, verdict_method="generate")
        judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk)
        first, second = (AIJudgment.objects.get(item=item) for item in (short, long))
        assert second.prompt_tokens > first.prompt_tokens + 30  # its own, not the batch's average
        paid = CachedResponse.objects.filter(endpoint=endpoint)
        assert first.prompt_tokens + second.prompt_tokens == sum(r.prompt_tokens for r in paid)
        assert first.cost == pytest.approx((first.prompt_tokens * 1.0 + first.completion_tokens * 2.0) / 1e6)
    finally:
        server.close()


@pytest.mark.parametrize("flavour, n, logprobs", [("openai", True, True), ("vllm", True, True),
                                                  ("llamacpp", False, True), ("ollama", False, False),
                                                  ("tgi", False, True)])
def test_the_check_finds_what_each_server_supports(flavour, n, logprobs):
    server = serve(flavour)
    try:
        capabilities = endpoint_probe(base_url=server.url, model="m")
        assert (capabilities["n"], capabilities["logprobs"]) == (n, logprobs)
        assert "m" in capabilities["models"] and capabilities["checked_at"]
    finally:
        server.close()


def test_the_check_refuses_a_model_the_server_lacks_and_a_url_without_an_api():
    server = serve("vllm", models=("Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"))
    try:
        with pytest.raises(ValidationError) as excinfo:
            endpoint_probe(base_url=server.url, model="qwen2.5")
        assert "serves no model 'qwen2.5'" in excinfo.value.message_dict["path"][0]
        assert "Qwen/Qwen2.5-7B-Instruct" in excinfo.value.message_dict["path"][0]  # what it has instead
        # No /v1: the address is completed, and it works.
        bare = server.url.removesuffix("/v1")
        assert base_url_normalise(bare) == server.url
        assert endpoint_probe(base_url=bare, model="Qwen/Qwen2.5-7B-Instruct")["n"] is True
        with pytest.raises(ValidationError) as excinfo:
            endpoint_probe(base_url=bare + "/api/v2", model="Qwen/Qwen2.5-7B-Instruct")
        assert "no OpenAI-compatible API answers" in excinfo.value.message_dict["base_url"][0]
    finally:
        server.close()


@pytest.mark.parametrize("url, normal", [("http://h:8000", "http://h:8000/v1"), ("http://h:8000/", "http://h:8000/v1"),
                                         ("http://h/v1/", "http://h/v1"), ("http://h/v1/chat/completions", "http://h/v1"),
                                         ("https://api.example.org/openai/v1", "https://api.example.org/openai/v1")])
def test_base_urls_are_normalised(url, normal):
    assert base_url_normalise(url) == normal


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_the_admin_checks_an_endpoint_before_saving_it(admin_client):
    server = serve("ollama", models=("llama3:latest",))
    try:
        form = {"name": "ollama", "kind": "openai", "path": "llama3", "base_url": server.url.removesuffix("/v1"),
                "dtype": "float32", "device": "cpu", "max_concurrency": 2, "timeout_s": 10, "max_retries": 1,
                "cost_per_million_input": 0, "cost_per_million_output": 0}
        response = admin_client.post(reverse("admin:synth_modelendpoint_add"), form)
        assert response.status_code == 200 and "serves no model" in response.content.decode()
        assert "llama3:latest" in response.content.decode()  # the suggestion
        assert not ModelEndpoint.objects.exists()
        response = admin_client.post(reverse("admin:synth_modelendpoint_add"), {**form, "path": "llama3:latest"})
        assert response.status_code == 302, response.content.decode()[:3000]
        endpoint = ModelEndpoint.objects.get()
        assert endpoint.base_url == server.url  # /v1 added
        assert (endpoint.capabilities["n"], endpoint.capabilities["logprobs"]) == (False, False)
        # A log-probability judge on it is refused, in the admin and when a run is asked for.
        response = admin_client.post(reverse("admin:judges_judge_add"), {
            "name": "lp", "endpoint": endpoint.pk, "mode": "pairwise", "verdict_method": "logprob",
            "debiasing": "swap_average", "principle_use": "sample_one", "votes": 1, "temperature": 0,
            "max_new_tokens": 16, "pairwise_template": Judge._meta.get_field("pairwise_template").default,
            "pointwise_template": Judge._meta.get_field("pointwise_template").default,
            "step_template": Judge._meta.get_field("step_template").default})
        assert response.status_code == 200 and "returns no log-probabilities" in response.content.decode()
        judge = Judge.objects.create(name="lp", endpoint=endpoint, verdict_method="logprob")
        with pytest.raises(ValidationError, match="returns no log-probabilities"):
            judge_run_create(judge=judge, project=ProjectFactory(), start=False)
    finally:
        server.close()


def test_endpoints_page_and_api_show_and_check_what_servers_support(client):
    server = serve("tgi")
    try:
        member = MembershipFactory(researcher=True)
        endpoint = ModelEndpoint.objects.create(name="tgi", kind="openai", path="m", base_url=server.url)
        client.force_login(member.user)
        assert client.get(reverse("api_endpoints")).status_code == 403  # not a researcher yet
        researcher_grant(user=member.user)
        listed = client.get(reverse("api_endpoints")).json()
        assert [e["name"] for e in listed] == ["tgi"] and listed[0]["supports"] == "not checked yet"
        checked = client.post(reverse("api_endpoint_check", args=[endpoint.pk])).json()
        assert (checked["capabilities"]["n"], checked["capabilities"]["logprobs"]) == (False, True)
        page = client.get(reverse("synth:endpoints")).content.decode()
        assert "one sample a request" in page and "Check connection" in page
        server.close()  # the server goes away: the check says so, on the page and in the API
        response = client.post(reverse("api_endpoint_check", args=[endpoint.pk]))
        assert response.status_code == 400 and "base_url" in response.json()
        response = client.post(reverse("synth:endpoints"), {"endpoint": endpoint.pk}, follow=True)
        assert "no OpenAI-compatible API answers" in response.content.decode()
    finally:
        server.close()


def test_the_judge_command_says_what_failed_in_one_line(capsys):
    project = ProjectFactory(name="Cmd")
    PairItemFactory(project=project)
    endpoint = ModelEndpoint.objects.create(name="gone", kind="openai", path="m", base_url="http://127.0.0.1:9/v1",
                                            max_retries=0, timeout_s=2)
    Judge.objects.create(name="j", endpoint=endpoint, verdict_method="generate")
    with pytest.raises(CommandError) as excinfo:
        call_command("run_judge", "--project", "Cmd", "--judge", "j")
    message = str(excinfo.value)
    assert "unreachable" in message and "\n" not in message and "Traceback" not in message
    assert "Traceback" not in capsys.readouterr().err
    assert SynthesisJob.objects.count() == 0


def test_a_model_the_server_stopped_serving_fails_the_run_with_the_server_s_answer():
    """vLLM answers 404 for a model it does not serve: the run fails with that, in one line."""
    server = serve("vllm", models=("served",))
    try:
        project = ProjectFactory()
        PairItemFactory(project=project)
        endpoint = ModelEndpoint.objects.create(name="vllm", kind="openai", path="renamed", base_url=server.url)
        judge = Judge.objects.create(name="j", endpoint=endpoint, verdict_method="generate")
        run = judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk)
        assert run.status == "failed" and "answered 404" in run.error and "does not exist" in run.error
        assert not CachedResponse.objects.exists()
    finally:
        server.close()
