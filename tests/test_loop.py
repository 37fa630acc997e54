"""The whole loop on the tiny model, through the real services, tasks and training subprocess."""

import math

import pytest
from django.urls import reverse

from annotate.models import Membership, PairItem, PairLabel
from annotate.services import project_create, project_member_add, prompts_create
from judges.models import AIJudgment, Judge
from synth.backends.base import Sampling
from synth.models import Generation, SynthesisJob
from synth.services import endpoint_backend, synthesis_job_create
from tests.factories import UserFactory
from training.jobs import training_job_create
from training.models import DatasetSnapshot, TrainingJob
from training.services import snapshot_create, snapshot_path

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

QUESTIONS = ["What is the capital of France?", "Give me three tips for sleeping better.",
             "Why is the sky blue?", "Write a haiku about rain.", "How many minutes are in an hour?",
             "Name a fruit rich in vitamin C."]


def test_the_whole_loop(client, media, tiny_endpoint, tiny_model_dir, django_capture_on_commit_callbacks):
    researcher, annotator = UserFactory(username="researcher"), UserFactory(username="annotator")
    project = project_create(name="Loop", created_by=researcher)
    project_member_add(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    prompts_create(project=project, conversations=QUESTIONS, source="test")

    # 1. Generate two completions per prompt: the task is queued on commit and runs (eagerly here).
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = synthesis_job_create(project=project, endpoint=tiny_endpoint, max_new_tokens=8, batch_size=4)
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert (job.status, job.progress, job.total) == (SynthesisJob.Status.DONE, 6, 6)
    items = list(PairItem.objects.filter(project=project).order_by("id"))
    assert len(items) == 6
    assert Generation.objects.filter(job=job, endpoint=tiny_endpoint).count() == 12
    assert items[0].completion_a.model_name == "tiny"

    # 2. The annotator labels three pairs in the browser.
    client.force_login(annotator)
    for _ in range(3):
        item = client.get(reverse("annotate:annotate", args=[project.pk])).context["item"]
        url = reverse("annotate:annotate_submit", args=[project.pk, item.pk])
        client.post(url, {"choice": "left", "strength": "2"})
    labels = PairLabel.objects.filter(item__project=project)
    assert labels.count() == 3
    assert {label.verdict for label in labels} <= {"A", "B"}

    # 3. An AI judge labels every pair, in both orders.
    judge = Judge.objects.create(name="tiny judge", endpoint=tiny_endpoint)
    from judges.services import judge_run_create

    with django_capture_on_commit_callbacks(execute=True):
        run = judge_run_create(judge=judge, project=project)
    run.refresh_from_db()
    assert (run.status, run.progress, run.total) == ("done", 6, 6)
    judgments = AIJudgment.objects.filter(judge=judge)
    assert judgments.count() == 6
    for j in judgments:
        assert j.verdict_ab in ("A", "B", "tie") and j.verdict_ba in ("A", "B", "tie")
        assert 0 <= j.prob_a_ab <= 1 and 0 <= j.prob_a_ba <= 1
        assert j.probability == pytest.approx((j.prob_a_ab + j.prob_a_ba) / 2)

    # 4. Export: human labels first, AI judgments for the rest; the file loads with `datasets`.
    snapshot = snapshot_create(project=project, source=DatasetSnapshot.Source.BOTH)
    from datasets import load_dataset

    dataset = load_dataset("json", data_files=str(snapshot_path(snapshot=snapshot)), split="train")
    assert set(dataset.column_names) >= {"prompt", "chosen", "rejected"}
    assert len(dataset) == snapshot.rows == sum(
        1 for it in items if (labels.filter(item=it).first() or judgments.get(item=it)).verdict in ("A", "B"))
    lineage = {row["item"]: row for row in snapshot.manifest["lineage"]}
    for label in labels:
        row = lineage[label.item_id]
        assert row["by"] == "human"
        assert row["chosen"] == (label.item.completion_a_id if label.verdict == "A" else label.item.completion_b_id)
    assert dataset[0]["prompt"][0]["role"] == "user"
    assert dataset[0]["chosen"][0]["role"] == "assistant"

    # 5. Train with DPO in a subprocess from the training task, then use the new model.
    with django_capture_on_commit_callbacks(execute=True):
        training = training_job_create(base_endpoint=tiny_endpoint, snapshot=snapshot, hyperparameters={
            "max_steps": 3, "batch_size": 2, "max_length": 128, "learning_rate": 1e-3})
    training.refresh_from_db()
    assert training.status == TrainingJob.Status.DONE, training.error or training.log[-3000:]
    losses = [m["loss"] for m in training.metrics if "loss" in m]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert "training.ml.dpo" in training.log or '"event": "start"' in training.log

    import torch
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(training.artifact_path).state_dict()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed, "training must change the parameters"

    new = training.result_endpoint
    assert new.created_by_job_id == training.pk and new.path == training.artifact_path
    reply = endpoint_backend(endpoint=new).generate([[{"role": "user", "content": "Hi"}]],
                                                    Sampling(max_new_tokens=5, temperature=0.0))
    assert len(reply) == 1 and isinstance(reply[0][0], str)


def test_snapshot_is_content_addressed_and_refuses_empty(media, db):
    from django.core.exceptions import ValidationError

    from tests.factories import PairLabelFactory, ProjectFactory

    project = ProjectFactory()
    with pytest.raises(ValidationError):
        snapshot_create(project=project, source="human")
    label = PairLabelFactory(item__project=project, verdict="B", strength=4)
    PairLabelFactory(item__project=project, verdict="tie", strength=None)  # says nothing: not exported
    first = snapshot_create(project=project, source="human", name="one")
    second = snapshot_create(project=project, source="human", name="two")
    assert first.rows == 1 and first.sha256 == second.sha256 and first.file == second.file
    import hashlib
    import json

    body = snapshot_path(snapshot=first).read_bytes()
    assert hashlib.sha256(body).hexdigest() == first.sha256
    row = json.loads(body)
    assert row["chosen"][0]["content"] == label.item.completion_b.text
    assert row["rejected"][0]["content"] == label.item.completion_a.text
    assert row["margin"] == 4
