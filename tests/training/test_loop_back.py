"""Trained models back in the loop: a step scorer labels a steps project next to people's labels (idempotent),
and a trained policy's win rate against its base model, judged in both orders by a scripted judge."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

import training.loop
from annotate.models import Project, Prompt, StepItem, StepLabel
from judges.models import Judge
from synth.models import ModelEndpoint
from tests.factories import (
    CompletionFactory,
    MembershipFactory,
    PairItemFactory,
    PairLabelFactory,
    ProjectFactory,
    PromptFactory,
    UserFactory,
)
from tests.http_server import Server
from training.jobs import training_job_check, training_job_run
from training.loop import step_labels_from_scorer, step_rating, win_rate_measure
from training.models import TrainingJob

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_backends")]


# -- step labels from a step scorer -------------------------------------------------------------------------


@pytest.fixture
def step_scorer(tiny_model_dir, tmp_path):
    """A process reward model as the PRM script saves one: a token classifier (wrong, right) on the tiny model."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(
        tiny_model_dir, num_labels=2, id2label={0: "wrong", 1: "right"}, label2id={"wrong": 0, "right": 1})
    model.config.step_separator = "\n"
    model.save_pretrained(tmp_path / "prm")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "prm")
    return ModelEndpoint.objects.create(name="prm", kind=ModelEndpoint.Kind.STEP_SCORER, path=str(tmp_path / "prm"))


def steps_item(project: Project, i: int) -> StepItem:
    prompt = Prompt.objects.create(project=project, messages=[{"role": "user", "content": f"What is {i} + 2 * 2?"}])
    return StepItem.objects.create(project=project, prompt=prompt,
                                   steps=["2 * 2 = 4", f"{i} + 4 = {i + 4}", f"The answer is {i + 4}."])


def test_a_step_scorer_labels_each_solution_next_to_peoples_once(step_scorer):
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    person = UserFactory()
    items = [steps_item(project, i) for i in range(3)]
    for item in items:
        StepLabel.objects.create(item=item, annotator=person, ratings=[1, 1, -1])

    assert step_labels_from_scorer(project=project, endpoint=step_scorer) == 3
    ai = StepLabel.objects.filter(source=StepLabel.Source.AI)
    assert ai.count() == 3 and set(ai.values_list("source_name", flat=True)) == {"step-scorer:prm"}
    assert all(label.annotator_id is None for label in ai)
    # The scores of the endpoint, read as step_rating does (+1 at P(right) >= 0.5, else -1).
    from synth.services import endpoint_backend

    scores = endpoint_backend(endpoint=step_scorer).score_steps([i.prompt.messages for i in items],
                                                               [i.steps for i in items])
    for item, row in zip(items, scores, strict=True):
        label = ai.get(item=item)
        assert label.ratings == [1 if s >= 0.5 else -1 for s in row] and len(label.ratings) == 3
        # People's labels stay as they were, beside the AI's.
        assert StepLabel.objects.get(item=item, annotator=person).ratings == [1, 1, -1]

    # A second run writes nothing; one after a new solution labels that one only.
    before = list(ai.order_by("id").values_list("id", "updated_at"))
    assert step_labels_from_scorer(project=project, endpoint=step_scorer) == 0
    assert list(ai.order_by("id").values_list("id", "updated_at")) == before
    new = steps_item(project, 9)
    out = StringIO()
    call_command("score_steps", "--project", project.name, "--endpoint", "prm", stdout=out)
    assert "1 solutions of" in out.getvalue() and "step-scorer:prm" in out.getvalue()
    assert StepLabel.objects.filter(source=StepLabel.Source.AI).count() == 4
    assert StepLabel.objects.filter(item=new, source=StepLabel.Source.AI).get().ratings[0] in (1, -1)


@pytest.mark.parametrize("score, threshold, rating", [
    (0.5, 0.5, 1), (0.49, 0.5, -1), (0.8, 0.8, 1), (0.79, 0.8, 0), (0.2, 0.8, 0), (0.19, 0.8, -1), (1.0, 1.0, 1),
    (0.5, 1.0, 0),
])
def test_the_rating_of_a_score(score, threshold, rating):
    assert step_rating(score, threshold=threshold) == rating


def test_only_a_step_scorer_labels_only_a_steps_project(step_scorer, tiny_endpoint):
    steps = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    with pytest.raises(ValidationError, match="not a step scorer"):
        step_labels_from_scorer(project=steps, endpoint=tiny_endpoint)
    with pytest.raises(ValidationError, match="no steps to label"):
        step_labels_from_scorer(project=ProjectFactory(), endpoint=step_scorer)
    with pytest.raises(ValidationError, match="from 0.5 to 1"):
        step_labels_from_scorer(project=steps, endpoint=step_scorer, threshold=0.3)


# -- win rate against the base model ------------------------------------------------------------------------

RESPONSES = re.compile(r"\[Response A\]\n(?P<a>.*)\n\n\[Response B\]\n(?P<b>.*)\n\n", re.DOTALL)


class JudgeServer(Server):
    """A judge that prefers whichever answer is not the base model's (``base``: its answers): a trained model
    that answers otherwise wins every prompt, in both orders; two equal answers are a tie."""

    def __init__(self, base: set[str]) -> None:
        super().__init__()
        self.base = base

    def answer(self, body: dict, number: int) -> tuple[dict, int]:
        shown = RESPONSES.search(body["messages"][-1]["content"])
        a_base, b_base = shown["a"] in self.base, shown["b"] in self.base
        self.reply = lambda n: ("Response B is better." if a_base and not b_base else
                                "Response A is better." if b_base and not a_base else "They are equal.")
        return super().answer(body, number)


def judge_on(server: Server, name: str = "referee", **fields) -> Judge:
    endpoint = ModelEndpoint.objects.create(name=f"{name}-server", kind="openai", path="judge", base_url=server.url)
    return Judge.objects.create(name=name, endpoint=endpoint, debiasing=fields.pop("debiasing", "swap"),
                                verdict_method="generate", max_new_tokens=16, **fields)


def pairs_snapshot(n: int = 10):
    """A preference snapshot of ``n`` short pairs, 30% of its prompts in a test split."""
    from training.layouts import layout_parse
    from training.services import snapshot_create

    project = ProjectFactory()
    for i in range(n):
        prompt = PromptFactory(project=project, messages=[{"role": "user", "content": f"What is {i} + 1?"}])
        PairLabelFactory(item=PairItemFactory(project=project, prompt=prompt,
                                              completion_a=CompletionFactory(prompt=prompt, text=f"{i + 1}."),
                                              completion_b=CompletionFactory(prompt=prompt, text=f"{i + 7}.")),
                         verdict="A")
    return snapshot_create(project=project, layout=layout_parse({"split": 0.3}, record="preference"))


def test_a_trained_policy_is_judged_against_its_base_on_the_test_split(media, tiny_endpoint, tiny_model_dir,
                                                                       monkeypatch):
    monkeypatch.setattr(training.loop, "WIN_RATE_MAX_NEW_TOKENS", 12)
    snapshot = pairs_snapshot()
    test_file = media / "media" / snapshot.manifest["splits"]["test"]["file"]
    prompts = training.loop.held_out_prompts(dataset=test_file, test_split=True, limit=50)
    assert 1 <= len(prompts) == snapshot.manifest["splits"]["test"]["rows"]
    base = training.loop._answers(tiny_model_dir, tiny_endpoint, prompts, lambda: None)
    server = JudgeServer(set(base))
    try:
        judge = judge_on(server)
        job = TrainingJob.objects.create(base_endpoint=tiny_endpoint, snapshot=snapshot, method="dpo",
                                         win_rate_judge=judge,
                                         hyperparameters={"max_steps": 2, "max_length": 48, "use_cpu": True,
                                                          "learning_rate": 5e-2})
        job = training_job_run(job_id=job.pk)
    finally:
        server.close()
    assert job.status == "done", f"{job.error}\n{job.log[-2000:]}"
    trained = training.loop._answers(job.result_endpoint.path, job.result_endpoint, prompts, lambda: None)
    differ = sum(t != b for t, b in zip(trained, base, strict=True))
    assert differ >= 1, "training changed no answer: nothing to judge"
    result = job.evaluation["win_rate"]
    assert result == {"wins": differ, "losses": 0, "ties": len(prompts) - differ, "n": len(prompts),
                      "rate": round((differ + 0.5 * (len(prompts) - differ)) / len(prompts), 4),
                      "judge": "referee v1", "prompts_from": "the test split"}
    assert TrainingJob.objects.get(pk=job.pk).evaluation["win_rate"] == result
    # Both orders of each pair went to the judge.
    assert len(server.requests) == 2 * len(prompts)
    assert "implicit_reward_accuracy" in job.evaluation  # the script's own evaluation is kept beside it

    # Shown on the job's page and in the API.
    member = MembershipFactory(researcher=True, project=snapshot.project)
    from django.test import Client

    from annotate.roles import researcher_grant

    researcher_grant(user=member.user)
    client = Client()
    client.force_login(member.user)
    page = client.get(f"/projects/{snapshot.project_id}/training/{job.pk}/").content.decode()
    assert 'id="win-rate"' in page and f"{result['rate']:.0%}" in page and "referee v1" in page
    data = client.get(f"/api/projects/{snapshot.project_id}/training-jobs/{job.pk}/").json()
    assert data["evaluation"]["win_rate"] == result and data["win_rate_judge"]["id"] == judge.pk


def test_a_judge_biased_to_the_first_position_gives_ties_in_both_orders(media, tiny_endpoint, tiny_model_dir,
                                                                        monkeypatch):
    """A judge that always answers "A" is debiased away: each pair is seen both ways, so every prompt is a tie."""
    monkeypatch.setattr(training.loop, "WIN_RATE_MAX_NEW_TOKENS", 4)
    other = ModelEndpoint.objects.create(name="other", kind="transformers", path=str(tiny_model_dir))
    server = Server(reply=lambda n: "Response A is better.")
    try:
        judge = judge_on(server, debiasing="swap_average")
        prompts = [[{"role": "user", "content": f"Question {i}?"}] for i in range(3)]
        result = win_rate_measure(judge=judge, base=tiny_endpoint, trained=other, prompts=prompts)
    finally:
        server.close()
    assert result == {"wins": 0, "losses": 0, "ties": 3, "n": 3, "rate": 0.5, "judge": "referee v1"}
    assert len(server.requests) == 6


def test_without_a_test_split_the_last_tenth_of_rows_is_held_out(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [], "rejected": []} for i in range(19)]
    rows += [{"messages": [{"role": "user", "content": "last"}, {"role": "assistant", "content": "a"}]}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    prompts = training.loop.held_out_prompts(dataset=path, test_split=False, limit=50)
    assert prompts == [[{"role": "user", "content": "q18"}], [{"role": "user", "content": "last"}]]
    assert len(training.loop.held_out_prompts(dataset=path, test_split=True, limit=5)) == 5


def test_the_win_rate_judge_is_checked_before_the_job_is_queued(media, tiny_endpoint):
    from training.services import snapshot_create

    server = Server()
    try:
        judge = judge_on(server)
        one_order = judge_on(server, name="hasty", debiasing="none")
        snapshot = snapshot_create(project=PairLabelFactory().item.project)
        with pytest.raises(ValidationError) as excinfo:
            training_job_check(method="reward", snapshot=snapshot, hyperparameters={}, win_rate_judge=judge)
        assert "measured for a policy" in excinfo.value.message_dict["win_rate_judge"][0]
        with pytest.raises(ValidationError) as excinfo:
            training_job_check(method="dpo", snapshot=snapshot, hyperparameters={}, win_rate_judge=one_order)
        assert "one order only" in excinfo.value.message_dict["win_rate_judge"][0]
        with pytest.raises(ValidationError) as excinfo:
            training_job_check(method="dpo", snapshot=snapshot, hyperparameters={}, win_rate_judge=judge,
                               win_rate_prompts=0)
        assert "from 1 to" in excinfo.value.message_dict["win_rate_prompts"][0]
        assert training_job_check(method="dpo", snapshot=snapshot, hyperparameters={}, win_rate_judge=judge) == {}
    finally:
        server.close()


def test_the_api_stores_the_judge_and_refuses_it_for_a_scorer(client, media, tiny_endpoint):
    from annotate.roles import researcher_grant
    from training.services import snapshot_create

    member = MembershipFactory(researcher=True)
    researcher_grant(user=member.user)
    client.force_login(member.user)
    project = member.project
    PairLabelFactory(item=PairItemFactory(project=project))
    snapshot = snapshot_create(project=project)
    server = Server()
    try:
        judge = judge_on(server)
        url = f"/api/projects/{project.pk}/training-jobs/"
        body = {"method": "dpo", "snapshot": snapshot.pk, "base_endpoint": tiny_endpoint.pk, "start": False,
                "win_rate_judge": judge.pk, "win_rate_prompts": 20}
        response = client.post(url, body, content_type="application/json")
        assert response.status_code == 201, response.content
        job = TrainingJob.objects.get(pk=response.json()["id"])
        assert (job.win_rate_judge, job.win_rate_prompts) == (judge, 20)
        response = client.post(url, {**body, "method": "reward"}, content_type="application/json")
        assert response.status_code == 400 and "win_rate_judge" in response.json()
        response = client.post(url, {**body, "win_rate_judge": 10**9}, content_type="application/json")
        assert response.status_code == 400 and "No judge" in str(response.json()["win_rate_judge"])
    finally:
        server.close()


def test_the_admin_refuses_a_win_rate_judge_for_a_reward_model(client, media, tiny_endpoint):
    from django.urls import reverse

    from training.services import snapshot_create

    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    snapshot = snapshot_create(project=PairLabelFactory().item.project)
    server = Server()
    try:
        judge = judge_on(server)
        form = {"method": "reward", "base_endpoint": tiny_endpoint.pk, "snapshot": snapshot.pk,
                "hyperparameters": "{}", "win_rate_judge": judge.pk}
        response = client.post(reverse("admin:training_trainingjob_add"), form)
        assert response.status_code == 200 and "measured for a policy" in response.content.decode()
        response = client.post(reverse("admin:training_trainingjob_add"), {**form, "method": "dpo"})
        assert response.status_code == 302, response.content.decode()[:2000]
    finally:
        server.close()
    job = TrainingJob.objects.get()
    assert (job.win_rate_judge, job.win_rate_prompts) == (judge, 50)
