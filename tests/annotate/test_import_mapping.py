"""Imports with a column mapping, checked at upload: the page's preview and mapping, the API's preview and
mapping, the command's --map, the queue position of a waiting job, and what becomes of previewed files."""

import csv
import io
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from annotate.imports import import_files_cleanup, import_preview_store
from annotate.job_lifecycle import job_queue_position
from annotate.models import ImportJob, ItemSlot, PairItem, Project, Prompt, StepItem
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db

LLMBAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "external" / "llmbar" / "LLMBar_Natural.jsonl"
ROWS = [{"input": f"Instruction {i}", "output_1": f"first {i}", "output_2": f"second {i}", "label": 1 + i % 2}
        for i in range(5)]
MAP = {"map_prompt": "input", "map_response_a": "output_1", "map_response_b": "output_2", "map_gold": "label",
       "gold_for": "label"}  # the column the value map was shown for
API_MAP = {"columns": {"prompt": "input", "response_a": "output_1", "response_b": "output_2", "gold": "label"},
           "gold_values": {"1": "A", "2": "B"}}


def jsonl(name, rows):
    return SimpleUploadedFile(name, "".join(json.dumps(r) + "\n" for r in rows).encode())


@pytest.fixture
def researcher(client):
    member = MembershipFactory(researcher=True, project__overlap=2)
    client.force_login(member.user)
    return member


def preview_token(response) -> str:
    assert response.status_code == 302, response.content[:500]
    return response["Location"].split("preview=")[1].split("&")[0]


def test_page_upload_preview_map_and_import_an_llmbar_shaped_file(client, researcher, media,
                                                                  django_capture_on_commit_callbacks):
    url = reverse("annotate:import", args=[researcher.project.pk])
    page = client.get(url).content.decode()
    assert "Import pairs" in page and "hh-rlhf" in page and "math-shepherd" not in page
    token = preview_token(client.post(url, {"file": jsonl("llmbar.jsonl", ROWS), "format": "auto",
                                            "action": "preview"}))
    page = client.get(f"{url}?preview={token}").content.decode()
    # No known format: the mapping is suggested from the names, with the gold values 1 -> A and 2 -> B.
    assert "no format of pairs recognises it" in page and "Instruction 0" in page
    assert '<option value="output_2" selected>' in page and '<option value="A" selected>' in page
    assert not ImportJob.objects.exists()
    # A column that is not there: refused at once (htmx check), nothing queued.
    check = client.post(url, {"action": "check", "token": token, "mode": "mapping", **MAP,
                              "map_response_b": "output_9"}, HTTP_HX_REQUEST="true")
    assert "output_9" in check.content.decode() and "not in the file" in check.content.decode()
    refused = client.post(url, {"action": "import", "token": token, "mode": "mapping", **MAP,
                                "map_response_b": "output_9"})
    assert refused.status_code == 422 and not ImportJob.objects.exists()
    # A gold value with no verdict: refused with the file, line and field.
    refused = client.post(url, {"action": "import", "token": token, "mode": "mapping", **MAP,
                                "gold_value_0": "1", "gold_verdict_0": "A", "gold_value_1": "2", "gold_verdict_1": ""})
    body = refused.content.decode()
    assert refused.status_code == 422 and "llmbar.jsonl, line 2, field &#x27;label&#x27;" in body
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"action": "import", "token": token, "mode": "mapping", **MAP,
                                     "gold_value_0": "1", "gold_verdict_0": "A", "gold_value_1": "2",
                                     "gold_verdict_1": "B"})
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert (job.status, job.format, job.items) == ("done", "mapped", 5), job.error
    assert job.mapping == API_MAP
    prompts = Prompt.objects.filter(project=researcher.project).order_by("id")
    assert [p.metadata["source_preference"] for p in prompts] == ["A", "B", "A", "B", "A"]
    assert ItemSlot.objects.filter(project=researcher.project).count() == 10
    # The preview's file became the job's: no preview is left behind.
    assert not list((Path(media) / "media" / "imports").glob("*/preview-*"))
    assert "input" in client.get(url).content.decode()  # the mapping is shown with the job


def test_a_known_format_is_previewed_and_imported_as_detected(client, researcher, media,
                                                             django_capture_on_commit_callbacks):
    url = reverse("annotate:import", args=[researcher.project.pk])
    rows = [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"} for i in range(3)]
    token = preview_token(client.post(url, {"file": jsonl("ours.jsonl", rows), "format": "auto",
                                            "action": "preview"}))
    assert "detected format: <strong>pairs</strong>" in client.get(f"{url}?preview={token}").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"action": "import", "token": token, "mode": "format", "format": "auto"})
    assert ImportJob.objects.get().items == 3


def test_the_upload_forms_choices_carry_over_to_the_preview(client, researcher, media):
    url = reverse("annotate:import", args=[researcher.project.pk])
    response = client.post(url, {"file": jsonl("llmbar.jsonl", ROWS), "format": "auto", "action": "preview",
                                 "context_differs": "keep", "identical": "skip"})
    page = client.get(response["Location"]).content.decode()
    assert '<option value="keep" selected>' in page and '<option value="skip" selected>' in page


def test_discarded_and_old_previews_are_removed(client, researcher, media, settings):
    url = reverse("annotate:import", args=[researcher.project.pk])
    token = preview_token(client.post(url, {"file": jsonl("x.jsonl", ROWS), "action": "preview"}))
    folder = Path(settings.MEDIA_ROOT) / "imports" / f"project-{researcher.project.pk}"
    assert len(list(folder.glob("preview-*"))) == 1
    client.post(url, {"action": "discard", "token": token})
    assert not list(folder.glob("preview-*"))
    import_preview_store(project=researcher.project, upload=jsonl("old.jsonl", ROWS))
    [old] = folder.glob("preview-*")
    assert import_files_cleanup() == 0
    os.utime(old, (time.time() - 25 * 3600, time.time() - 25 * 3600))
    assert import_files_cleanup() == 1 and not old.exists()
    # A token is only ever a token of this project's previews.
    assert client.get(f"{url}?preview=../../etc").status_code == 302


def test_api_preview_returns_the_first_rows_without_queueing(client, researcher, media):
    url = reverse("api_imports", args=[researcher.project.pk])
    response = client.post(url, {"file": jsonl("llmbar.jsonl", ROWS), "preview": "true"})
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["container"] == "jsonl" and data["detected_format"] is None
    assert data["columns"] == ["input", "output_1", "output_2", "label"] and len(data["rows"]) == 5
    assert data["suggested"]["gold"] == "label" and data["values"]["label"] == ["1", "2"]
    response = client.post(url, {"file": jsonl("llmbar.jsonl", ROWS), "preview": "true",
                                 "mapping": json.dumps({**API_MAP, "gold_values": {"1": "A"}})})
    assert [(e["line"], e["field"]) for e in response.json()["errors"]] == [(2, "label")]
    assert not ImportJob.objects.exists() and not list(Path(media).rglob("preview-*"))


def test_api_mapping_refused_before_queueing_then_imported(client, researcher, media,
                                                          django_capture_on_commit_callbacks):
    url = reverse("api_imports", args=[researcher.project.pk])
    bad = {**API_MAP, "columns": {**API_MAP["columns"], "response_b": "output_3"}}
    response = client.post(url, {"file": jsonl("llmbar.jsonl", ROWS), "mapping": json.dumps(bad)})
    assert response.status_code == 400 and "output_3" in response.json()["detail"]
    response = client.post(url, {"file": jsonl("llmbar.jsonl", ROWS),
                                 "mapping": json.dumps({"columns": {"prompt": "input"}})})
    assert response.status_code == 400 and "response_a: not mapped" in response.json()["mapping"][0]
    assert not ImportJob.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"file": jsonl("llmbar.jsonl", ROWS), "mapping": json.dumps(API_MAP)})
    assert response.status_code == 202 and response.json()["mapping"] == API_MAP
    job = client.get(reverse("api_import_detail", args=[researcher.project.pk, response.json()["id"]])).json()
    assert (job["status"], job["items"], job["queue"]) == ("done", 5, None)


def test_api_csv_mapping(client, researcher, media, django_capture_on_commit_callbacks):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["question", "left", "right", "pref"])
    for i in range(4):
        writer.writerow([f"q{i}", f"l{i}", f"r{i}", ["A", "B", "tie", "A"][i]])
    mapping = {"columns": {"prompt": "question", "response_a": "left", "response_b": "right", "gold": "pref"}}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("api_imports", args=[researcher.project.pk]), {
            "file": SimpleUploadedFile("p.csv", out.getvalue().encode()), "mapping": json.dumps(mapping)})
    assert response.status_code == 202
    job = ImportJob.objects.get()
    assert (job.status, job.items) == ("done", 4), job.error
    assert sorted(Prompt.objects.values_list("metadata__source_preference", flat=True)) == ["A", "A", "B", "tie"]


def test_parquet_steps_through_the_page(client, media, django_capture_on_commit_callbacks):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    member = MembershipFactory(researcher=True, project__task_kind=Project.TaskKind.STEPS)
    client.force_login(member.user)
    url = reverse("annotate:import", args=[member.project.pk])
    assert "Import solutions" in client.get(url).content.decode()
    buffer = io.BytesIO()
    pq.write_table(pa.table({"problem": ["1+1?", "2+2?"], "solution": ["One.\nPlus one.", "Four."],
                             "ratings": [[1, -1], [1]]}), buffer)
    token = preview_token(client.post(url, {"file": SimpleUploadedFile("s.parquet", buffer.getvalue()),
                                            "action": "preview"}))
    assert "PARQUET" in client.get(f"{url}?preview={token}").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"action": "import", "token": token, "mode": "mapping", "map_prompt": "problem",
                          "map_steps": "solution", "map_ratings": "ratings", "split": "lines"})
    job = ImportJob.objects.get()
    assert (job.status, job.items) == ("done", 2), job.error
    assert sorted(len(s) for s in StepItem.objects.values_list("steps", flat=True)) == [1, 2]


def test_import_items_command_with_a_mapping(tmp_path):
    path = tmp_path / "llmbar.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = io.StringIO()
    call_command("import_items", str(path), "--project", "llmbar", "--create",
                 "--map", "prompt=input,response_a=output_1,response_b=output_2,gold=label",
                 "--gold-values", "1=A,2=B", stdout=out)
    assert "imported 5 pairs from 5 records (mapped)" in out.getvalue()
    project = Project.objects.get(name="llmbar")
    assert [p.metadata["source_preference"] for p in Prompt.objects.filter(project=project).order_by("id")] == [
        "A", "B", "A", "B", "A"]
    with pytest.raises(CommandError, match="line 2, field 'label'"):
        call_command("import_items", str(path), "--project", "llmbar", "--map",
                     "prompt=input,response_a=output_1,response_b=output_2,gold=label", "--gold-values", "1=A")
    with pytest.raises(CommandError, match="response_b: not mapped"):
        call_command("import_items", str(path), "--project", "llmbar", "--map", "prompt=input,response_a=output_1")
    assert PairItem.objects.filter(project=project).count() == 5  # the refused imports stored nothing


@pytest.mark.skipif(not LLMBAR.exists(), reason="the LLMBar sample is not in ../shared")
def test_import_items_the_real_llmbar_sample():
    call_command("import_items", str(LLMBAR), "--project", "llmbar-natural", "--create", "--map",
                 "prompt=input,response_a=output_1,response_b=output_2,gold=label", "--gold-values", "1=A,2=B",
                 stdout=io.StringIO())
    project = Project.objects.get(name="llmbar-natural")
    verdicts = list(Prompt.objects.filter(project=project).order_by("id").values_list(
        "metadata__source_preference", flat=True))
    labels = [json.loads(line)["label"] for line in LLMBAR.read_text().splitlines()]
    assert verdicts == ["A" if v == 1 else "B" for v in labels]


def test_a_second_queued_import_says_where_it_stands(client, researcher, media):
    project = researcher.project  # rows made here, never queued: no worker takes them
    running = ImportJob.objects.create(project=project, file_name="big.jsonl", path="x", status="running",
                                       progress=1200, total=10_000, lease_until=timezone.now() + timedelta(minutes=1))
    first = ImportJob.objects.create(project=project, file_name="a.jsonl", path="x")
    second = ImportJob.objects.create(project=project, file_name="b.jsonl", path="x")
    other = ImportJob.objects.create(project=ProjectFactory(), file_name="secret.jsonl", path="x")
    position = job_queue_position(second, project_id=project.pk)
    assert (position.position, position.ahead_count) == (3, 2)
    assert position.text == (f"waiting: 3rd in the default queue, behind import #{running.pk} (running, 1,200 done), "
                             f"import #{first.pk} (queued)")
    assert job_queue_position(first, project_id=project.pk).position == 2
    assert job_queue_position(running) is None
    mine = job_queue_position(other, project_id=other.project_id)
    assert mine.position == 4 and "of another project" in mine.text and "big.jsonl" not in mine.text
    page = client.get(reverse("annotate:import", args=[project.pk])).content.decode()
    assert f"waiting: 3rd in the default queue, behind import #{running.pk}" in page
    data = client.get(reverse("api_import_detail", args=[project.pk, second.pk])).json()
    assert data["queue"]["position"] == 3 and data["queue"]["ahead"][0]["id"] == running.pk


def test_annotators_and_strangers_cannot_preview(client, media):
    member = MembershipFactory()
    client.force_login(member.user)
    url = reverse("annotate:import", args=[member.project.pk])
    assert client.post(url, {"file": jsonl("x.jsonl", ROWS), "action": "preview"}).status_code == 403
    assert client.post(reverse("api_imports", args=[member.project.pk]),
                       {"file": jsonl("x.jsonl", ROWS), "preview": "true"}).status_code == 403
    stranger = ProjectFactory()
    assert client.get(reverse("annotate:import", args=[stranger.pk])).status_code == 404
    assert not list(Path(media).rglob("preview-*"))
