"""The job lifecycle in one process: claims and leases, a second delivery, a dead worker's job, the
import committed with its DONE, cancel and retry from the pages and the API."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.imports import import_job_run
from annotate.job_lifecycle import job_cancel, job_retry, jobs_reap
from annotate.models import ImportJob, PairItem, Prompt
from synth.models import ModelEndpoint, SynthesisJob
from synth.services import synthesis_job_run
from tests.factories import MembershipFactory, ProjectFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db


def import_job(project, tmp_path, settings, rows=3, name="pairs.jsonl"):
    settings.MEDIA_ROOT = tmp_path
    path = tmp_path / name
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "response_a": "a", "response_b": "b"}) + "\n"
                            for i in range(rows)))
    return ImportJob.objects.create(project=project, file_name=name, path=name, total=path.stat().st_size)


def test_an_import_runs_once_and_tags_its_rows(tmp_path, settings):
    project = ProjectFactory()
    job = import_job(project, tmp_path, settings)
    job = import_job_run(job_id=job.pk)
    assert (job.status, job.items, job.progress, job.attempt, job.lease_until) == ("done", 3, 3, 1, None)
    assert job.started_at and job.finished_at and job.worker
    assert Prompt.objects.filter(import_job=job).count() == 3
    # The same message delivered again: the job is finished, nothing is imported twice.
    assert import_job_run(job_id=job.pk).status == "done"
    assert Prompt.objects.filter(import_job=job).count() == PairItem.objects.filter(project=project).count() == 3


def test_a_second_delivery_while_the_lease_lives_does_nothing(tmp_path, settings):
    job = import_job(ProjectFactory(), tmp_path, settings)
    until = timezone.now() + timedelta(seconds=60)
    ImportJob.objects.filter(pk=job.pk).update(status="running", lease_token="other-worker", lease_until=until,
                                               attempt=1, worker="elsewhere:1")
    job = import_job_run(job_id=job.pk)
    assert (job.status, job.lease_token, job.attempt, job.worker) == ("running", "other-worker", 1, "elsewhere:1")
    assert not Prompt.objects.exists()


def test_a_redelivered_message_resumes_a_job_whose_lease_passed(tmp_path, settings):
    job = import_job(ProjectFactory(), tmp_path, settings)
    ImportJob.objects.filter(pk=job.pk).update(status="running", lease_token="dead-worker", attempt=1,
                                               lease_until=timezone.now() - timedelta(seconds=1))
    job = import_job_run(job_id=job.pk)
    assert (job.status, job.attempt, job.items) == ("done", 2, 3)
    assert Prompt.objects.filter(import_job=job).count() == 3


def test_an_import_commits_only_with_its_lease(tmp_path, settings, monkeypatch):
    """DONE is written in the import's transaction, only while the lease is this worker's: a worker that
    lost its job (another took it over) rolls its whole import back."""
    job = import_job(ProjectFactory(), tmp_path, settings, rows=5)
    from annotate import imports

    real = imports.project_import

    def taken_over(**kwargs):
        progress = kwargs["progress"]

        def steal(rows):
            ImportJob.objects.filter(pk=job.pk).update(lease_token="thief")
            progress(rows)

        return real(**{**kwargs, "progress": steal})

    monkeypatch.setattr(imports, "project_import", taken_over)
    job = import_job_run(job_id=job.pk)
    assert job.status == "running"  # left to the worker that holds it now
    assert not Prompt.objects.exists() and not PairItem.objects.exists()


def test_a_bad_file_fails_with_its_line_and_a_retry_imports_the_fixed_file(tmp_path, settings):
    job = import_job(ProjectFactory(), tmp_path, settings)
    (tmp_path / job.path).write_text('{"prompt": "q", "response_a": "a"}\n')
    job = import_job_run(job_id=job.pk)
    assert job.status == "failed" and job.error.startswith("pairs.jsonl, line 1, field 'response_b'")
    (tmp_path / job.path).write_text('{"prompt": "q", "response_a": "a", "response_b": "b"}\n')
    job = job_retry(job=job)
    assert (job.status, job.error, job.attempt) == ("queued", "", 0)
    job = import_job_run(job_id=job.pk)
    assert (job.status, job.items) == ("done", 1)


def test_the_reaper_resumes_or_fails_jobs_whose_worker_stopped(tmp_path, settings, django_capture_on_commit_callbacks):
    project = ProjectFactory()
    past, future = timezone.now() - timedelta(seconds=5), timezone.now() + timedelta(seconds=60)
    dead = import_job(project, tmp_path, settings, name="dead.jsonl")
    alive = import_job(project, tmp_path, settings, name="alive.jsonl")
    worn_out = import_job(project, tmp_path, settings, name="worn.jsonl")
    legacy = import_job(project, tmp_path, settings, name="legacy.jsonl")
    ImportJob.objects.filter(pk=dead.pk).update(status="running", lease_until=past, lease_token="x", attempt=1)
    ImportJob.objects.filter(pk=alive.pk).update(status="running", lease_until=future, lease_token="y", attempt=1)
    ImportJob.objects.filter(pk=worn_out.pk).update(status="running", lease_until=past, lease_token="z",
                                                    attempt=ImportJob.max_attempts, worker="host:42")
    ImportJob.objects.filter(pk=legacy.pk).update(status="running")  # from before leases: no lease at all
    with django_capture_on_commit_callbacks(execute=False) as queued:
        reaped = jobs_reap()
    assert {(r.job, r.action) for r in reaped} == {
        (f"ImportJob {dead.pk}", "resumed"), (f"ImportJob {worn_out.pk}", "failed"),
        (f"ImportJob {legacy.pk}", "resumed")}
    assert len(queued) == 2  # the two resumed jobs go back to the queue
    for job in (dead, alive, worn_out, legacy):
        job.refresh_from_db()
    assert (dead.status, dead.attempt, dead.lease_token) == ("queued", 2, "")
    assert (alive.status, alive.lease_token) == ("running", "y")
    assert worn_out.status == "failed" and "host:42" in worn_out.error and "3 time(s)" in worn_out.error
    # The resumed job then runs (from the start: an import that did not finish stored nothing).
    assert import_job_run(job_id=dead.pk).status == "done"
    assert Prompt.objects.filter(import_job=dead).count() == 3


class Generator:
    """Two replies per prompt; cancels the job after ``cancel_after`` calls."""

    name = "gen"

    def __init__(self, job_id=None, cancel_after=None):
        self.calls, self.job_id, self.cancel_after = 0, job_id, cancel_after

    def generate(self, conversations, sampling):
        self.calls += 1
        if self.calls == self.cancel_after:
            job_cancel(job=SynthesisJob.objects.get(pk=self.job_id))
        return [[f"reply {i} {j}" for j in range(sampling.n)] for i in range(len(conversations))]


def test_a_cancelled_synthesis_job_stops_at_its_next_batch_and_a_retry_finishes_it(monkeypatch):
    project = ProjectFactory()
    for _ in range(6):
        PromptFactory(project=project)
    endpoint = ModelEndpoint.objects.create(name="gen", path="unused")
    job = SynthesisJob.objects.create(project=project, endpoint=endpoint, params={"batch_size": 2}, total=6)
    backend = Generator(job_id=job.pk, cancel_after=1)
    monkeypatch.setattr("synth.services.endpoint_backend", lambda endpoint: backend)
    monkeypatch.setattr("annotate.job_lifecycle.CHECK_INTERVAL", 0.0)  # see the cancellation at once
    job = synthesis_job_run(job_id=job.pk)
    assert job.status == "cancelled" and backend.calls == 1
    assert PairItem.objects.filter(project=project).count() == 2  # the batch it finished is kept
    job = job_retry(job=job)
    job = synthesis_job_run(job_id=job.pk)
    assert (job.status, job.progress, job.total) == ("done", 6, 6)
    assert PairItem.objects.filter(project=project).count() == 6  # the first two prompts were not redone


# -- cancel and retry from the pages and the API ------------------------------------------------------------


@pytest.fixture
def researcher(client):
    from annotate.roles import researcher_grant

    member = MembershipFactory(researcher=True)
    researcher_grant(user=member.user)  # retrying a job that spends needs the researcher's permission
    client.force_login(member.user)
    return member


def jobs_of_every_kind(project, tmp_path, settings):
    from judges.models import Judge, JudgeRun
    from training.models import DatasetSnapshot, TrainingJob

    endpoint = ModelEndpoint.objects.create(name="m", path="unused")
    snapshot = DatasetSnapshot.objects.create(project=project, name="s", file="x.jsonl", sha256="0" * 64, rows=1)
    return [import_job(project, tmp_path, settings),
            SynthesisJob.objects.create(project=project, endpoint=endpoint),
            JudgeRun.objects.create(judge=Judge.objects.create(name="j", endpoint=endpoint), project=project),
            TrainingJob.objects.create(base_endpoint=endpoint, snapshot=snapshot)]


def test_every_kind_of_job_is_cancelled_and_retried_through_the_api(client, researcher, tmp_path, settings,
                                                                    django_capture_on_commit_callbacks):
    project = researcher.project
    jobs = jobs_of_every_kind(project, tmp_path, settings)
    listed = client.get(reverse("api_jobs", args=[project.pk])).json()
    assert {(row["kind"], row["id"]) for row in listed} == {(job.slug, job.pk) for job in jobs}
    for job in jobs:
        args = [project.pk, job.slug, job.pk]
        assert client.post(reverse("api_job_retry", args=args)).status_code == 409  # queued: nothing to retry
        response = client.post(reverse("api_job_cancel", args=args))
        assert response.status_code == 200 and response.json()["status"] == "cancelled", job
        assert client.post(reverse("api_job_cancel", args=args)).status_code == 409
        with django_capture_on_commit_callbacks(execute=False) as queued:
            response = client.post(reverse("api_job_retry", args=args))
        assert response.status_code == 200 and response.json()["status"] == "queued"
        assert len(queued) == 1  # its task is sent again
        assert client.get(reverse("api_job_detail", args=args)).json()["can_cancel"] is True


def test_every_kind_of_job_is_cancelled_and_retried_from_its_page(client, researcher, tmp_path, settings):
    project = researcher.project
    for job in jobs_of_every_kind(project, tmp_path, settings):
        page = client.get(reverse(job.page_url_name, args=[project.pk])).content.decode()
        cancel = reverse("annotate:job_cancel", args=[project.pk, job.slug, job.pk])
        assert cancel in page, job.page_url_name
        response = client.post(cancel)
        assert response.status_code == 302 and response["Location"] == reverse(job.page_url_name, args=[project.pk])
        job.refresh_from_db()
        assert job.status == "cancelled"
        page = client.get(reverse(job.page_url_name, args=[project.pk])).content.decode()
        retry = reverse("annotate:job_retry", args=[project.pk, job.slug, job.pk])
        assert retry in page and cancel not in page
        client.post(retry)
        job.refresh_from_db()
        assert job.status == "queued"


def test_jobs_of_other_projects_and_annotators_are_refused(client, tmp_path, settings):
    job = import_job(ProjectFactory(), tmp_path, settings)
    annotator = MembershipFactory(project=job.project)
    stranger = UserFactory()
    for user, refused in ((annotator.user, 403), (stranger, 404)):  # a member lacks the role; a stranger is not told
        client.force_login(user)
        args = [job.project.pk, "imports", job.pk]
        assert client.post(reverse("api_job_cancel", args=args)).status_code == refused
        assert client.post(reverse("annotate:job_cancel", args=args)).status_code == refused
        assert client.get(reverse("api_jobs", args=[job.project.pk])).status_code == refused
    other = MembershipFactory(researcher=True)
    client.force_login(other.user)
    # A researcher of another project cannot reach the job through their own project either.
    assert client.post(reverse("api_job_cancel", args=[other.project.pk, "imports", job.pk])).status_code == 404
    assert client.get(reverse("api_job_detail", args=[other.project.pk, "nonsense", job.pk])).status_code == 404
    job.refresh_from_db()
    assert job.status == "queued"


def test_a_running_job_whose_worker_went_silent_says_so(client, researcher, tmp_path, settings):
    job = import_job(researcher.project, tmp_path, settings)
    now = timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(status="running", lease_token="x", heartbeat_at=now - timedelta(
        minutes=3), lease_until=now - timedelta(minutes=2))
    page = client.get(reverse("annotate:import", args=[researcher.project.pk])).content.decode()
    assert "worker silent for 3" in page
    detail = client.get(reverse("api_job_detail", args=[researcher.project.pk, "imports", job.pk])).json()
    assert detail["stale"] is True and detail["status"] == "running"
    ImportJob.objects.filter(pk=job.pk).update(lease_until=now + timedelta(seconds=30))
    assert client.get(reverse("api_job_detail", args=[researcher.project.pk, "imports", job.pk])).json()[
        "stale"] is False
