"""HTTP endpoints: the key stays secret, hosts are allowlisted, failures are retried, answers cached."""

import logging

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from synth.backends.base import Sampling
from synth.backends.loader import backend_cache_clear
from synth.backends.openai import EndpointError, OpenAIBackend
from synth.models import CachedResponse, ModelEndpoint
from synth.secrets import base_url_check
from synth.services import endpoint_api_key_set, endpoint_backend, endpoint_usage
from tests.factories import UserFactory
from tests.http_server import Server

CANARY = "sk-canary-5f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def endpoint(db, server):
    backend_cache_clear()
    ep = ModelEndpoint.objects.create(name="http", kind="openai", path="judge-model", base_url=server.url,
                                      cost_per_million_input=2.0, cost_per_million_output=8.0, max_retries=3)
    endpoint_api_key_set(endpoint=ep, api_key=CANARY)
    yield ep
    backend_cache_clear()


def test_the_api_key_never_shows(endpoint, server, client, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.DEBUG)
    ep = ModelEndpoint.objects.get(pk=endpoint.pk)
    assert CANARY not in ep.api_key_encrypted and ep.has_api_key
    # It is sent to the server, and works...
    server.script = [(500, {}, {"error": "boom"})]
    replies = endpoint_backend(endpoint=ep).generate([[{"role": "user", "content": "hi"}]], Sampling(n=1))
    assert replies == [["reply 2"]] and server.requests[-1]["auth"] == f"Bearer {CANARY}"
    assert CANARY not in repr(endpoint_backend(endpoint=ep)) and CANARY not in str(vars(endpoint_backend(endpoint=ep)))
    # ...but no page, form, API answer, log line or task message carries it.
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    for url in (reverse("admin:synth_modelendpoint_change", args=[ep.pk]),
                reverse("admin:synth_modelendpoint_changelist"), reverse("admin:synth_cachedresponse_changelist")):
        assert CANARY not in client.get(url).content.decode(), url
    assert CANARY not in caplog.text
    from annotate.services import project_create
    from judges.models import Judge
    from judges.services import judge_run_create

    judge = Judge.objects.create(name="http judge", endpoint=ep, verdict_method="generate")
    with django_capture_on_commit_callbacks() as callbacks:
        judge_run_create(judge=judge, project=project_create(name="p"))
    from unittest import mock

    with mock.patch("judges.tasks.judge_run_execute_task.apply_async") as sent:
        callbacks[0]()
    assert CANARY not in repr(sent.call_args)


def test_admin_key_is_write_only_and_kept_when_blank(endpoint, client):
    client.force_login(UserFactory(username="root2", is_staff=True, is_superuser=True))
    url = reverse("admin:synth_modelendpoint_change", args=[endpoint.pk])
    form = {"name": "http", "kind": "openai", "path": "judge-model", "base_url": endpoint.base_url, "dtype": "float32",
            "device": "cpu", "max_concurrency": 4, "timeout_s": 60, "max_retries": 3, "cost_per_million_input": 2,
            "cost_per_million_output": 8, "api_key": ""}
    assert client.post(url, form).status_code == 302
    endpoint.refresh_from_db()
    from synth.secrets import api_key_decrypt

    assert api_key_decrypt(endpoint.api_key_encrypted) == CANARY
    html = client.get(url).content.decode()
    assert 'name="api_key"' in html and CANARY not in html


@pytest.mark.parametrize("url", ["http://10.0.0.8/v1", "http://169.254.169.254/latest", "file:///etc/passwd",
                                 "http://evil.example.com/v1"])
def test_hosts_outside_the_allowlist_are_refused(url, db):
    with pytest.raises(ValidationError):
        base_url_check(url)
    with pytest.raises(ValidationError):
        ModelEndpoint(name="x", kind="openai", path="m", base_url=url).full_clean()


def test_allowlist_can_admit_a_domain(settings):
    settings.ENDPOINT_ALLOWED_HOSTS = [".example.org"]
    base_url_check("https://api.example.org/v1")
    with pytest.raises(ValidationError):
        base_url_check("https://example.org.evil.net/v1")


@pytest.mark.parametrize("allowed, url, ok", [
    ("127.0.0.1:8001", "http://127.0.0.1:8001/v1", True),
    ("127.0.0.1:8001", "http://127.0.0.1:8002/v1", False),  # the entry's port only
    ("127.0.0.1:8001", "http://127.0.0.1/v1", False),  # port 80
    ("127.0.0.1", "http://127.0.0.1:6379/", True),  # no port in the entry: any port
    ("api.example.org:443", "https://api.example.org/v1", True),  # https's default port
    ("api.example.org:443", "http://api.example.org/v1", False),
    (".example.org:8443", "https://a.example.org:8443/v1", True),
    (".example.org:8443", "https://a.example.org:9443/v1", False),
    ("[::1]:8000", "http://[::1]:8000/v1", True),
    ("[::1]:8000", "http://[::1]:8001/v1", False),
    ("::1", "http://[::1]:5/v1", True),
    ("localhost:8000", "http://localhost:99999/v1", False),  # not a port
])
def test_an_allowed_host_with_a_port_admits_that_port_only(settings, allowed, url, ok):
    settings.ENDPOINT_ALLOWED_HOSTS = [allowed]
    if ok:
        base_url_check(url)
    else:
        with pytest.raises(ValidationError):
            base_url_check(url)


def test_redirects_are_not_followed(server):
    server.script = [(302, {"Location": "http://169.254.169.254/"}, {})]
    client = OpenAIBackend(base_url=server.url, model="m", max_retries=0)
    with pytest.raises(EndpointError, match="redirect"):
        client.generate([[{"role": "user", "content": "hi"}]], Sampling())


def test_retries_on_429_and_5xx_then_gives_up(server):
    server.script = [(429, {"Retry-After": "0"}, {}), (503, {}, {}), (200, {}, None)]
    client = OpenAIBackend(base_url=server.url, model="m", max_retries=3, backoff_base=0.01)
    assert client.generate([[{"role": "user", "content": "hi"}]], Sampling()) == [["reply 3"]]
    assert client.usage.retries == 2 and client.usage.requests == 1
    server.script = [(500, {}, {})] * 3
    client = OpenAIBackend(base_url=server.url, model="m", max_retries=2, backoff_base=0.01)
    with pytest.raises(EndpointError, match="500"):
        client.generate([[{"role": "user", "content": "hi"}]], Sampling())
    server.script = [(400, {}, {"error": "bad"})]
    with pytest.raises(EndpointError, match="400"):  # a client error is not retried
        client.generate([[{"role": "user", "content": "hi"}]], Sampling())


def test_the_same_request_is_paid_once(endpoint, server):
    backend = endpoint_backend(endpoint=endpoint)
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
    first = backend.generate(conversations, Sampling(seed=1))
    again = backend.generate(conversations, Sampling(seed=1))
    assert first == again and len(server.requests) == 6
    assert CachedResponse.objects.filter(endpoint=endpoint).count() == 6
    usage = endpoint_usage(endpoint=endpoint)
    assert usage == {"requests": 6, "prompt_tokens": 60, "completion_tokens": 30, "cache_hits": 6,
                     "cost": pytest.approx((60 * 2 + 30 * 8) / 1e6)}


def test_concurrency_is_bounded(server):
    client = OpenAIBackend(base_url=server.url, model="m", max_concurrency=3)
    replies = client.generate([[{"role": "user", "content": f"q{i}"}] for i in range(12)], Sampling())
    assert len(replies) == 12 and len(server.requests) == 12
