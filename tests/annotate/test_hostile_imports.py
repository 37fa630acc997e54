"""Hostile import files end to end (SQLite's bulk inserts and PostgreSQL's COPY alike): refused with file,
line and field and nothing stored, or kept as the import's options say and told in its summary; nothing
left behind by a failed import (a project made for it, its uploaded file once its keeping time is over)."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from annotate.importers import items_import
from annotate.imports import import_files_cleanup, import_job_create, project_import
from annotate.job_lifecycle import job_cancel, job_retry
from annotate.models import Completion, ImportJob, PairItem, Project, Prompt
from prefdata.readers import ReadError, ReadOptions
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db

GOOD = {"prompt": "q", "response_a": "a", "response_b": "b"}
HH_DIFFERS = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye\n\nAssistant: Bye!",
              "rejected": "\n\nHuman: Hi\n\nAssistant: Hey\n\nHuman: Bye\n\nAssistant: Go."}
HH_SAME = {"chosen": "\n\nHuman: Hi\n\nAssistant: Same", "rejected": "\n\nHuman: Hi\n\nAssistant: Same"}
HH_GOOD = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away"}


def body(*rows: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def write(path: Path, *rows: object) -> Path:
    path.write_text(body(*rows))
    return path


def upload(name: str, *rows: object) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, body(*rows).encode(), content_type="application/jsonl")


def nothing_stored(project: Project) -> bool:
    return not Prompt.objects.filter(project=project).exists() and not PairItem.objects.filter(project=project).exists()


@pytest.mark.parametrize(("line", "field"), [
    ({"prompt": "q", "response_a": "same", "response_b": "same"}, "response_b"),
    ('{"prompt": "q", "response_a": "a", "response_b": "b", "response_b": "c"}', "response_b"),
    ('{"prompt": "q", "response_a": "a", "response_b": "b", "metadata": {"score": NaN}}', "(json)"),
    ({"prompt": "q", "response_a": "a\u0000", "response_b": "b"}, "response_a"),
    ('{"prompt": "q", "response_a": "a", "response_b": "b", "metadata": ' + "[" * 5000 + "]" * 5000 + "}", "(json)"),
])
def test_a_hostile_line_after_stored_chunks_stores_nothing(tmp_path, line, field):
    project = ProjectFactory()
    rows = [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"} for i in range(25)]
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=write(tmp_path / "hostile.jsonl", *rows, line), chunk_size=10)
    assert (excinfo.value.path, excinfo.value.line, excinfo.value.field) == ("hostile.jsonl", 26, field)
    assert nothing_stored(project)
    assert not Completion.objects.filter(prompt__project=project).exists()


def test_the_field_limit_is_a_setting(tmp_path, settings):
    project = ProjectFactory()
    path = write(tmp_path / "long.jsonl", GOOD, {"prompt": "q", "response_a": "x" * 2000, "response_b": "b"})
    settings.IMPORT_MAX_FIELD_BYTES = 1000
    with pytest.raises(ReadError) as excinfo:
        project_import(project=project, path=path)
    assert (excinfo.value.line, excinfo.value.field) == (2, "response_a")
    assert "longer than 1,000 bytes (the limit of a field)" in str(excinfo.value)
    assert nothing_stored(project)
    settings.IMPORT_MAX_FIELD_BYTES = 2000
    assert project_import(project=project, path=path).items == 2


def test_a_trl_margin_is_stored_beside_the_source_preference_and_unread_fields_are_counted(tmp_path):
    project = ProjectFactory()
    path = write(tmp_path / "trl.jsonl", {"prompt": "q1", "chosen": "good", "rejected": "bad", "margin": 1.5, "id": 7},
                 {"prompt": "q2", "chosen": "good", "rejected": "bad", "id": 8, "label": True})
    result = items_import(project=project, path=path)
    assert result.ignored_fields == {"id": 2, "label": 1}
    assert result.summary() == {"format": "trl-preference", "records": 2, "items": 2,
                                "ignored_fields": {"id": 2, "label": 1}, "context_differs_kept": 0,
                                "identical_skipped": 0}
    first, second = Prompt.objects.filter(project=project).order_by("id")
    assert first.metadata["source_margin"] == 1.5 and first.metadata["source_preference"] in ("A", "B")
    assert "source_margin" not in second.metadata
    # In the database as JSON (PostgreSQL: written by COPY): a key lookup finds it.
    assert Prompt.objects.filter(project=project, metadata__source_margin=1.5).count() == 1


def test_kept_and_skipped_pairs_are_counted(tmp_path):
    project = ProjectFactory()
    path = write(tmp_path / "hh.jsonl", HH_GOOD, HH_DIFFERS, HH_SAME)
    result = items_import(project=project, path=path, options=ReadOptions(context_differs="keep", identical="skip"))
    assert (result.rows, result.items, result.context_differs, result.identical_skipped) == (3, 2, 1, 1)
    assert Prompt.objects.filter(project=project, metadata__context_differs=True).count() == 1
    assert result.summary_lines() == [
        "1 pair(s) kept with context_differs: their conversations differ before the replies (the first one's is "
        "stored)", "1 pair(s) left out: their two replies were the same text"]


# -- the command ----------------------------------------------------------------------------------------------


def test_command_refuses_by_default_and_keeps_when_asked_printing_the_summary(tmp_path, capsys):
    project = ProjectFactory()
    path = write(tmp_path / "hh.jsonl", HH_GOOD, {**HH_DIFFERS, "id": 3})
    with pytest.raises(CommandError, match="hh.jsonl, line 2, field 'rejected'"):
        call_command("import_items", str(path), project=project.name)
    assert nothing_stored(project)
    call_command("import_items", str(path), "--context-differs", "keep", project=project.name)
    out = capsys.readouterr().out
    assert "imported 2 pairs from 2 records (hh-rlhf)" in out
    assert "ignored fields (not read by the format, not stored): id (1 record)" in out
    assert "1 pair(s) kept with context_differs" in out


def test_command_create_leaves_no_project_when_the_import_fails(tmp_path):
    deep = write(tmp_path / "deep.jsonl", GOOD, '{"prompt": "q", "response_a": "a", "response_b": "b", "metadata": '
                 + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CommandError, match=r"deep.jsonl, line 2, field '\(json\)': nested more than 100 levels"):
        call_command("import_items", str(deep), project="made for nothing", create=True)
    assert not Project.objects.filter(name="made for nothing").exists()
    call_command("import_items", str(write(tmp_path / "ok.jsonl", GOOD)), project="made for something", create=True)
    assert PairItem.objects.filter(project__name="made for something").count() == 1


# -- jobs: options, summary, page and API --------------------------------------------------------------------


@pytest.fixture
def researcher(client):
    member = MembershipFactory(researcher=True)
    client.force_login(member.user)
    return member


def test_api_options_are_stored_on_the_job_and_the_summary_is_shown(client, researcher, media,
                                                                  django_capture_on_commit_callbacks):
    url = reverse("api_imports", args=[researcher.project.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"file": upload("hh.jsonl", HH_GOOD, HH_DIFFERS, HH_SAME, {**HH_GOOD, "id": 1}),
                                     "context_differs": "keep", "identical": "skip"})
    assert response.status_code == 202, response.content
    job = client.get(reverse("api_import_detail", args=[researcher.project.pk, response.json()["id"]])).json()
    assert job["status"] == "done" and job["options"] == {"context_differs": "keep", "identical": "skip"}
    assert job["summary"] == {"format": "hh-rlhf", "records": 4, "items": 3, "ignored_fields": {"id": 1},
                              "context_differs_kept": 1, "identical_skipped": 1}
    page = client.get(reverse("annotate:import", args=[researcher.project.pk])).content.decode()
    assert "Ignored fields (not stored): id (1)" in page and "1 kept flagged" in page and "1 left out" in page
    response = client.post(url, {"file": upload("x.jsonl", GOOD), "context_differs": "maybe"})
    assert response.status_code == 400 and "context_differs" in response.json()


def test_the_page_form_passes_the_options_and_refuses_by_default(client, researcher, media,
                                                                django_capture_on_commit_callbacks):
    url = reverse("annotate:import", args=[researcher.project.pk])
    assert 'name="context_differs"' in client.get(url).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"file": upload("refused.jsonl", HH_GOOD, HH_DIFFERS), "format": "auto"})
        client.post(url, {"file": upload("kept.jsonl", HH_GOOD, HH_DIFFERS), "format": "auto",
                          "context_differs": "keep"})
    refused_job, kept = ImportJob.objects.order_by("id")
    assert refused_job.status == "failed" and "refused.jsonl, line 2, field 'rejected'" in refused_job.error
    assert refused_job.options == {"context_differs": "reject", "identical": "reject"}
    assert (kept.status, kept.items, kept.summary["context_differs_kept"]) == ("done", 2, 1)


# -- the files of failed imports ----------------------------------------------------------------------------------


def _job(project, name, *rows, capture):
    with capture(execute=True):
        job = import_job_create(project=project, upload=upload(name, *rows))
    job.refresh_from_db()
    return job


def test_a_failed_imports_file_is_kept_while_it_can_be_retried_then_removed(media, settings,
                                                                            django_capture_on_commit_callbacks):
    settings.IMPORT_KEEP_FAILED_DAYS = 7
    project = ProjectFactory()
    failed = _job(project, "bad.jsonl", GOOD, {"prompt": "q"}, capture=django_capture_on_commit_callbacks)
    done = _job(project, "good.jsonl", GOOD, capture=django_capture_on_commit_callbacks)
    assert (failed.status, done.status) == ("failed", "done")
    failed_file, done_file = settings.MEDIA_ROOT / failed.path, settings.MEDIA_ROOT / done.path
    assert failed_file.exists() and done_file.exists()
    assert import_files_cleanup() == 0 and failed_file.exists()  # within its days: a retry reads it again
    with django_capture_on_commit_callbacks(execute=True):
        job_retry(job=failed)
    failed.refresh_from_db()
    assert failed.status == "failed" and failed.attempt == 1 and failed_file.exists()
    assert import_files_cleanup(now=timezone.now() + timedelta(days=8)) == 1
    failed.refresh_from_db()
    assert failed.path == "" and not failed_file.exists()
    assert done_file.exists(), "a successful import keeps its file (lineage)"
    with django_capture_on_commit_callbacks(execute=True):
        job_retry(job=failed)
    failed.refresh_from_db()
    assert failed.status == "failed" and "is no longer kept" in failed.error and "upload it again" in failed.error


def test_with_zero_days_a_refused_file_is_removed_at_once_and_cancelled_ones_at_the_next_check(
        media, settings, django_capture_on_commit_callbacks):
    settings.IMPORT_KEEP_FAILED_DAYS = 0
    project = ProjectFactory()
    failed = _job(project, "bad.jsonl", GOOD, {"prompt": "q"}, capture=django_capture_on_commit_callbacks)
    assert failed.status == "failed" and failed.path == ""
    assert not any((settings.MEDIA_ROOT / "imports").rglob("*bad.jsonl"))
    queued = import_job_create(project=project, upload=upload("later.jsonl", GOOD))  # not run: no commit
    job_cancel(job=queued)
    assert import_files_cleanup() == 1
    assert not any((settings.MEDIA_ROOT / "imports").rglob("*later.jsonl"))


def test_a_new_import_job_removes_the_files_past_their_time(media, settings, django_capture_on_commit_callbacks):
    settings.IMPORT_KEEP_FAILED_DAYS = 7
    project = ProjectFactory()
    failed = _job(project, "bad.jsonl", GOOD, {"prompt": "q"}, capture=django_capture_on_commit_callbacks)
    ImportJob.objects.filter(pk=failed.pk).update(finished_at=timezone.now() - timedelta(days=8))
    _job(project, "next.jsonl", GOOD, capture=django_capture_on_commit_callbacks)
    failed.refresh_from_db()
    assert failed.path == "" and not any((settings.MEDIA_ROOT / "imports").rglob("*bad.jsonl"))
