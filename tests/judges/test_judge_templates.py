"""A template per mode: the admin's defaults fit the mode, a template that does not fit is refused,
and only the template the mode uses counts for the judge's version."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotate.models import Project, StepLabel
from annotate.services import step_item_create
from judges.models import DEFAULT_PAIRWISE_TEMPLATE, DEFAULT_STEP_TEMPLATE, Judge, JudgeRun
from judges.services import judge_prompt, judge_run_execute, judge_version_bump_if_changed
from synth.models import ModelEndpoint
from tests.factories import ProjectFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db


class RecordingStepChecker:
    """Says "Yes" unless the last shown step contains "wrong", and keeps every prompt it was sent."""

    def __init__(self):
        self.prompts = []

    def score(self, conversations, candidates):
        out = []
        for conversation, cands in zip(conversations, candidates, strict=True):
            assert cands == ["Yes", "No"]
            text = conversation[-1]["content"]
            self.prompts.append(text)
            last = re.findall(r"^Step \d+: .*$", text, re.MULTILINE)[-1]
            out.append([-2.0, -0.1] if "wrong" in last else [-0.1, -2.0])
        return out


def endpoint():
    return ModelEndpoint.objects.get_or_create(name="scripted", defaults={"path": "unused"})[0]


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def add_form_data(client, **values):
    """What a browser sends from the admin's add page: every field as the page fills it in, then ``values``."""
    form = client.get(reverse("admin:judges_judge_add")).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update(values)
    return data


def test_a_steps_judge_added_in_the_admin_judges_a_steps_project(admin_client, monkeypatch):
    response = admin_client.post(reverse("admin:judges_judge_add"),
                                 add_form_data(admin_client, name="steps judge", endpoint=endpoint().pk, mode="steps"))
    assert response.status_code == 302, response.content.decode()[:3000]
    judge = Judge.objects.get(name="steps judge")
    assert judge.active_template == judge.step_template == DEFAULT_STEP_TEMPLATE
    assert admin_client.get(reverse("admin:judges_judge_change", args=[judge.pk])).status_code == 200
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    items = [step_item_create(prompt=PromptFactory(project=project), steps=["fine", "wrong here", "fine again"])
             for _ in range(3)]
    backend = RecordingStepChecker()
    monkeypatch.setattr("judges.services.endpoint_backend", lambda endpoint: backend)
    run = judge_run_execute(run_id=JudgeRun.objects.create(judge=judge, project=project).pk)
    assert run.status == "done"
    labels = {label.item_id: label for label in StepLabel.objects.filter(source="ai", source_name="steps judge v1")}
    assert set(labels) == {item.pk for item in items}  # every solution has its AI step label
    assert all(label.ratings == [1, -1, 1] for label in labels.values())
    assert len(backend.prompts) == 3 * 3  # one per step
    for prompt in backend.prompts:
        assert "Check a solution to the problem below one step at a time." in prompt
        assert re.search(r"Is step [123] correct", prompt)
        assert "{response_a}" not in prompt and "[Response A]" not in prompt and "{" not in prompt


def test_the_admin_refuses_a_pairwise_template_without_response_b(admin_client):
    template = DEFAULT_PAIRWISE_TEMPLATE.replace("{response_b}", "")
    response = admin_client.post(reverse("admin:judges_judge_add"), add_form_data(
        admin_client, name="broken", endpoint=endpoint().pk, mode="pairwise", pairwise_template=template))
    assert response.status_code == 200 and not Judge.objects.exists()
    errors = response.context["adminform"].form.errors
    assert errors["pairwise_template"] == ["Missing placeholder {response_b}."]


@pytest.mark.parametrize("mode, field, template, message", [
    ("steps", "step_template", DEFAULT_PAIRWISE_TEMPLATE, "Unknown placeholder {question}, {response_a}, {response_b}"),
    ("steps", "step_template", "Is step {number} correct?", "Missing placeholder {steps} or {step}."),
    ("pointwise", "pointwise_template", "{conversation} {response_a}", "Unknown placeholder {response_a}"),
    ("pointwise", "pointwise_template", "{conversation}", "Missing placeholder {response}."),
    ("pairwise", "pairwise_template", "{response_a} {response_b} {number}", "Unknown placeholder {number}"),
])
def test_clean_refuses_a_template_that_does_not_fit_the_mode(mode, field, template, message):
    judge = Judge(name="j", endpoint=endpoint(), mode=mode, **{field: template})
    with pytest.raises(ValidationError) as raised:
        judge.full_clean()
    assert list(raised.value.message_dict) == [field]
    assert raised.value.message_dict[field][0].startswith(message)


def test_only_the_template_of_the_mode_is_checked_and_counted():
    judge = Judge.objects.create(name="v", endpoint=endpoint(), mode="steps", pairwise_template="unused: {step}")
    judge.full_clean()  # the pairwise template is not the steps judge's business
    judge.pairwise_template = "still unused"
    judge.pointwise_template = "unused too"
    assert not judge_version_bump_if_changed(judge=judge) and judge.template_version == 1
    judge.step_template = DEFAULT_STEP_TEMPLATE.replace("Answer Yes or No.", "Say Yes or No.")
    assert judge_version_bump_if_changed(judge=judge) and judge.template_version == 2
    judge.save()
    judge.mode = "pointwise"  # another mode: another template, another version
    assert judge_version_bump_if_changed(judge=judge) and judge.template_version == 3
    assert judge.active_template == "unused too"


def test_a_pointwise_judge_sends_its_own_template():
    judge = Judge(name="p", endpoint=endpoint(), mode="pointwise")
    prompt = judge_prompt(template=judge.active_template, conversation=[{"role": "user", "content": "q"}],
                          first="an answer")[0]["content"]
    assert "[Response]\nan answer" in prompt and "{" not in prompt
