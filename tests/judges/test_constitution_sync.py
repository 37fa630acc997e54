"""Constitutions live in synth; a judge notices when its constitution moved on and judges again."""

import pytest
from django.urls import reverse

from judges.models import AIJudgment, Judge, JudgeRun
from judges.services import judge_run_execute, judge_version_bump_if_changed, judge_version_sync
from synth.models import Constitution, ModelEndpoint, Principle
from synth.services import constitution_touch
from tests.factories import CompletionFactory, PairItemFactory, ProjectFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db


class AlwaysA:
    """Answers "[[A]]" and keeps every prompt it was sent."""

    def __init__(self):
        self.prompts = []

    def generate(self, conversations, sampling):
        self.prompts += [c[-1]["content"] for c in conversations]
        return [["[[A]]"] * sampling.n for _ in conversations]


def endpoint():
    return ModelEndpoint.objects.get_or_create(name="scripted", defaults={"path": "unused"})[0]


def constitution_with(*questions):
    constitution = Constitution.objects.create(name="HH")
    for i, question in enumerate(questions):
        Principle.objects.create(constitution=constitution, name=f"p{i}", critique_request="c", revision_request="r",
                                 comparison_question=question, order=i)
    return constitution


def change_form_data(client, url):
    """What a browser sends back from an admin change page: the main form and every inline as shown."""
    page = client.get(url).context
    data = {}
    for form in [page["adminform"].form] + [f for inline in page["inline_admin_formsets"] for f in inline.formset]:
        data.update({form.add_prefix(name): form[name].value() for name in form.fields
                     if form[name].value() is not None})
    for inline in page["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(name): management[name].value() for name in management.fields})
    return data


def test_editing_principles_in_the_synth_admin_makes_judges_judge_again(client, monkeypatch):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    project = ProjectFactory()
    for _ in range(3):
        prompt = PromptFactory(project=project)
        PairItemFactory(project=project, prompt=prompt, completion_a=CompletionFactory(prompt=prompt),
                        completion_b=CompletionFactory(prompt=prompt))
    constitution = constitution_with("Which response is less harmful?")
    judge = Judge.objects.create(name="cai", endpoint=endpoint(), verdict_method="generate", constitution=constitution)
    backend = AlwaysA()
    monkeypatch.setattr("judges.services.endpoint_backend", lambda endpoint: backend)
    assert judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk).status == "done"
    first = list(AIJudgment.objects.filter(judge=judge))
    assert len(first) == 3 and {(j.template_version, j.constitution_version) for j in first} == {(1, 1)}

    # The principle is edited in the synth admin: a new version of the constitution.
    url = reverse("admin:synth_constitution_change", args=[constitution.pk])
    data = change_form_data(client, url)
    assert data["principles-0-comparison_question"] == "Which response is less harmful?"
    data["principles-0-comparison_question"] = "Which response is more honest?"
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    constitution.refresh_from_db()
    assert constitution.version == 2
    # Saving without touching the principles keeps the version.
    assert client.post(url, change_form_data(client, url)).status_code == 302
    constitution.refresh_from_db()
    assert constitution.version == 2

    # The judge's next run judges every pair again under a new template version; the old judgments stay.
    backend.prompts.clear()
    assert judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk).status == "done"
    judge.refresh_from_db()
    assert (judge.template_version, judge.constitution_version) == (2, 2)
    assert all("Which response is more honest?" in p for p in backend.prompts) and len(backend.prompts) == 3 * 2
    assert set(AIJudgment.objects.filter(judge=judge).values_list("template_version", "constitution_version")) == {
        (1, 1), (2, 2)}
    assert AIJudgment.objects.filter(judge=judge).count() == 6 and all(
        AIJudgment.objects.filter(pk=j.pk).exists() for j in first)
    # Nothing moved since: the next run has nothing to judge.
    run = judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk)
    assert (run.status, run.total) == ("done", 0) and AIJudgment.objects.filter(judge=judge).count() == 6


def test_the_judge_admin_brings_the_version_up_to_date():
    constitution = constitution_with("Which response is less harmful?")
    judge = Judge(name="cai", endpoint=endpoint(), constitution=constitution)
    assert not judge_version_bump_if_changed(judge=judge)  # a new judge records its constitution's version
    judge.save()
    assert judge.constitution_version == 1
    constitution_touch(constitution=constitution)
    judge.name = "renamed"  # not versioned, but the constitution moved on
    assert judge_version_bump_if_changed(judge=judge)
    assert (judge.template_version, judge.constitution_version) == (2, 2)
    judge.save()
    assert not judge_version_sync(judge=judge)  # already up to date


def test_sync_without_a_recorded_version_asks_the_judgments():
    constitution = constitution_with("q?")
    judge = Judge.objects.create(name="cai", endpoint=endpoint(), constitution=constitution)  # not recorded
    # No judgments yet: it adopts the current version without a new template version.
    assert not judge_version_sync(judge=judge)
    assert (judge.template_version, judge.constitution_version) == (1, 1)
    Judge.objects.filter(pk=judge.pk).update(constitution_version=None)
    judge.refresh_from_db()
    AIJudgment.objects.create(judge=judge, item=PairItemFactory(), template_version=1, constitution_version=1,
                              verdict="A", probability=0.9)
    constitution_touch(constitution=constitution)
    assert judge_version_sync(judge=judge) and (judge.template_version, judge.constitution_version) == (2, 2)
    # Once, even when a second copy of the judge (another run) syncs too.
    stale = Judge.objects.get(pk=judge.pk)
    stale.template_version, stale.constitution_version = 1, 1
    assert not judge_version_sync(judge=stale) and (stale.template_version, stale.constitution_version) == (2, 2)
    assert Judge.objects.get(pk=judge.pk).template_version == 2
