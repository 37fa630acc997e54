"""The API of training jobs: list, create (checked, with errors named by field), one job with its metrics,
evaluation, log tail and endpoint, cancel and retry; scoped to the projects the user is a researcher of."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate.roles import researcher_grant
from synth.models import ModelEndpoint
from tests.factories import MembershipFactory, UserFactory
from tests.training.test_job_page import metrics_of, training_job
from training.models import DatasetSnapshot, TrainingJob

pytestmark = pytest.mark.django_db
JSON = "application/json"


@pytest.fixture
def queued(monkeypatch):
    jobs = []
    monkeypatch.setattr("training.jobs.job_queue", jobs.append)
    monkeypatch.setattr("annotate.job_lifecycle.job_queue", jobs.append)
    return jobs


@pytest.fixture
def researcher(client):
    member = MembershipFactory(researcher=True)
    researcher_grant(user=member.user)
    client.force_login(member.user)
    return member


def list_url(project_id: int) -> str:
    return reverse("training:api_training_jobs", args=[project_id])


def snapshot(project, fmt="preference", name="") -> DatasetSnapshot:
    name = name or f"prefs-{DatasetSnapshot.objects.count()}"
    return DatasetSnapshot.objects.create(project=project, name=name, format=fmt, file="x.jsonl", sha256="0" * 64,
                                          rows=10)


def body(project, **fields) -> dict:
    endpoint = ModelEndpoint.objects.get_or_create(name="base", defaults={"path": "base-dir"})[0]
    return {"method": "dpo", "snapshot": snapshot(project).pk, "base_endpoint": endpoint.pk,
            "hyperparameters": {"max_steps": 20, "beta": 0.05}, **fields}


def error_of(response, status: int, field: str) -> str:
    assert response.status_code == status, response.content[:800]
    data = response.json()
    assert data["detail"] and field in data, data
    return " ".join(data[field]) if isinstance(data[field], list) else str(data[field])


def test_create_queues_a_checked_job_and_answers_it(client, researcher, queued):
    response = client.post(list_url(researcher.project_id), body(researcher.project), content_type=JSON)
    assert response.status_code == 201, response.content
    data = response.json()
    job = TrainingJob.objects.get(pk=data["id"])
    assert [j.pk for j in queued] == [job.pk] and job.status == "queued"
    assert job.hyperparameters == {"max_steps": 20, "beta": 0.05}
    assert (data["method"], data["status"], data["snapshot"]["id"]) == ("dpo", "queued", job.snapshot_id)
    assert data["effective_hyperparameters"]["beta"] == 0.05
    assert data["effective_hyperparameters"]["loss_type"] == "sigmoid"  # the method's default
    assert (data["accelerate_config"], data["num_processes"]) == ("", 1)


def test_create_with_accelerate_and_without_starting(client, researcher, queued):
    response = client.post(list_url(researcher.project_id), body(
        researcher.project, accelerate_config="/etc/training/zero3.yaml", num_processes=8, start=False),
        content_type=JSON)
    assert response.status_code == 201, response.content
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert (job.accelerate_config, job.num_processes, queued) == ("/etc/training/zero3.yaml", 8, [])


@pytest.mark.parametrize("change, field, message", [
    ({"method": "ppo"}, "method", "unknown training method 'ppo'"),
    ({"hyperparameters": {"betta": 1}}, "hyperparameters", "betta: not a DPO hyper-parameter"),
    ({"hyperparameters": {"max_steps": "many"}}, "hyperparameters", "max_steps: expected int"),
    ({"hyperparameters": []}, "hyperparameters", ""),
    ({"snapshot": "1"}, "snapshot", ""),
    ({"snapshot": 10**9}, "snapshot", "No snapshot 1000000000 in this project"),
    ({"base_endpoint": 10**9}, "base_endpoint", "No endpoint 1000000000"),
    ({"num_processes": 0}, "num_processes", ""),
    ({"num_processes": 4}, "num_processes", "give the path of an accelerate config"),
    ({"accelerate_config": "zero3.txt"}, "accelerate_config", "accelerate config (.yaml)"),
])
def test_create_errors_name_the_field(client, researcher, queued, change, field, message):
    response = client.post(list_url(researcher.project_id), {**body(researcher.project), **change},
                           content_type=JSON)
    assert message in error_of(response, 400, field)
    assert not TrainingJob.objects.exists() and queued == []


def test_a_snapshot_of_the_wrong_kind_or_another_project_and_an_http_endpoint_are_refused(client, researcher,
                                                                                         queued):
    url = list_url(researcher.project_id)
    steps = snapshot(researcher.project, fmt="stepwise", name="steps")
    response = client.post(url, {**body(researcher.project), "snapshot": steps.pk}, content_type=JSON)
    assert "DPO trains on preference rows" in error_of(response, 400, "snapshot")
    elsewhere = snapshot(MembershipFactory(researcher=True).project, name="theirs")
    response = client.post(url, {**body(researcher.project), "snapshot": elsewhere.pk}, content_type=JSON)
    assert f"No snapshot {elsewhere.pk} in this project" in error_of(response, 400, "snapshot")
    server = ModelEndpoint.objects.create(name="api-model", kind=ModelEndpoint.Kind.OPENAI, path="gpt",
                                          base_url="http://127.0.0.1:9/v1")
    response = client.post(url, {**body(researcher.project), "base_endpoint": server.pk}, content_type=JSON)
    assert "no weights to train" in error_of(response, 400, "base_endpoint")
    kept = ModelEndpoint.objects.create(name="kept", path="x")
    kept.allowed_projects.add(elsewhere.project)
    response = client.post(url, {**body(researcher.project), "base_endpoint": kept.pk}, content_type=JSON)
    error_of(response, 400, "base_endpoint")
    assert not TrainingJob.objects.exists() and queued == []


def test_who_may_list_create_and_cancel(client, queued):
    annotator = MembershipFactory()
    job = training_job(annotator.project)
    client.force_login(UserFactory())  # a stranger to the project
    assert client.get(list_url(annotator.project_id)).status_code == 404
    assert client.get(reverse("training:api_training_job", args=[annotator.project_id, job.pk])).status_code == 404
    client.force_login(annotator.user)
    assert client.get(list_url(annotator.project_id)).status_code == 403
    response = client.post(list_url(annotator.project_id), body(annotator.project), content_type=JSON)
    assert response.status_code == 403
    cancel = reverse("training:api_training_job_cancel", args=[annotator.project_id, job.pk])
    assert client.post(cancel).status_code == 403
    # A researcher of the project without the researcher's permission may not start training.
    member = MembershipFactory(researcher=True, project=annotator.project)
    client.force_login(member.user)
    response = client.post(list_url(annotator.project_id), body(annotator.project), content_type=JSON)
    assert response.status_code == 403 and "Only researchers may start training jobs" in response.json()["detail"]
    job.refresh_from_db()
    assert job.status == "running" and TrainingJob.objects.count() == 1 and queued == []


def test_list_holds_the_projects_jobs_only_without_their_series(client, researcher):
    mine = [training_job(researcher.project), training_job(researcher.project, status="done")]
    training_job(MembershipFactory(researcher=True).project)
    data = client.get(list_url(researcher.project_id)).json()
    assert [row["id"] for row in data] == [mine[1].pk, mine[0].pk]
    assert "metrics" not in data[0] and "log_tail" not in data[0]
    assert data[1]["final_loss"] == pytest.approx(0.5) and data[1]["progress"] == 4


def test_detail_has_progress_metrics_evaluation_log_and_endpoint(client, researcher):
    endpoint = ModelEndpoint.objects.create(name="prm-job", kind=ModelEndpoint.Kind.STEP_SCORER, path="m")
    job = training_job(researcher.project, method="prm", status="done", progress=10, metrics=metrics_of(10),
                       evaluation={"step_accuracy": 0.8, "first_error_accuracy": 0.6}, result_endpoint=endpoint,
                       artifact_path="/models/job/model", finished_at=None)
    data = client.get(reverse("training:api_training_job", args=[researcher.project_id, job.pk])).json()
    assert [m["step"] for m in data["metrics"]][:10] == list(range(1, 11))
    assert data["evaluation"] == {"step_accuracy": 0.8, "first_error_accuracy": 0.6}
    assert data["result_endpoint"] == {"id": endpoint.pk, "name": "prm-job", "kind": "step_scorer",
                                       "path": "/models/job/model"}
    assert data["log_tail"].endswith("<script>alert(1)</script>") and "line 139" not in data["log_tail"]
    assert data["timing"]["elapsed_s"] >= 40 and data["timing"]["eta_s"] is None
    running = training_job(researcher.project)
    timing = client.get(reverse("training:api_training_job", args=[researcher.project_id, running.pk])).json()[
        "timing"]
    assert timing["steps_per_s"] == pytest.approx(0.1, rel=0.1) and timing["eta_s"] == pytest.approx(60, rel=0.1)


def test_cancel_then_retry_and_their_conflicts(client, researcher, queued):
    job = training_job(researcher.project)
    cancel = reverse("training:api_training_job_cancel", args=[researcher.project_id, job.pk])
    retry = reverse("training:api_training_job_retry", args=[researcher.project_id, job.pk])
    assert client.post(retry).status_code == 409
    response = client.post(cancel)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert len(response.json()["metrics"]) == 4  # what it logged is kept
    again = client.post(cancel)
    assert again.status_code == 409 and "nothing to cancel" in again.json()["detail"]
    response = client.post(retry)
    assert response.status_code == 200 and response.json()["status"] == "queued" and [j.pk for j in queued] == [
        job.pk]
