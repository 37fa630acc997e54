"""Steps end to end through the commands: import BIG-Bench Mistake, export a TRL stepwise snapshot."""

import json

import pytest
from django.core.management import CommandError, call_command

from annotate.models import ItemSlot, Project, StepItem
from tests.conftest import SHARED_DATA
from training.models import DatasetSnapshot
from training.services import snapshot_create, snapshot_path

pytestmark = pytest.mark.django_db
BBM = SHARED_DATA / "big-bench-mistake" / "word_sorting.jsonl"


@pytest.mark.skipif(not BBM.exists(), reason="shared BIG-Bench Mistake sample absent")
def test_import_and_stepwise_export_reproduce_the_mistakes(media, capsys):
    call_command("import_items", str(BBM), "--project", "bbm", "--create", "--kind", "steps")
    project = Project.objects.get(name="bbm")
    rows = [json.loads(line) for line in BBM.read_text().splitlines() if line.strip()]
    assert StepItem.objects.filter(project=project).count() == len(rows)
    assert ItemSlot.objects.filter(project=project, done=False).count() == len(rows) * project.overlap  # servable
    assert "step items" in capsys.readouterr().out
    call_command("export_snapshot", "--project", "bbm", "--source", "auto")
    snapshot = DatasetSnapshot.objects.get(project=project)
    assert snapshot.format == "stepwise" and snapshot.options == {"neutral": "positive"}
    from datasets import load_dataset

    exported = load_dataset("json", data_files=str(snapshot_path(snapshot=snapshot)), split="train")
    for row, item in zip(rows, StepItem.objects.filter(project=project).order_by("id"), strict=True):
        lineage = next(x for x in snapshot.manifest["lineage"] if x.get("item") == item.pk)
        labels = exported[snapshot.manifest["lineage"].index(lineage)]["labels"]
        first_false = labels.index(False) if False in labels else None
        assert first_false == row["mistake_index"]
    with pytest.raises(CommandError, match="does not apply"):
        call_command("export_snapshot", "--project", "bbm", "--format", "preference")


def test_steps_import_job_and_formats(media, client, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    from tests.factories import MembershipFactory

    member = MembershipFactory(researcher=True, project__task_kind=Project.TaskKind.STEPS, project__overlap=2)
    client.force_login(member.user)
    body = "".join(json.dumps({"prompt": f"Problem {i}", "steps": ["a", "b"], "ratings": [1, -1]}) + "\n"
                   for i in range(3))
    page = client.get(reverse("annotate:import", args=[member.project.pk])).content.decode()
    assert "math-shepherd" in page and "hh-rlhf" not in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("annotate:import", args=[member.project.pk]),
                    {"file": SimpleUploadedFile("s.jsonl", body.encode()), "format": "auto"})
    assert StepItem.objects.filter(project=member.project).count() == 3
    assert ItemSlot.objects.filter(project=member.project).count() == 6
    snapshot = snapshot_create(project=member.project, source="auto", fmt="outcome")
    assert snapshot.rows == 3
    assert json.loads(snapshot_path(snapshot=snapshot).read_text().splitlines()[0])["label"] is False
