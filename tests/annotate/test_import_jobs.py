import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse

from annotate.imports import project_import
from annotate.models import ImportJob, ItemSlot, PairItem
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def upload(name, rows):
    body = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    return SimpleUploadedFile(name, body.encode(), content_type="application/jsonl")


@pytest.fixture
def researcher(client):
    member = MembershipFactory(researcher=True, project__overlap=2)
    client.force_login(member.user)
    return member


def test_page_upload_is_imported_by_the_worker_with_slots(client, researcher, media,
                                                         django_capture_on_commit_callbacks):
    url = reverse("annotate:import", args=[researcher.project.pk])
    rows = [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"} for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"file": upload("three.jsonl", rows), "format": "auto"})
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert (job.status, job.items, job.progress, job.format) == ("done", 3, 3, "pairs")
    assert PairItem.objects.filter(project=researcher.project).count() == 3
    assert ItemSlot.objects.filter(project=researcher.project).count() == 6  # k = 2
    assert "three.jsonl" in client.get(url).content.decode()


def test_api_upload_of_a_bad_file_fails_with_line_and_field(client, researcher, media,
                                                            django_capture_on_commit_callbacks):
    url = reverse("api_imports", args=[researcher.project.pk])
    rows = [{"prompt": "q", "response_a": "a", "response_b": "b"}, {"prompt": "q", "response_a": "a"}]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"file": upload("bad.jsonl", rows)})
    assert response.status_code == 202
    job = client.get(reverse("api_import_detail", args=[researcher.project.pk, response.json()["id"]])).json()
    assert job["status"] == "failed"
    assert "bad.jsonl, line 2" in job["error"] and "response_b" in job["error"]
    assert not PairItem.objects.exists()


def test_annotators_cannot_import(client):
    member = MembershipFactory()
    client.force_login(member.user)
    response = client.post(reverse("api_imports", args=[member.project.pk]), {"file": upload("x.jsonl", ["{}"])})
    assert response.status_code == 403  # a member without the role is told so; a stranger gets 404
    assert not ImportJob.objects.exists()


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="statistics refresh is PostgreSQL's ANALYZE")
def test_a_large_import_refreshes_the_planner_statistics(tmp_path, monkeypatch):
    def reltuples() -> float:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'annotate_pairitem'::regclass")
            return cursor.fetchone()[0]

    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "response_a": "a", "response_b": "b"}) + "\n"
                            for i in range(30)))
    monkeypatch.setattr("annotate.imports.ANALYZE_AFTER_ITEMS", 31)
    project_import(project=ProjectFactory(), path=path)
    before = reltuples()  # below the threshold: left to autovacuum
    monkeypatch.setattr("annotate.imports.ANALYZE_AFTER_ITEMS", 30)
    project_import(project=ProjectFactory(), path=path)
    assert reltuples() == 60 != before


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="statistics refresh is PostgreSQL's ANALYZE")
def test_a_failed_statistics_refresh_does_not_fail_the_import(tmp_path, monkeypatch, caplog):
    from django.db import DatabaseError

    def refuse(**kwargs):
        raise DatabaseError("must be owner of table annotate_prompt")

    monkeypatch.setattr("annotate.imports.ANALYZE_AFTER_ITEMS", 1)
    monkeypatch.setattr("annotate.imports._tables_analyze", refuse)
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "q", "response_a": "a", "response_b": "b"}) + "\n")
    project = ProjectFactory()
    assert project_import(project=project, path=path).items == 1
    assert ItemSlot.objects.filter(item__project=project).count() == project.overlap
    assert "statistics not refreshed" in caplog.text
