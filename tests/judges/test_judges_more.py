"""Self-consistency votes, constitutions, pointwise scores, versions, cancel and re-delivery."""

import re

import pytest

from judges.models import AIJudgment, Judge, JudgeRun
from judges.services import (
    items_judge,
    judge_run_cancel,
    judge_run_execute,
    judge_version_bump_if_changed,
    judge_version_sync,
    score_parse,
)
from synth.models import Constitution, ModelEndpoint, Principle
from synth.services import constitution_touch
from tests.factories import CompletionFactory, PairItemFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db


class ScriptedGenerator:
    """Answers "[[A]]" or "[[B]]" for the response that says "good", with some samples flipped."""

    name = "scripted"

    def __init__(self, noisy_every=4):
        self.noisy_every, self.calls, self.prompts = noisy_every, 0, []

    def generate(self, conversations, sampling):
        self.calls += 1
        out = []
        for conversation in conversations:
            text = conversation[-1]["content"]
            self.prompts.append(text)
            first = text.index("[Response A]") < text.index("good") < text.index("[Response B]")
            right, wrong = ("[[A]]", "[[B]]") if first else ("[[B]]", "[[A]]")
            out.append([wrong if (i + 1) % self.noisy_every == 0 else f"Explanation... {right}"
                        for i in range(sampling.n)])
        return out

    def score(self, conversations, candidates):
        self.calls += 1
        out = []
        for conversation, cands in zip(conversations, candidates, strict=True):
            good = "good" in conversation[-1]["content"].split("[Response]")[-1]
            out.append([-(abs(int(c) - (9 if good else 3))) for c in cands])
        return out


@pytest.fixture
def pairs():
    project = ProjectFactory()
    items = []
    for i in range(6):
        prompt = PromptFactory(project=project)
        a, b = ("good answer", "poor answer") if i % 2 == 0 else ("poor answer", "good answer")
        items.append(PairItemFactory(project=project, prompt=prompt,
                                     completion_a=CompletionFactory(prompt=prompt, text=a),
                                     completion_b=CompletionFactory(prompt=prompt, text=b)))
    return project, items


def endpoint():
    return ModelEndpoint.objects.get_or_create(name="scripted", defaults={"path": "unused"})[0]


def truth(item):
    return "A" if item.completion_a.text.startswith("good") else "B"


def test_self_consistency_majority_and_vote_share(pairs):
    _, items = pairs
    judge = Judge.objects.create(name="voter", endpoint=endpoint(), verdict_method="generate", votes=4,
                                 temperature=0.7, debiasing="swap_average")
    judgments = items_judge(judge=judge, items=items, backend=ScriptedGenerator(noisy_every=4))
    for item, j in zip(items, judgments, strict=True):
        assert j.verdict == truth(item)
        assert len(j.votes) == 8  # 4 samples x 2 orders, about A/B
        assert j.vote_share == pytest.approx(6 / 8)  # one sample in four flipped, in each order
        assert j.prob_a_ab == pytest.approx(0.75 if truth(item) == "A" else 0.25)


def test_constitution_principles_are_asked_and_recorded(pairs):
    _, items = pairs
    constitution = Constitution.objects.create(name="HH")
    for i, question in enumerate(["Which response is less harmful?", "Which response is more honest?"]):
        Principle.objects.create(constitution=constitution, name=f"p{i}", critique_request="c", revision_request="r",
                                 comparison_question=question, order=i)
    judge = Judge.objects.create(name="cai", endpoint=endpoint(), verdict_method="generate", constitution=constitution,
                                 principle_use="all")
    backend = ScriptedGenerator(noisy_every=1000)
    judgments = items_judge(judge=judge, items=items[:2], backend=backend)
    asked = {re.search(r"Which response is (less harmful|more honest)\?", p).group(0) for p in backend.prompts}
    assert asked == {"Which response is less harmful?", "Which response is more honest?"}
    assert len(backend.prompts) == 2 * 2 * 2  # items x principles x orders
    assert judgments[0].principles == ["p0", "p1"] and judgments[0].constitution_version == 1
    # One principle per judgment: the same one each time for an item (reproducible).
    judge.principle_use = "sample_one"
    judge_version_bump_if_changed(judge=judge)
    judge.save()
    first = [j.principles for j in items_judge(judge=judge, items=items, backend=ScriptedGenerator())]
    assert all(len(p) == 1 for p in first)
    # New principles: a new constitution version, and the judge takes a new template version of its own.
    constitution_touch(constitution=constitution)
    assert Constitution.objects.get(pk=constitution.pk).version == 2 and judge.template_version == 2
    assert judge_version_sync(judge=judge) and judge.template_version == 3 and judge.constitution_version == 2
    assert not judge_version_sync(judge=judge) and judge.template_version == 3


def test_pointwise_scores_each_response(pairs):
    _, items = pairs
    judge = Judge.objects.create(name="points", endpoint=endpoint(), mode="pointwise",
                                 pointwise_template="{conversation}\n[Response]{response}\n{question}")
    judgments = items_judge(judge=judge, items=items, backend=ScriptedGenerator())
    for item, j in zip(items, judgments, strict=True):
        assert j.verdict == truth(item)
        good, poor = (j.score_a, j.score_b) if truth(item) == "A" else (j.score_b, j.score_a)
        assert good > 7 and poor < 5


@pytest.mark.parametrize("text, score", [("Rating: [[7]]", 7), ("I'd give it 8/10", 8), ("Score: 10", 10),
                                         ("no number", None)])
def test_score_parse(text, score):
    assert score_parse(text) == score


def test_version_bumps_only_on_relevant_changes(pairs):
    judge = Judge.objects.create(name="v", endpoint=endpoint())
    judge.name = "renamed"
    assert not judge_version_bump_if_changed(judge=judge)
    judge.debiasing = "swap"
    assert judge_version_bump_if_changed(judge=judge) and judge.template_version == 2


def test_chunked_run_survives_redelivery_and_cancel(pairs, monkeypatch):
    project, items = pairs
    judge = Judge.objects.create(name="chunky", endpoint=endpoint(), verdict_method="generate")
    backend = ScriptedGenerator()
    monkeypatch.setattr("judges.services.endpoint_backend", lambda endpoint: backend)
    run = JudgeRun.objects.create(judge=judge, project=project)
    run = judge_run_execute(run_id=run.pk, chunk_size=4, batch_size=2)
    # Between two chunks the run waits in the queue for its next turn.
    assert run.status == "queued" and AIJudgment.objects.filter(judge=judge).count() == 4
    assert (run.progress, run.total, run.attempt) == (4, 6, 1)
    # The next turn judges what is left, and nothing twice.
    calls = backend.calls
    run = judge_run_execute(run_id=run.pk, chunk_size=4, batch_size=2)
    assert run.status == "done" and AIJudgment.objects.filter(judge=judge).count() == 6
    assert (run.progress, run.total, run.attempt) == (6, 6, 1)
    assert backend.calls == calls + 1  # only the last two pairs, in one batch
    assert judge_run_execute(run_id=run.pk).status == "done"
    assert AIJudgment.objects.filter(judge=judge).count() == 6
    # Cancel: a new judge version's run stops before its first batch and keeps what it did.
    judge.votes = 3
    judge_version_bump_if_changed(judge=judge)
    judge.save()
    run2 = JudgeRun.objects.create(judge=judge, project=project)
    judge_run_cancel(run=run2)
    assert judge_run_execute(run_id=run2.pk).status == "cancelled"
    assert AIJudgment.objects.filter(judge=judge, template_version=judge.template_version).count() == 0


class StepChecker:
    """Says "Yes" unless the last shown step contains "wrong"."""

    def score(self, conversations, candidates):
        out = []
        for conversation, cands in zip(conversations, candidates, strict=True):
            assert cands == ["Yes", "No"]
            last = re.findall(r"^Step \d+: .*$", conversation[-1]["content"], re.MULTILINE)[-1]
            out.append([-2.0, -0.1] if "wrong" in last else [-0.1, -2.0])
        return out


def test_step_judge_rates_every_step_and_runs_over_a_steps_project(monkeypatch):
    from annotate.models import Project, StepLabel
    from annotate.services import step_item_create

    project = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    items = [step_item_create(prompt=PromptFactory(project=project), steps=["fine", "wrong here", "fine again"])
             for _ in range(3)]
    judge = Judge.objects.create(name="stepper", endpoint=endpoint(), mode="steps")
    monkeypatch.setattr("judges.services.endpoint_backend", lambda endpoint: StepChecker())
    run = JudgeRun.objects.create(judge=judge, project=project)
    assert judge_run_execute(run_id=run.pk).status == "done"
    labels = StepLabel.objects.filter(item__in=items, source="ai", source_name="stepper v1")
    assert labels.count() == 3
    assert all(label.ratings == [1, -1, 1] and label.finish_reason == "found_error" for label in labels)
    assert (run.refresh_from_db() or (run.progress, run.total)) == (3, 3)
    # A second run of the same version has nothing left to judge: it judges nothing again.
    run2 = judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk)
    assert (run2.status, run2.progress, run2.total) == ("done", 0, 0) and labels.count() == 3


@pytest.mark.slow
def test_step_judge_on_the_tiny_model(tiny_endpoint):
    from annotate.models import Project
    from annotate.services import step_item_create
    from judges.services import step_items_judge

    project = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    item = step_item_create(prompt=PromptFactory(project=project), steps=["2 + 2 = 4", "4 * 3 = 12", "So 12."])
    for method in ("logprob", "generate"):
        judge = Judge.objects.create(name=f"tiny-{method}", endpoint=tiny_endpoint, mode="steps",
                                     verdict_method=method, max_new_tokens=4)
        label, = step_items_judge(judge=judge, items=[item])
        assert len(label.ratings) == 3 and set(label.ratings) <= {1, 0, -1}
