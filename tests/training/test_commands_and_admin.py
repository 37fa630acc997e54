import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotate.models import PairItem, Project
from annotate.services import item_lease_next
from tests.factories import PairLabelFactory, ProjectFactory, UserFactory
from training.demo import DEMO_PROMPTS, demo_loop, demo_setup
from training.ml.common import config_parse
from training.ml.dpo import DPOScriptConfig
from training.models import DatasetSnapshot, TrainingJob

pytestmark = pytest.mark.django_db


def test_admin_add_queues_the_training_job(client, media, tiny_endpoint, django_capture_on_commit_callbacks):
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    label = PairLabelFactory(verdict="A")
    from training.services import snapshot_create

    snapshot = snapshot_create(project=label.item.project, source="human")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("admin:training_trainingjob_add"), {
            "method": "dpo", "base_endpoint": tiny_endpoint.pk, "snapshot": snapshot.pk,
            "hyperparameters": json.dumps({"max_steps": 2})})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = TrainingJob.objects.get()
    assert (job.status, job.hyperparameters) == (TrainingJob.Status.QUEUED, {"max_steps": 2})
    assert len(callbacks) == 1  # the training task is queued once the row is committed


def test_import_and_export_commands(tmp_path, media, capsys):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "q", "response_a": "a", "response_b": "b"}) + "\n")
    with pytest.raises(CommandError, match="No project"):
        call_command("import_items", str(path), "--project", "Nope")
    call_command("import_items", str(path), "--project", "Cmd", "--create")
    project = Project.objects.get(name="Cmd")
    assert PairItem.objects.filter(project=project).count() == 1
    # Imported items are ready to be served: they have their k slots.
    assert item_lease_next(project=project, user=UserFactory()) == PairItem.objects.get(project=project)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "response_a": "a"}\n')
    with pytest.raises(CommandError, match="bad.jsonl, line 1, field 'response_b'"):
        call_command("import_items", str(bad), "--project", "Cmd")
    PairLabelFactory(item=PairItem.objects.get(project=project), verdict="B")
    call_command("export_snapshot", "--project", "Cmd", "--source", "human")
    snapshot = DatasetSnapshot.objects.get(project=project)
    assert snapshot.rows == 1 and snapshot.sha256 in capsys.readouterr().out


def test_training_script_config_from_file_and_flags(tmp_path):
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"dataset": "d.jsonl", "model": "m", "output_dir": "o", "beta": 0.3}))
    cfg = config_parse(DPOScriptConfig, ["--config", str(cfg_file), "--max_steps", "7", "--use_cpu", "false"])
    assert (cfg.beta, cfg.max_steps, cfg.use_cpu, cfg.dataset) == (0.3, 7, False, "d.jsonl")
    cfg_file.write_text(json.dumps({"dataset": "d", "model": "m", "output_dir": "o", "betta": 1}))
    with pytest.raises(SystemExit):
        config_parse(DPOScriptConfig, ["--config", str(cfg_file)])


@pytest.mark.slow
def test_headless_demo_loop_on_the_tiny_model(media, tiny_endpoint):
    setup = demo_setup(endpoint=tiny_endpoint)
    again = demo_setup(endpoint=tiny_endpoint)
    assert again.project == setup.project and setup.project.prompts.count() == len(DEMO_PROMPTS) == 20
    lines = []
    report = demo_loop(setup=setup, say=lines.append, max_new_tokens=4, train_steps=2)
    assert [line.split(" ", 1)[0] for line in lines] == [f"{i}/6" for i in range(1, 7)]
    assert report["pairs"] == 20 and report["judgments"] == 20
    assert report["snapshot_rows"] > 0 and report["endpoint"].startswith("tiny-dpo-job")


@pytest.mark.slow
def test_run_judge_and_train_commands(media, tiny_endpoint, capsys):
    from judges.models import AIJudgment, Judge
    from tests.factories import PairItemFactory

    project = ProjectFactory(name="Commands")
    for _ in range(4):
        PairItemFactory(project=project)
    Judge.objects.create(name="j", endpoint=tiny_endpoint)
    call_command("run_judge", "--project", "Commands", "--judge", "j")
    assert AIJudgment.objects.filter(item__project=project).count() == 4
    assert "4 items judged" in capsys.readouterr().out
    call_command("export_snapshot", "--project", "Commands", "--source", "ai")
    snapshot = DatasetSnapshot.objects.get(project=project)
    call_command("train", "--snapshot", str(snapshot.pk), "--endpoint", "tiny", "--set", "max_steps=1",
                 "--set", "max_length=64")
    job = TrainingJob.objects.get()
    assert job.status == TrainingJob.Status.DONE and job.result_endpoint is not None
    assert f"training job #{job.pk}" in capsys.readouterr().out
    with pytest.raises(CommandError, match="KEY=JSON"):
        call_command("train", "--snapshot", str(snapshot.pk), "--endpoint", "tiny", "--set", "max_steps")


@pytest.mark.slow
def test_a_failed_training_command_says_why_in_one_line(media, capsys):
    from synth.models import ModelEndpoint
    from training.services import snapshot_create

    label = PairLabelFactory(verdict="A")
    snapshot = snapshot_create(project=label.item.project, source="human")
    ModelEndpoint.objects.create(name="nowhere", path="/no/such/model")
    with pytest.raises(CommandError) as excinfo:
        call_command("train", "--snapshot", str(snapshot.pk), "--endpoint", "nowhere", "--set", "max_steps=1")
    message = str(excinfo.value)
    assert "ended failed" in message and "exited with status" in message and "\n" not in message
    assert TrainingJob.objects.get().status == "failed"
