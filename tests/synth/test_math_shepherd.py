"""Math-Shepherd on a scripted server: k rollouts from each step's prefix, verified against the reference
answer (the item's own, its prompt's metadata, or a linked problem); soft and hard labels; automatic
StepLabels next to people's, with their agreement; a resumed run that stores nothing twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotate.models import Project, Prompt, StepItem, StepLabel
from synth.models import ModelEndpoint, Problem, SynthesisJob, SyntheticRow
from synth.services import synthesis_job_create, synthesis_job_run
from tests.factories import ProjectFactory, UserFactory
from tests.synth.test_synth_kinds import ScriptedChat

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_backends")]

SOLUTION = ["3 + 4 = 7.", "Doubling gives 15.", "The answer is 15."]  # right, then wrong
LINKED = ["2 * 5 = 10.", "The answer is 10."]


def respond(last: str, number: int, i: int) -> str:
    if "Doubling gives 15" in last:
        return "The answer is 15."
    if "3 + 4 = 7." in last:
        return ["So it is 14. The answer is 14.", "The answer is 14.", "The answer is 12.", "I give up."][i]
    if "2 * 5 = 10." in last:
        return "The answer is 10."
    return "The answer is 0."


class Killed(BaseException):
    """A worker killed in the middle of a chunk."""


@pytest.fixture
def server():
    chat = ScriptedChat(respond)
    yield chat
    chat.close()


def item(project: Project, question: str, steps: list[str], *, reference: str = "", metadata=None) -> StepItem:
    prompt = Prompt.objects.create(project=project, messages=[{"role": "user", "content": question}],
                                   metadata=metadata or {})
    return StepItem.objects.create(project=project, prompt=prompt, steps=steps, reference_answer=reference)


def steps_project():
    project = ProjectFactory(task_kind="steps")
    first = item(project, "Add 3 and 4, then double it.", SOLUTION, metadata={"answer": "14"})
    no_reference = item(project, "Is it nice?", ["Yes.", "Indeed."])
    problem = Problem.objects.create(project=project, question="What is 2 times 5?", answer="10")
    linked = item(project, "What is 2 times 5?", LINKED, metadata={"problem": problem.pk})
    StepLabel.objects.create(item=first, annotator=UserFactory(), ratings=[1, 1, -1])
    return project, first, no_reference, linked


def test_rollouts_label_each_step_soft_and_hard_next_to_peoples_labels(server):
    project, first, no_reference, linked = steps_project()
    endpoint = ModelEndpoint.objects.create(name="m", kind="openai", path="m", base_url=server.url)
    job = synthesis_job_create(project=project, endpoint=endpoint, kind="math_shepherd", params={"n": 4},
                               start=False)
    job = synthesis_job_run(job_id=job.pk)
    assert job.status == "done", job.error
    label = StepLabel.objects.get(item=first, source="auto")
    assert label.ratings == [1, -1, -1] and label.annotator is None
    assert label.source_name == "math-shepherd:hard:m"
    row = SyntheticRow.objects.get(job=job, step_item=first)
    assert row.kind == "steps" and row.meta["soft"] == [0.5, 0.0, 0.0] and row.meta["hard"] == [1, -1, -1]
    assert row.meta["reference"] == "14"
    # The reference answer of a linked problem.
    assert StepLabel.objects.get(item=linked, source="auto").ratings == [1, 1]
    assert SyntheticRow.objects.get(job=job, step_item=linked).meta["soft"] == [1.0, 1.0]
    # No reference: no label.
    assert not StepLabel.objects.filter(item=no_reference, source="auto").exists()
    assert job.stats["counts"]["items_without_reference"] == 1 and job.stats["counts"]["items_labeled"] == 2
    # 4 rollouts from each step but the last (the solution itself decides the last): 2 + 1 prefixes.
    assert job.stats["counts"]["rollouts"] == 12
    # People's label [1, 1, -1] against the hard labels [1, -1, -1]: 2 of 3 steps agree.
    assert job.stats["agreement"] == {"steps": 3, "agreed": 2, "share": pytest.approx(2 / 3, abs=1e-4)}
    # The person's label is untouched, beside the automatic one.
    assert StepLabel.objects.get(item=first, source="human").ratings == [1, 1, -1]


def test_the_soft_estimate_rates_by_the_share_of_correct_rollouts(server):
    project, first, _, _ = steps_project()
    endpoint = ModelEndpoint.objects.create(name="m", kind="openai", path="m", base_url=server.url)
    job = synthesis_job_create(project=project, endpoint=endpoint, kind="math_shepherd", start=False,
                               params={"n": 4, "estimate": "soft", "soft_threshold": 0.6})
    assert synthesis_job_run(job_id=job.pk).status == "done"
    assert StepLabel.objects.get(item=first, source_name="math-shepherd:soft:m").ratings == [-1, -1, -1]
    job = synthesis_job_create(project=project, endpoint=endpoint, kind="math_shepherd", start=False,
                               params={"n": 4, "estimate": "soft", "soft_threshold": 0.5})
    assert synthesis_job_run(job_id=job.pk).status == "done"
    # The same method and model labels a solution once: the later run's ratings replace the earlier ones.
    assert StepLabel.objects.get(item=first, source_name="math-shepherd:soft:m").ratings == [1, -1, -1]


def test_math_shepherd_needs_a_steps_project(server):
    endpoint = ModelEndpoint.objects.create(name="m", kind="openai", path="m", base_url=server.url)
    with pytest.raises(ValidationError) as caught:
        synthesis_job_create(project=ProjectFactory(), endpoint=endpoint, kind="math_shepherd", start=False)
    assert "kind" in caught.value.message_dict


def test_a_resumed_math_shepherd_job_adds_nothing_twice(server, monkeypatch):
    project, first, _, linked = steps_project()
    endpoint = ModelEndpoint.objects.create(name="m", kind="openai", path="m", base_url=server.url)
    job = synthesis_job_create(project=project, endpoint=endpoint, kind="math_shepherd", start=False,
                               params={"n": 4, "batch_size": 1})
    from synth import pipelines

    real_commit = pipelines.Run.commit
    calls = {"n": 0}

    def commit(self, chunk, write):
        calls["n"] += 1
        if calls["n"] == 3:  # dies while storing the third solution (the linked one)
            def dying():
                write()
                raise Killed
            return real_commit(self, chunk, dying)
        return real_commit(self, chunk, write)

    monkeypatch.setattr(pipelines.Run, "commit", commit)
    with pytest.raises(Killed):
        synthesis_job_run(job_id=job.pk)
    assert SyntheticRow.objects.filter(job=job).count() == 1
    assert not StepLabel.objects.filter(item=linked, source="auto").exists()
    asked = len(server.requests)
    SynthesisJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    job = synthesis_job_run(job_id=job.pk)
    assert job.status == "done" and job.attempt == 2
    # The killed chunk's request was paid: the retry is served from the cache of paid answers.
    assert len(server.requests) == asked
    assert SyntheticRow.objects.filter(job=job).count() == 2
    assert StepLabel.objects.filter(source="auto").count() == 2
    assert job.stats["counts"]["items_labeled"] == 2 and job.stats["counts"]["items_without_reference"] == 1
    assert job.stats["agreement"]["steps"] == 3 and job.progress == 3
