"""The training method registry: a job is checked against its method before it is queued."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from synth.models import ModelEndpoint
from tests.factories import ProjectFactory, UserFactory
from training.jobs import training_job_create
from training.ml.dpo import DPOScriptConfig
from training.ml.registry import METHODS, PATH_FIELDS, method_get
from training.models import DatasetSnapshot, TrainingJob

pytestmark = pytest.mark.django_db


def snapshot(fmt):
    return DatasetSnapshot.objects.create(project=ProjectFactory(), name=f"s-{fmt}", format=fmt, file="x.jsonl",
                                          sha256="0" * 64, rows=1)


@pytest.fixture
def endpoint():
    return ModelEndpoint.objects.create(name="base", path="unused")


def test_every_method_names_a_script_a_record_kind_and_its_config():
    from prefdata.records import RECORD_KINDS

    for method in METHODS.values():
        assert method.consumes in RECORD_KINDS
        assert __import__(method.script, fromlist=["main"]).main
        assert set(PATH_FIELDS) <= {f for f in method.config.__dataclass_fields__}
    dpo = method_get("dpo")
    assert dpo.config is DPOScriptConfig and dpo.defaults()["beta"] == DPOScriptConfig.__dataclass_fields__[
        "beta"].default
    assert "dataset" not in dpo.defaults()
    with pytest.raises(ValueError, match="unknown training method 'ppo'"):
        method_get("ppo")


def test_a_job_stores_only_its_own_hyperparameters(endpoint):
    job = training_job_create(base_endpoint=endpoint, snapshot=snapshot("preference"),
                              hyperparameters={"max_steps": 3, "beta": 0.2}, start=False)
    assert job.hyperparameters == {"max_steps": 3, "beta": 0.2}
    effective = method_get("dpo").effective(job.hyperparameters)
    assert effective["max_steps"] == 3 and effective["learning_rate"] == DPOScriptConfig.__dataclass_fields__[
        "learning_rate"].default


@pytest.mark.parametrize("fmt", ["stepwise", "prm800k", "outcome"])
def test_dpo_refuses_a_snapshot_of_another_kind(endpoint, fmt):
    with pytest.raises(ValidationError) as excinfo:
        training_job_create(base_endpoint=endpoint, snapshot=snapshot(fmt), start=False)
    assert "DPO trains on preference rows" in excinfo.value.message_dict["snapshot"][0]
    assert not TrainingJob.objects.exists()


@pytest.mark.parametrize("hyper, message", [
    ({"betta": 0.1}, "betta: not a DPO hyper-parameter"),
    ({"max_steps": "ten"}, "max_steps: expected int, got 'ten'"),
    ({"max_steps": 2.5}, "max_steps: expected int"),
    ({"use_cpu": 1}, "use_cpu: expected bool"),
    ({"dataset": "elsewhere.jsonl"}, "dataset: not a DPO hyper-parameter"),
])
def test_unknown_or_mistyped_hyperparameters_are_refused(endpoint, hyper, message):
    with pytest.raises(ValidationError) as excinfo:
        training_job_create(base_endpoint=endpoint, snapshot=snapshot("preference"), hyperparameters=hyper,
                            start=False)
    assert message in excinfo.value.message_dict["hyperparameters"][0]


def test_the_admin_refuses_a_snapshot_of_the_wrong_kind(client, endpoint):
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    stepwise = snapshot("stepwise")
    response = client.post(reverse("admin:training_trainingjob_add"), {
        "method": "dpo", "base_endpoint": endpoint.pk, "snapshot": stepwise.pk, "hyperparameters": "{}"})
    assert response.status_code == 200
    assert "DPO trains on preference rows" in response.content.decode()
    response = client.post(reverse("admin:training_trainingjob_add"), {
        "method": "dpo", "base_endpoint": endpoint.pk, "snapshot": snapshot("preference").pk,
        "hyperparameters": json.dumps({"bta": 1})})
    assert response.status_code == 200 and "bta: not a DPO hyper-parameter" in response.content.decode()
    assert not TrainingJob.objects.exists()
    page = client.get(reverse("admin:training_trainingjob_add")).content.decode()
    assert "beta (0.1)" in page  # the defaults are shown where the hyper-parameters are typed


@pytest.mark.parametrize("method, fmt", [("sft", "sft"), ("reward", "preference"), ("prm", "stepwise"),
                                         ("kto", "unpaired"), ("kto", "outcome"), ("orpo", "preference"),
                                         ("simpo", "preference")])
def test_each_method_takes_a_snapshot_of_its_record_kind_and_refuses_others(endpoint, method, fmt):
    job = training_job_create(base_endpoint=endpoint, snapshot=snapshot(fmt), method=method,
                              hyperparameters={"max_steps": 2, "lora_r": 8}, start=False)
    assert (job.method, job.hyperparameters) == (method, {"max_steps": 2, "lora_r": 8})
    other = "sft" if fmt != "sft" else "preference"
    with pytest.raises(ValidationError) as excinfo:
        training_job_create(base_endpoint=endpoint, snapshot=snapshot(other), method=method, start=False)
    assert f"{method_get(method).label} trains on {method_get(method).consumes} rows" in (
        excinfo.value.message_dict["snapshot"][0])


@pytest.mark.parametrize("method, hyper, message", [
    ("dpo", {"loss_type": "dpo"}, "loss_type: expected one of sigmoid, ipo, hinge, robust"),
    ("kto", {"loss_type": "sigmoid"}, "loss_type: expected one of kto, apo_zero_unpaired"),
    ("prm", {"label_mode": "fuzzy"}, "label_mode: expected one of hard, soft"),
    ("sft", {"bf16": "yes"}, "bf16: expected one of auto, true, false"),
])
def test_a_value_outside_a_fields_choices_is_refused_before_the_job_is_queued(endpoint, method, hyper, message):
    fmt = {"dpo": "preference", "kto": "unpaired", "prm": "stepwise", "sft": "sft"}[method]
    with pytest.raises(ValidationError) as excinfo:
        training_job_create(base_endpoint=endpoint, snapshot=snapshot(fmt), method=method, hyperparameters=hyper,
                            start=False)
    assert message in excinfo.value.message_dict["hyperparameters"][0]
    assert not TrainingJob.objects.exists()
