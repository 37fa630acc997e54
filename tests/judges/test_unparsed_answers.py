"""Answers a judge's verdict, score or yes/no could not be read from: counted per run, a few kept, and shown
(escaped) on the run page, in the reports API and in the admin."""

import pytest
from django.urls import reverse

from judges.models import UNPARSED_EXAMPLE_CHARS, UNPARSED_EXAMPLES, AIJudgment, Judge, JudgeRun
from judges.services import judge_run_execute, unparsed_example
from synth.models import ModelEndpoint
from tests.factories import CompletionFactory, MembershipFactory, PairItemFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("judge")</script> I like them both.'


class Answers:
    """Answers each prompt with the next of ``answers`` (round robin over samples and prompts)."""

    name = "scripted"

    def __init__(self, answers):
        self.answers, self.i = answers, 0

    def generate(self, conversations, sampling):
        out = []
        for _ in conversations:
            row = []
            for _ in range(sampling.n):
                row.append(self.answers[self.i % len(self.answers)])
                self.i += 1
            out.append(row)
        return out


def pairs(n=4):
    project = ProjectFactory()
    for _ in range(n):
        prompt = PromptFactory(project=project)
        PairItemFactory(project=project, prompt=prompt, completion_a=CompletionFactory(prompt=prompt),
                        completion_b=CompletionFactory(prompt=prompt))
    return project


def endpoint():
    return ModelEndpoint.objects.get_or_create(name="scripted", defaults={"path": "unused"})[0]


def run_with(monkeypatch, project, judge, answers, **kwargs):
    monkeypatch.setattr("judges.services.endpoint_backend", lambda endpoint: Answers(answers))
    run = judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk, **kwargs)
    run.refresh_from_db()
    return run


def test_a_run_counts_unparsed_answers_per_batch_and_keeps_a_few(monkeypatch):
    project = pairs(4)
    judge = Judge.objects.create(name="talker", endpoint=endpoint(), verdict_method="generate", votes=2,
                                 temperature=0.7, debiasing="swap_average")
    # Per prompt (2 samples): "A is better." and an answer with no verdict; then a tie and another without one.
    answers = ["A is better.", HOSTILE, "It's a tie.", f"Hmm {'.' * 900} still thinking"]
    run = run_with(monkeypatch, project, judge, answers, batch_size=2)
    assert run.status == "done"
    assert (run.answers, run.unparsed) == (4 * 2 * 2, 4 * 2 * 2 // 2)  # items x orders x samples; half unread
    # Two distinct texts, each kept once; the long one trimmed to its start and end.
    assert run.unparsed_examples[0] == HOSTILE
    long = run.unparsed_examples[1]
    assert len(long) <= UNPARSED_EXAMPLE_CHARS and long.startswith("Hmm") and long.endswith("still thinking")
    assert len(run.unparsed_examples) == 2
    # A tie is a vote of its own, an unparsed answer "none"; both count half for each side.
    judgment = AIJudgment.objects.filter(judge=judge).first()
    assert judgment.votes == ["A", "none", "tie", "none"]  # AB: A is better, unread; BA: a tie, unread
    assert judgment.prob_a_ab == pytest.approx((1.0 + 0.5) / 2)  # "A is better." and "It's a tie." in AB


def test_examples_stop_at_five_while_the_counts_go_on(monkeypatch):
    project = pairs(4)
    judge = Judge.objects.create(name="mumbler", endpoint=endpoint(), verdict_method="generate",
                                 debiasing="swap")
    run = run_with(monkeypatch, project, judge, [f"No idea, number {i}." for i in range(7)], batch_size=1)
    assert (run.answers, run.unparsed) == (8, 8)
    assert run.unparsed_examples == [f"No idea, number {i}." for i in range(UNPARSED_EXAMPLES)]


def test_log_probability_judges_read_no_text(monkeypatch):
    class Scorer:
        def score(self, conversations, candidates):
            return [[-0.1, -2.0] for _ in conversations]

    project = pairs(2)
    judge = Judge.objects.create(name="logp", endpoint=endpoint())
    monkeypatch.setattr("judges.services.endpoint_backend", lambda endpoint: Scorer())
    run = judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk)
    assert (run.answers, run.unparsed, run.unparsed_examples) == (0, 0, [])


def test_pointwise_and_step_judges_count_theirs(monkeypatch):
    from annotate.models import Project
    from annotate.services import step_item_create

    project = pairs(2)
    judge = Judge.objects.create(name="scorer", endpoint=endpoint(), mode="pointwise", verdict_method="generate")
    run = run_with(monkeypatch, project, judge, ["Rating: 8", "It is fine."])
    assert (run.answers, run.unparsed, run.unparsed_examples) == (4, 2, ["It is fine."])

    steps = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    step_item_create(prompt=PromptFactory(project=steps), steps=["x = 1", "so x + 1 = 3"])
    judge = Judge.objects.create(name="stepper", endpoint=endpoint(), mode="steps", verdict_method="generate")
    run = run_with(monkeypatch, steps, judge, ["Yes, it is.", "The step adds one."])
    assert (run.answers, run.unparsed, run.unparsed_examples) == (2, 1, ["The step adds one."])


def test_unparsed_example_keeps_the_start_and_the_end():
    assert unparsed_example("  short  ") == "short"
    text = "start " + "x" * 1000 + " the end"
    kept = unparsed_example(text)
    assert len(kept) <= UNPARSED_EXAMPLE_CHARS and kept.startswith("start ") and kept.endswith(" the end")
    assert " … " in kept


def shown_run(project):
    judge = Judge.objects.create(name="shown", endpoint=endpoint(), verdict_method="generate")
    AIJudgment.objects.create(judge=judge, item=project.pair_items.first(), template_version=1, verdict="tie",
                              probability=0.5)
    return JudgeRun.objects.create(judge=judge, project=project, status="done", answers=40, unparsed=3,
                                   unparsed_examples=[HOSTILE, "Both have merits."])


def test_the_run_page_shows_the_count_and_escaped_examples(client):
    project = pairs(1)
    shown_run(project)
    client.force_login(MembershipFactory(project=project, researcher=True).user)
    html = client.get(reverse("judges:runs", args=[project.pk])).content.decode()
    assert "3 of 40" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(&quot;judge&quot;)&lt;/script&gt;" in html
    assert '<details class="unparsed" hx-disable>' in html and "Both have merits." in html
    # The polled fragment shows them too.
    fragment = client.get(reverse("judges:runs", args=[project.pk]), headers={"HX-Request": "true"}).content.decode()
    assert "3 of 40" in fragment and "&lt;script&gt;" in fragment and "<h2>" not in fragment


def test_the_reports_api_sums_the_runs(client):
    project = pairs(1)
    run = shown_run(project)
    JudgeRun.objects.create(judge=run.judge, project=project, status="done", answers=10, unparsed=1,
                            unparsed_examples=["Later one."])
    client.force_login(MembershipFactory(project=project, researcher=True).user)
    report, = client.get(reverse("api_judge_reports", args=[project.pk])).json()
    assert report["unparsed"] == {"answers": 50, "unparsed": 4, "share": 0.08,
                                  "examples": ["Later one.", HOSTILE, "Both have merits."]}


def test_the_admin_shows_them_escaped(admin_client):
    run = shown_run(pairs(1))
    listing = admin_client.get(reverse("admin:judges_judgerun_changelist")).content.decode()
    assert "3 of 40" in listing
    html = admin_client.get(reverse("admin:judges_judgerun_change", args=[run.pk])).content.decode()
    assert "<pre>&lt;script&gt;alert(&quot;judge&quot;)&lt;/script&gt; I like them both.</pre>" in html
    assert "<script>alert" not in html
