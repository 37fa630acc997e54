"""The reasoning-traces job on a scripted server: k traces per problem verified (math by answer, code by its
tests in the sandbox), correct ones as SFT rows, a correct over a wrong one as a pair, pass@k per problem and
per job, and a run resumed after its worker died that stores nothing twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotate.models import Completion, PairItem, Project
from prefdata.verifiers import pass_at_k
from synth.models import ModelEndpoint, Problem, SynthesisJob, SynthesisStep, SyntheticRow
from synth.services import synthesis_job_create, synthesis_job_run
from tests.factories import ProjectFactory
from tests.synth.test_synth_kinds import ScriptedChat

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_backends")]

# Per question, the traces the server gives in turn (i-th choice of a request): some right, some wrong.
TRACES = {
    "What is 6 times 7?": ["<think>6*7=42</think> The answer is 42.", "<think>6*7=48</think> The answer is 48.",
                           "<think>six sevens</think> The answer is 42.", "<think>hmm</think> I am not sure."],
    "What is 2 plus 2?": ["<think>2+2</think> The answer is 5."] * 4,
    "Write add(a, b) returning the sum.": [
        "<think>easy</think>\n```python\ndef add(a, b):\n    return a + b\n```",
        "<think>oops</think>\n```python\ndef add(a, b):\n    return a - b\n```",
        "<think>ok</think>\n```python\ndef add(a, b):\n    return b + a\n```",
        "<think>again</think>\n```python\ndef add(a, b):\n    return a * b\n```"],
}


class Killed(BaseException):
    """A worker killed in the middle of a chunk: nothing of the chunk is committed."""


@pytest.fixture
def server():
    chat = ScriptedChat(lambda last, number, i: TRACES[last][i])
    yield chat
    chat.close()


def bank() -> Project:
    project = ProjectFactory()
    Problem.objects.create(project=project, question="What is 6 times 7?", answer="42", tags=["arith"],
                           tag_index=",arith,")
    Problem.objects.create(project=project, question="What is 2 plus 2?", answer="4", tags=["arith"],
                           tag_index=",arith,", split="test")
    Problem.objects.create(project=project, question="Write add(a, b) returning the sum.",
                           tests=["assert add(1, 2) == 3", "assert add(-1, 1) == 0"], tags=["code"],
                           tag_index=",code,")
    return project


def test_traces_are_verified_kept_paired_and_scored_by_pass_at_k(server):
    project = bank()
    endpoint = ModelEndpoint.objects.create(name="m", kind="openai", path="m", base_url=server.url)
    job = synthesis_job_create(project=project, endpoint=endpoint, kind="traces", params={"n": 4}, start=False)
    assert job.total == 3
    job = synthesis_job_run(job_id=job.pk)
    assert job.status == "done", job.error
    # The default format asks for the thinking in tags.
    assert all("<think>" in r["body"]["messages"][0]["content"] for r in server.requests)
    sft = SyntheticRow.objects.filter(job=job, kind="sft")
    six_traces, add_traces = TRACES["What is 6 times 7?"], TRACES["Write add(a, b) returning the sum."]
    assert sorted(r.completion for r in sft) == sorted([six_traces[0], six_traces[2], add_traces[0], add_traces[2]])
    assert all(r.meta["verification"]["correct"] for r in sft)
    code_row = next(r for r in sft if "def add" in r.completion)
    assert code_row.meta["verification"]["passed_tests"] == 2 and code_row.meta["kind"] == "code"
    # A pair per problem with a right and a wrong trace (none for 2 + 2: no trace is right); chosen is right.
    pairs = SyntheticRow.objects.filter(job=job, kind="pair").select_related("pair_item")
    assert len(pairs) == 2 == PairItem.objects.filter(project=project).count()
    for row in pairs:
        chosen = Completion.objects.get(pk=row.meta["chosen"])
        rejected = Completion.objects.get(pk=row.meta["rejected"])
        assert {row.pair_item.completion_a_id, row.pair_item.completion_b_id} == {chosen.pk, rejected.pk}
        assert chosen.sampling["verification"]["correct"] and not rejected.sampling["verification"]["correct"]
    # pass@k per problem (k = 1 and 4) and per job.
    by_problem = job.stats["pass_at_k_by_problem"]
    six, two, add = Problem.objects.order_by("id")
    assert by_problem[str(six.pk)] == {"n": 4, "c": 2, "pass@1": 0.5, "pass@4": 1.0}
    assert by_problem[str(two.pk)] == {"n": 4, "c": 0, "pass@1": 0.0, "pass@4": 0.0}
    assert by_problem[str(add.pk)]["c"] == 2
    assert job.stats["pass_at_k"] == {"problems": 3, "pass@1": pytest.approx((0.5 + 0 + 0.5) / 3, abs=1e-6),
                                      "pass@4": pytest.approx(2 / 3, abs=1e-6)}
    assert job.stats["counts"]["traces"] == 12 and job.stats["counts"]["traces_correct"] == 4
    # Each problem is asked by one project prompt that links back to it.
    six.refresh_from_db()
    assert six.prompt.metadata["problem"] == six.pk and six.prompt.metadata["answer"] == "42"


def test_pass_at_k_is_the_unbiased_estimator():
    from synth.verification import pass_rates

    assert pass_rates(n=5, c=2) == {"n": 5, "c": 2, "pass@1": 0.4, "pass@5": 1.0}
    assert pass_rates(n=5, c=2)["pass@1"] == pytest.approx(pass_at_k(n=5, c=2, k=1))
    assert pass_rates(n=1, c=0) == {"n": 1, "c": 0, "pass@1": 0.0}


def test_filters_select_the_problems_and_a_job_without_any_is_refused(server):
    project = bank()
    endpoint = ModelEndpoint.objects.create(name="m", kind="openai", path="m", base_url=server.url)
    job = synthesis_job_create(project=project, endpoint=endpoint, kind="traces", start=False,
                               params={"n": 2, "tags": ["arith"], "split": "train"})
    job = synthesis_job_run(job_id=job.pk)
    assert job.status == "done" and list(job.stats["pass_at_k_by_problem"]) == [
        str(Problem.objects.get(question="What is 6 times 7?").pk)]
    with pytest.raises(ValidationError) as caught:
        synthesis_job_create(project=project, endpoint=endpoint, kind="traces", params={"tags": ["none"]}, start=False)
    assert "tags" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        synthesis_job_create(project=ProjectFactory(), endpoint=endpoint, kind="traces", start=False)
    assert "problems" in caught.value.message_dict


def test_a_resumed_trace_job_adds_nothing_twice(server, monkeypatch):
    project = bank()
    endpoint = ModelEndpoint.objects.create(name="m", kind="openai", path="m", base_url=server.url)
    job = synthesis_job_create(project=project, endpoint=endpoint, kind="traces", start=False,
                               params={"n": 4, "batch_size": 1})
    from synth import pipelines

    real_commit = pipelines.Run.commit
    calls = {"n": 0}

    def commit(self, chunk, write):
        calls["n"] += 1
        if calls["n"] == 2:  # dies while storing the second problem
            def dying():
                write()
                raise Killed
            return real_commit(self, chunk, dying)
        return real_commit(self, chunk, write)

    monkeypatch.setattr(pipelines.Run, "commit", commit)
    with pytest.raises(Killed):
        synthesis_job_run(job_id=job.pk)
    assert SyntheticRow.objects.filter(job=job).count() == 3  # the first problem: 2 SFT rows and a pair
    assert Completion.objects.filter(prompt__project=project).count() == 4
    SynthesisJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    job = synthesis_job_run(job_id=job.pk)
    assert job.status == "done" and job.attempt == 2
    assert SynthesisStep.objects.filter(job=job).count() == 3
    assert Completion.objects.filter(prompt__project=project).count() == 12
    assert SyntheticRow.objects.filter(job=job, kind="sft").count() == 4
    assert SyntheticRow.objects.filter(job=job, kind="pair").count() == 2
    assert len(job.stats["pass_at_k_by_problem"]) == 3 and job.stats["counts"]["traces"] == 12
    assert job.progress == 3
    # A second run of the finished job adds nothing.
    before = SyntheticRow.objects.count()
    SynthesisJob.objects.filter(pk=job.pk).update(status="queued")
    synthesis_job_run(job_id=job.pk)
    assert SyntheticRow.objects.count() == before


def test_the_job_page_shows_pass_at_k(server, client):
    from annotate.models import Membership
    from tests.factories import MembershipFactory

    project = bank()
    membership = MembershipFactory(project=project, role=Membership.Role.RESEARCHER)
    client.force_login(membership.user)
    endpoint = ModelEndpoint.objects.create(name="m", kind="openai", path="m", base_url=server.url)
    job = synthesis_job_create(project=project, endpoint=endpoint, kind="traces", params={"n": 4}, start=False)
    job = synthesis_job_run(job_id=job.pk)
    page = client.get(f"/projects/{project.pk}/synthesis/{job.pk}/").content.decode()
    assert "pass@k" in page and "pass@1 0.333" in page and "pass@4 0.667" in page
