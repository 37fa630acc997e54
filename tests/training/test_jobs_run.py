"""Running a training job with a stand-in trainer script (no torch): its metrics reach the job's row while it
runs, its evaluation on the snapshot's test split is stored, its model is registered as an endpoint of its
method's kind; and the command built for one process and for accelerate."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

import training.jobs
from synth.models import ModelEndpoint
from tests.factories import ProjectFactory
from training.jobs import WATCH_WORKER, training_command, training_job_check, training_job_run
from training.ml import registry
from training.models import DatasetSnapshot, TrainingJob

# A trainer as the platform sees one: it reads its config, logs each step to metrics.jsonl and as an
# {"event": "log"} line, waits at step 2 until the test lets it go (FAKE_RELEASE), evaluates on the
# config's eval_dataset and saves a "model".
FAKE_TRAINER = r'''
import json, os, sys, time
from pathlib import Path

cfg = json.loads(Path(sys.argv[sys.argv.index("--config") + 1]).read_text())
out = Path(cfg["output_dir"])
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.jsonl").unlink(missing_ok=True)
(out / "seen_config.json").write_text(json.dumps(cfg))
steps = cfg.get("max_steps", 3)
print(json.dumps({"event": "start", "method": "fake", "max_steps": steps}), flush=True)
release = os.environ.get("FAKE_RELEASE")
for step in range(1, steps + 1):
    entry = {"step": step, "loss": round(1.0 / step, 4), "learning_rate": 1e-5, "rewards/margins": 0.1 * step}
    with (out / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps(entry) + "\n")
    print(json.dumps({"event": "log", **entry}), flush=True)
    if release and step == 2:
        deadline = time.time() + 60
        while not Path(release).exists() and time.time() < deadline:
            time.sleep(0.05)
if cfg.get("eval_dataset"):
    rows = [line for line in Path(cfg["eval_dataset"]).read_text().splitlines() if line.strip()]
    (out / "evaluation.json").write_text(json.dumps({"accuracy": 0.75, "rows": len(rows)}))
(out / "config.json").write_text("{}")
print(json.dumps({"event": "saved", "output_dir": str(out)}), flush=True)
'''


@pytest.fixture
def fake_trainer(tmp_path, monkeypatch, media):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    monkeypatch.setattr(training.jobs, "training_command",
                        lambda *, job, config_path: [sys.executable, str(script), "--config", str(config_path)])
    return script


def write(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot_of(settings, *, splits: bool = False, name: str = "prefs", layout: dict | None = None
                ) -> DatasetSnapshot:
    media = Path(settings.MEDIA_ROOT)
    rows = [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"} for i in range(5)]
    sha = write(media / f"snapshots/{name}.jsonl", rows)
    manifest = {}
    if splits:
        manifest["splits"] = {
            "train": {"file": f"snapshots/{name}.train.jsonl", "rows": 3,
                      "sha256": write(media / f"snapshots/{name}.train.jsonl", rows[:3])},
            "test": {"file": f"snapshots/{name}.test.jsonl", "rows": 2,
                     "sha256": write(media / f"snapshots/{name}.test.jsonl", rows[3:])}}
        manifest["layout"] = layout or {"target": "trl", "file_format": "jsonl", "split": {"test": 0.4}}
    return DatasetSnapshot.objects.create(project=ProjectFactory(), name=name, file=f"snapshots/{name}.jsonl",
                                          sha256=sha, rows=5, manifest=manifest)


def job_of(snapshot: DatasetSnapshot, method: str = "dpo", **fields) -> TrainingJob:
    endpoint = ModelEndpoint.objects.get_or_create(name="base", defaults={"path": "base-dir"})[0]
    return TrainingJob.objects.create(base_endpoint=endpoint, snapshot=snapshot, method=method,
                                      hyperparameters={"max_steps": 3}, **fields)


@pytest.mark.django_db(transaction=True)
def test_metrics_reach_the_row_while_the_trainer_runs(fake_trainer, settings, tmp_path, monkeypatch, client):
    from annotate.roles import researcher_grant
    from tests.factories import MembershipFactory

    release = tmp_path / "release"
    monkeypatch.setenv("FAKE_RELEASE", str(release))
    job = job_of(snapshot_of(settings))
    member = MembershipFactory(researcher=True, project=job.snapshot.project)
    researcher_grant(user=member.user)
    client.force_login(member.user)

    def run() -> None:
        try:
            training_job_run(job_id=job.pk)
        finally:
            connection.close()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        live = TrainingJob.objects.get(pk=job.pk)
        while [m["step"] for m in live.metrics] != [1, 2] and time.monotonic() < deadline:
            time.sleep(0.1)
            live = TrainingJob.objects.get(pk=job.pk)
        # The trainer waits at step 2 (no release yet): what the row holds was written while it runs.
        assert not release.exists()
        assert live.status == "running" and [m["step"] for m in live.metrics] == [1, 2], live.log
        assert live.metrics[1] == {"step": 2, "loss": 0.5, "learning_rate": 1e-5, "rewards/margins": 0.2}
        assert live.progress == 2 and '"event": "log"' in live.log
        page = client.get(f"/projects/{job.snapshot.project_id}/training/{job.pk}/").content.decode()
        assert 'data-series="loss" data-points="2"' in page and 'hx-trigger="every 2s"' in page
    finally:
        release.touch()
        worker.join(60)
    job.refresh_from_db()
    assert job.status == "done", job.error
    assert [m["step"] for m in job.metrics] == [1, 2, 3] and job.progress == 3


@pytest.mark.django_db
@pytest.mark.parametrize("method, kind", [("dpo", "transformers"), ("sft", "transformers"),
                                          ("reward", "scorer"), ("prm", "step_scorer")])
def test_the_model_is_registered_as_an_endpoint_of_its_methods_kind(fake_trainer, settings, method, kind):
    job = training_job_run(job_id=job_of(snapshot_of(settings), method=method).pk)
    assert job.status == "done", job.error
    assert job.result_endpoint.kind == kind == ModelEndpoint.Kind(kind)
    assert job.result_endpoint.name == f"base-{method}-job{job.pk}"
    assert job.result_endpoint.path == job.artifact_path and (Path(job.artifact_path) / "config.json").is_file()
    assert job.result_endpoint.created_by_job_id == job.pk
    assert job.evaluation == {}  # no test split, no evaluation
    seen = json.loads((Path(job.artifact_path) / "seen_config.json").read_text())
    assert seen["eval_dataset"] == "" and seen["dataset"].endswith("snapshots/prefs.jsonl")


@pytest.mark.django_db
def test_a_split_snapshot_trains_on_its_train_split_and_stores_the_test_evaluation(fake_trainer, settings):
    job = training_job_run(job_id=job_of(snapshot_of(settings, splits=True), method="reward").pk)
    assert job.status == "done", job.error
    seen = json.loads((Path(job.artifact_path) / "seen_config.json").read_text())
    assert seen["dataset"] == str(Path(settings.MEDIA_ROOT) / "snapshots/prefs.train.jsonl")
    assert seen["eval_dataset"] == str(Path(settings.MEDIA_ROOT) / "snapshots/prefs.test.jsonl")
    assert job.evaluation == {"accuracy": 0.75, "rows": 2}
    assert TrainingJob.objects.get(pk=job.pk).evaluation == {"accuracy": 0.75, "rows": 2}


@pytest.mark.django_db
def test_a_split_for_another_trainer_is_not_what_the_scripts_read(fake_trainer, settings):
    layout = {"target": "verl", "file_format": "parquet", "split": {"test": 0.4}}
    job = training_job_run(job_id=job_of(snapshot_of(settings, splits=True, layout=layout)).pk)
    seen = json.loads((Path(job.artifact_path) / "seen_config.json").read_text())
    assert seen["dataset"].endswith("snapshots/prefs.jsonl") and seen["eval_dataset"] == ""
    assert job.status == "done" and job.evaluation == {}


@pytest.mark.django_db
def test_an_altered_split_fails_the_job_before_training(fake_trainer, settings):
    snapshot = snapshot_of(settings, splits=True)
    test_file = Path(settings.MEDIA_ROOT) / "snapshots/prefs.test.jsonl"
    test_file.write_text(test_file.read_text() + '{"prompt": "x", "chosen": "a", "rejected": "b"}\n')
    job = training_job_run(job_id=job_of(snapshot).pk)
    assert job.status == "failed" and "test split of snapshot 'prefs' was altered" in job.error
    assert job.result_endpoint is None


@pytest.mark.django_db
def test_a_failing_trainer_fails_the_job_with_its_last_lines(settings, media, monkeypatch):
    monkeypatch.setattr(training.jobs, "training_command", lambda *, job, config_path: [
        sys.executable, "-c", "import sys; print('loading'); print('CUDA out of memory', flush=True); sys.exit(3)"])
    job = training_job_run(job_id=job_of(snapshot_of(settings)).pk)
    assert job.status == "failed" and "exited with status 3" in job.error and "CUDA out of memory" in job.error
    assert "training.ml.dpo" in job.error


@pytest.mark.django_db
def test_a_missing_accelerate_config_fails_on_the_worker_with_its_path(settings, media):
    job = training_job_run(job_id=job_of(snapshot_of(settings), accelerate_config="/nowhere/zero3.yaml").pk)
    assert job.status == "failed" and "/nowhere/zero3.yaml is not a file on this worker" in job.error


# -- the command --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("builder", ["registry", "jobs"])
def test_the_command_of_one_process_and_of_accelerate(builder, monkeypatch, tmp_path):
    if builder == "jobs":  # a registry without launch_command: jobs.py builds the same command
        monkeypatch.delattr(registry, "launch_command", raising=False)
    config = tmp_path / "config.json"
    plain = TrainingJob(method="kto")
    assert training_command(job=plain, config_path=config) == [
        sys.executable, "-m", "training.ml.kto", "--config", str(config)]
    zero3 = TrainingJob(method="dpo", accelerate_config="/etc/training/zero3.yaml", num_processes=4)
    command = training_command(job=zero3, config_path=config)
    assert command[:4] == [sys.executable, "-c", WATCH_WORKER, str(os.getpid())]
    assert command[4:] == [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           "/etc/training/zero3.yaml", "--num_processes", "4", "-m", "training.ml.dpo",
                           "--config", str(config)]


def test_accelerate_reads_the_command_as_meant(tmp_path):
    """accelerate's own parser: the config file, 4 processes, the method's module and its arguments."""
    launch = pytest.importorskip("accelerate.commands.launch")
    zero3 = TrainingJob(method="dpo", accelerate_config="/etc/training/zero3.yaml", num_processes=4)
    command = training_command(job=zero3, config_path=tmp_path / "config.json")
    args = launch.launch_command_parser().parse_args(command[command.index("accelerate.commands.launch") + 1:])
    assert (args.config_file, args.num_processes, args.module) == ("/etc/training/zero3.yaml", 4, True)
    assert (args.training_script, args.training_script_args) == (
        "training.ml.dpo", ["--config", str(tmp_path / "config.json")])


def test_the_watcher_runs_the_launcher_and_answers_its_exit_status():
    result = subprocess.run([sys.executable, "-c", WATCH_WORKER, str(os.getpid()), sys.executable, "-c",
                             "import sys; print('launched'); sys.exit(3)"], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout) == (3, "launched\n"), result.stderr


def test_the_watcher_kills_the_launcher_and_its_trainers_when_the_worker_dies():
    """A stand-in worker starts the watcher (in a process group of its own, as the real one does) over a
    launcher that starts a trainer, then dies: the whole group is gone within seconds."""
    trainer = "import time; time.sleep(120)"
    launcher = f"import subprocess, sys; subprocess.call([sys.executable, '-c', {trainer!r}])"
    worker = f"""
import os, subprocess, sys, time
command = [sys.executable, "-c", {WATCH_WORKER!r}, str(os.getpid()), sys.executable, "-c", {launcher!r}]
watcher = subprocess.Popen(command, start_new_session=True)
print(watcher.pid, flush=True)
time.sleep(2)
os._exit(0)
"""
    result = subprocess.run([sys.executable, "-c", worker], capture_output=True, text=True, timeout=60)
    group = int(result.stdout.split()[0])

    def alive() -> bool:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 15
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive():
        os.killpg(group, signal.SIGKILL)
        pytest.fail("the launcher's process group outlived the worker")


@pytest.mark.django_db
@pytest.mark.parametrize("launch, field, message", [
    ({"num_processes": 0}, "num_processes", "from 1 to 64"),
    ({"num_processes": 2}, "num_processes", "give the path of an accelerate config"),
    ({"num_processes": True}, "num_processes", "whole number"),
    ({"accelerate_config": "zero3.txt"}, "accelerate_config", "accelerate config (.yaml)"),
    ({"accelerate_config": "a\nb.yaml"}, "accelerate_config", "accelerate config (.yaml)"),
])
def test_a_launch_a_worker_cannot_run_is_refused_before_it_is_queued(settings, media, launch, field, message):
    with pytest.raises(ValidationError) as excinfo:
        training_job_check(method="dpo", snapshot=snapshot_of(settings), hyperparameters={}, **launch)
    assert message in excinfo.value.message_dict[field][0]


@pytest.mark.django_db
def test_eval_dataset_is_the_platforms_to_set(settings, media):
    with pytest.raises(ValidationError) as excinfo:
        training_job_check(method="dpo", snapshot=snapshot_of(settings), hyperparameters={"eval_dataset": "/x"})
    assert "set by the platform" in excinfo.value.message_dict["hyperparameters"][0]
    assert training_job_check(method="dpo", snapshot=snapshot_of(settings, name="b"), hyperparameters={},
                              accelerate_config="/etc/zero3.yaml", num_processes=8) == {}


ACCELERATE_CPU = """\
compute_environment: LOCAL_MACHINE
distributed_type: 'NO'
num_processes: 1
num_machines: 1
machine_rank: 0
mixed_precision: 'no'
use_cpu: true
"""


@pytest.mark.django_db
def test_a_job_launched_through_accelerate_trains_the_tiny_model(media, tiny_endpoint, tmp_path):
    """The real path: the watcher, ``accelerate launch`` and the DPO script, which must not take the
    launcher for a dead worker; two steps logged, the model registered."""
    from tests.factories import PairItemFactory, PairLabelFactory
    from training.services import snapshot_create

    project = ProjectFactory()
    for i in range(4):
        PairLabelFactory(item=PairItemFactory(project=project), verdict="A" if i % 2 else "B")
    config = tmp_path / "cpu.yaml"
    config.write_text(ACCELERATE_CPU)
    job = TrainingJob.objects.create(base_endpoint=tiny_endpoint, snapshot=snapshot_create(project=project),
                                     hyperparameters={"max_steps": 2, "max_length": 64, "use_cpu": True},
                                     accelerate_config=str(config))
    job = training_job_run(job_id=job.pk)
    assert job.status == "done", f"{job.error}\n{job.log[-3000:]}"
    assert "`accelerate launch`" in job.log  # its notice of the defaults it used
    assert [m["step"] for m in job.metrics if "loss" in m] == [1, 2]
    assert job.result_endpoint.kind == "transformers" and (Path(job.artifact_path) / "config.json").is_file()


@pytest.mark.django_db
def test_a_snapshot_exported_with_a_test_split_is_evaluated_on_it(fake_trainer, settings):
    """The split as the export writes it (``training.layouts``), not one made up here."""
    from tests.factories import PairItemFactory, PairLabelFactory
    from training.layouts import layout_parse
    from training.services import snapshot_create

    project = ProjectFactory()
    for i in range(10):
        PairLabelFactory(item=PairItemFactory(project=project), verdict="A" if i % 2 else "B")
    snapshot = snapshot_create(project=project, layout=layout_parse({"split": 0.3}, record="preference"))
    job = training_job_run(job_id=job_of(snapshot, method="reward").pk)
    assert job.status == "done", job.error
    seen = json.loads((Path(job.artifact_path) / "seen_config.json").read_text())
    splits = snapshot.manifest["splits"]
    assert seen["dataset"] == str(Path(settings.MEDIA_ROOT) / splits["train"]["file"])
    assert seen["eval_dataset"] == str(Path(settings.MEDIA_ROOT) / splits["test"]["file"])
    assert job.evaluation == {"accuracy": 0.75, "rows": splits["test"]["rows"]} and splits["test"]["rows"] > 0


# A trainer resumed from its checkpoint at step 2: it keeps the metrics up to there, says so, logs on.
FAKE_RESUMED_TRAINER = r'''
import json, os, sys, time
from pathlib import Path

cfg = json.loads(Path(sys.argv[sys.argv.index("--config") + 1]).read_text())
out = Path(cfg["output_dir"])
metrics = out / "metrics.jsonl"
metrics.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2)))
print(json.dumps({"event": "resume", "checkpoint": "checkpoint-2", "step": 2}), flush=True)
with metrics.open("a") as handle:
    handle.write(json.dumps({"step": 3, "loss": 0.3}) + "\n")
print(json.dumps({"event": "log", "step": 3, "loss": 0.3}), flush=True)
deadline = time.time() + 60
while not Path(os.environ["FAKE_RELEASE"]).exists() and time.time() < deadline:
    time.sleep(0.05)
(out / "config.json").write_text("{}")
'''


@pytest.mark.django_db(transaction=True)
def test_a_resumed_trainer_shows_the_metrics_before_its_checkpoint_and_the_new_ones(settings, media, tmp_path,
                                                                                  monkeypatch):
    script = tmp_path / "resumed.py"
    script.write_text(FAKE_RESUMED_TRAINER)
    release = tmp_path / "release"
    monkeypatch.setenv("FAKE_RELEASE", str(release))
    monkeypatch.setattr(training.jobs, "training_command",
                        lambda *, job, config_path: [sys.executable, str(script), "--config", str(config_path)])
    # What the attempt before the worker died had written: steps 1 to 4 (4 is past its last checkpoint).
    job = job_of(snapshot_of(settings), metrics=[{"step": s, "loss": 9.0} for s in range(1, 5)])

    def run() -> None:
        try:
            training_job_run(job_id=job.pk)
        finally:
            connection.close()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while (TrainingJob.objects.get(pk=job.pk).metrics or [{}])[-1].get("loss") != 0.3 \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        live = TrainingJob.objects.get(pk=job.pk)
        assert not release.exists()
        assert live.metrics == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}, {"step": 3, "loss": 0.3}]
    finally:
        release.touch()
        worker.join(60)
    assert TrainingJob.objects.get(pk=job.pk).status == "done"


# -- every method through the job path ----------------------------------------------------------------------


def _pairs_project(n: int = 4):
    """A pairwise project of ``n`` labelled pairs with short texts (fast to tokenize and train on)."""
    from tests.factories import CompletionFactory, PairItemFactory, PairLabelFactory, PromptFactory

    project = ProjectFactory()
    for i in range(n):
        prompt = PromptFactory(project=project, messages=[{"role": "user", "content": f"Sum {i} + 1?"}])
        item = PairItemFactory(project=project, prompt=prompt,
                               completion_a=CompletionFactory(prompt=prompt, text=f"{i + 1}."),
                               completion_b=CompletionFactory(prompt=prompt, text=f"{i + 2}."))
        PairLabelFactory(item=item, verdict="A")
    return project


def _steps_project(n: int = 3):
    """A steps project of ``n`` solutions rated by a person, step by step."""
    from annotate.models import Project, Prompt, StepItem, StepLabel
    from tests.factories import UserFactory

    project = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    person = UserFactory()
    for i in range(n):
        prompt = Prompt.objects.create(project=project, messages=[{"role": "user", "content": f"{i} + 2 * 2 = ?"}])
        item = StepItem.objects.create(project=project, prompt=prompt, steps=["2 * 2 = 4", f"{i} + 4 = {i + 4}"])
        StepLabel.objects.create(item=item, annotator=person, ratings=[1, 1 if i % 2 else -1])
    return project


def _snapshot_for(kind: str) -> DatasetSnapshot:
    """A snapshot of the rows ``kind`` made by the app's own export (training.services.snapshot_create)."""
    from training.services import snapshot_create

    if kind == "stepwise":
        return snapshot_create(project=_steps_project(), fmt="stepwise")
    return snapshot_create(project=_pairs_project(), fmt={"preference": "preference", "unpaired": "unpaired",
                                                          "sft": "sft"}[kind])


TRAINED_CLASSES = {"scorer": "AutoModelForSequenceClassification", "step_scorer": "AutoModelForTokenClassification",
                   "transformers": "AutoModelForCausalLM"}


@pytest.mark.django_db
@pytest.mark.parametrize("method", [name for name, m in registry.METHODS.items() if m.consumes != "prompt_only"])
def test_every_method_trains_through_the_job_and_registers_a_model_that_loads(media, tiny_endpoint, method):
    """The worker's code path (training_job_run: the method's script as a subprocess, metrics read live, the
    endpoint registered) for each method, two steps on the tiny model."""
    import math

    import transformers

    spec = registry.METHODS[method]
    snapshot = _snapshot_for(spec.consumes)
    assert snapshot.format in {"preference", "unpaired", "sft", "stepwise"} and snapshot.rows >= 3
    job = TrainingJob.objects.create(base_endpoint=tiny_endpoint, snapshot=snapshot, method=method,
                                     hyperparameters={"max_steps": 2, "max_length": 48, "batch_size": 2,
                                                      "use_cpu": True, "learning_rate": 1e-3})
    job = training_job_run(job_id=job.pk)
    assert job.status == "done", f"{job.error}\n{job.log[-3000:]}"
    losses = [m["loss"] for m in job.metrics if "loss" in m]
    assert [m["step"] for m in job.metrics if "loss" in m] == [1, 2]
    assert all(math.isfinite(loss) for loss in losses), losses
    assert job.progress == 2
    kind = training.jobs.training_endpoint_kind(method=method)
    assert job.result_endpoint.kind == kind == {"reward": "scorer", "prm": "step_scorer"}.get(method, "transformers")
    model = getattr(transformers, TRAINED_CLASSES[kind]).from_pretrained(job.result_endpoint.path,
                                                                        local_files_only=True)
    assert model.config.model_type == "llama"
    if method == "prm":
        assert model.config.id2label == {0: "wrong", 1: "right"} and model.config.step_separator == "\n"


@pytest.mark.django_db
def test_an_online_job_names_its_reward_model_by_scorer_endpoint_and_the_script_gets_its_directory(
        fake_trainer, settings, tmp_path):
    from django.core.exceptions import ValidationError

    snapshot = snapshot_of(settings, name="problems")
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(format="prompt_only")
    snapshot.refresh_from_db()
    (tmp_path / "rm").mkdir()
    ModelEndpoint.objects.create(name="rm", kind=ModelEndpoint.Kind.SCORER, path=str(tmp_path / "rm"))
    ModelEndpoint.objects.create(name="policy", path=str(tmp_path / "policy"))
    for given in ("policy", str(tmp_path / "rm"), "/etc"):  # not a scorer; a path is never taken
        with pytest.raises(ValidationError, match="reward_model: .* is not a scorer endpoint"):
            training_job_check(method="grpo", snapshot=snapshot, hyperparameters={"reward_model": given})
    hyperparameters = training_job_check(method="grpo", snapshot=snapshot, hyperparameters={"reward_model": "rm"})
    job = job_of(snapshot, method="grpo")
    TrainingJob.objects.filter(pk=job.pk).update(hyperparameters={**hyperparameters, "max_steps": 2})
    done = training_job_run(job_id=job.pk)
    assert done.status == "done", done.error
    seen = json.loads((Path(done.artifact_path) / "seen_config.json").read_text())
    assert seen["reward_model"] == str(tmp_path / "rm")
