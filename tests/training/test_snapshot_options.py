"""What a snapshot takes in and how it is laid out: the filters, the unpaired and SFT formats of pairs,
layouts for each trainer split by prompt, the sources in the manifest, snapshot jobs, the compare page and
the lineage and layout downloads."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from annotate.job_lifecycle import JobStatus
from annotate.models import Membership, PairLabel
from judges.models import AIJudgment, Judge
from prefdata.writers import dataset_bytes
from synth.models import Generation, ModelEndpoint, SynthesisJob
from tests.factories import (
    MembershipFactory,
    PairItemFactory,
    PairLabelFactory,
    ProjectFactory,
    PromptFactory,
    UserFactory,
)
from training.filters import filters_parse
from training.layouts import layout_parse
from training.models import DatasetSnapshot, SnapshotJob
from training.services import (
    export_rows,
    snapshot_create,
    snapshot_job_create,
    snapshot_job_run,
    snapshot_options_parse,
    snapshot_path,
    snapshot_plan,
)

pytestmark = pytest.mark.django_db


def _rows(snapshot):
    return [json.loads(line) for line in snapshot_path(snapshot=snapshot).read_text().splitlines()]


def _prompts(snapshot):
    return [row["prompt"][-1]["content"] for row in _rows(snapshot)]


def _item(project, question, **fields):
    prompt = PromptFactory(project=project, messages=[{"role": "user", "content": question}])
    return PairItemFactory(project=project, prompt=prompt, completion_a__prompt=prompt, completion_b__prompt=prompt,
                           **fields)


@pytest.fixture
def people():
    project = ProjectFactory()
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    return project, ann, bob


# -- filters ---------------------------------------------------------------------------------------------------


def test_annotators_and_dates_narrow_the_labels_an_adjudication_stands(people, media):
    project, ann, bob = people
    by_ann = _item(project, "ann's")
    PairLabelFactory(item=by_ann, annotator=ann, verdict="A")
    by_bob = _item(project, "bob's")
    PairLabelFactory(item=by_bob, annotator=bob, verdict="B")
    both = _item(project, "both")
    PairLabelFactory(item=both, annotator=ann, verdict="A")
    PairLabelFactory(item=both, annotator=bob, verdict="B")  # level with both; ann's alone decides A
    adjudicated = _item(project, "adjudicated", final_verdict="B")
    PairLabelFactory(item=adjudicated, annotator=bob, verdict="A")
    only_ann = snapshot_create(project=project, filters=filters_parse({"annotators": ["ann"]}))
    assert _prompts(only_ann) == ["ann's", "both", "adjudicated"]
    assert only_ann.manifest["options"]["filters"] == {"annotators": [ann.pk], "annotator_names": ["ann"]}
    # The manifest names who decided each kind of row.
    sources = only_ann.manifest["sources"]
    assert sources["annotators"] == [{"id": ann.pk, "username": "ann", "rows": 2}]
    assert sources["adjudications"]["rows"] == 1
    # Labels made before a date are left out; "until" a date includes that whole day.
    old = timezone.now() - dt.timedelta(days=10)
    PairLabel.objects.filter(item=by_bob).update(created_at=old)
    recent = snapshot_plan(project=project, filters=filters_parse({"since": (timezone.now() - dt.timedelta(days=1))
                                                                   .date().isoformat()}))
    assert "bob's" not in [row["prompt"][-1]["content"] for row in recent.rows]
    early = snapshot_plan(project=project, filters=filters_parse({"until": old.date().isoformat()}))
    assert [row["prompt"][-1]["content"] for row in early.rows] == ["bob's", "adjudicated"]


def test_minimum_agreement_and_strength_drop_rows_and_count_them(people, media):
    project, ann, bob = people
    carol = UserFactory()
    split = _item(project, "two of three")
    for user, verdict in ((ann, "A"), (bob, "A"), (carol, "B")):
        PairLabelFactory(item=split, annotator=user, verdict=verdict, strength=2 if verdict == "A" else None)
    strong = _item(project, "strong")
    PairLabelFactory(item=strong, annotator=ann, verdict="B", strength=4)
    ungraded = _item(project, "ungraded")
    PairLabelFactory(item=ungraded, annotator=ann, verdict="A", strength=None)
    plan = snapshot_plan(project=project, filters=filters_parse({"min_agreement": 0.7}))
    assert len(plan.rows) == 2 and plan.dropped == {"low_agreement": 1}
    plan = snapshot_plan(project=project, filters=filters_parse({"min_strength": 3}))
    assert [row["prompt"][-1]["content"] for row in plan.rows] == ["strong"]
    assert plan.dropped == {"weak": 2}


def test_judges_and_versions_narrow_the_judgments(media):
    project = ProjectFactory()
    endpoint = ModelEndpoint.objects.create(name="j", path="unused")
    first, second = (Judge.objects.create(name=name, endpoint=endpoint) for name in ("first", "second"))
    item = _item(project, "judged")
    AIJudgment.objects.create(judge=first, item=item, template_version=1, verdict="A", probability=0.9)
    AIJudgment.objects.create(judge=first, item=item, template_version=2, verdict="B", probability=0.1)
    other = _item(project, "other judge")
    AIJudgment.objects.create(judge=second, item=other, template_version=1, verdict="A", probability=0.8,
                              constitution_version=3)
    v1 = snapshot_create(project=project, source="ai", filters=filters_parse({"judges": [f"{first.pk}:1"]}))
    assert _prompts(v1) == ["judged"] and _rows(v1)[0]["chosen"][0]["content"] == item.completion_a.text
    assert v1.manifest["sources"]["judges"] == [{"id": first.pk, "name": "first", "model": "j", "template_version": 1,
                                                 "constitution_version": None, "rows": 1}]
    v2 = snapshot_plan(project=project, source="ai", filters=filters_parse({"judges": [f"{first.pk}:2"]}))
    assert v2.rows[0]["chosen"][0]["content"] == item.completion_b.text
    by_constitution = snapshot_plan(project=project, source="ai", filters=filters_parse({"constitution_versions": [3]}))
    assert [row["prompt"][-1]["content"] for row in by_constitution.rows] == ["other judge"]


def _generated(item, job, endpoint):
    Generation.objects.create(completion=item.completion_a, endpoint=endpoint, job=job)


def test_synthesis_jobs_and_the_cap_on_synthetic_rows(people, media):
    project, ann, _ = people
    endpoint = ModelEndpoint.objects.create(name="gen", path="unused")
    job = SynthesisJob.objects.create(project=project, endpoint=endpoint)
    items = [_item(project, f"q{i}") for i in range(10)]
    for i, item in enumerate(items):
        PairLabelFactory(item=item, annotator=ann, verdict="A")
        if i < 6:
            _generated(item, job, endpoint)
    only_job = snapshot_plan(project=project, filters=filters_parse({"synthesis_jobs": [job.pk]}))
    assert len(only_job.rows) == 6 and only_job.sources["synthetic_share"] == 1.0
    # 4 natural rows: a share of 0.5 allows 4 synthetic ones of the 6, spread evenly, the rest counted.
    capped = snapshot_create(project=project, filters=filters_parse({"max_synthetic_share": 0.5}))
    assert capped.rows == 8 and capped.dropped == {"synthetic_cap": 2}
    assert capped.manifest["sources"]["synthetic_rows"] == 4 and capped.manifest["sources"]["synthetic_share"] == 0.5
    assert capped.manifest["sources"]["synthesis_jobs"] == [{"id": job.pk, "kind": job.kind, "rows": 4}]
    assert capped.manifest["sources"]["endpoints"][0]["name"] == "gen"
    kept = [entry for entry in capped.manifest["lineage"] if entry.get("synthesis_jobs")]
    assert len(kept) == 4 and all(entry["synthesis_jobs"] == [job.pk] for entry in kept)
    none = snapshot_plan(project=project, filters=filters_parse({"max_synthetic_share": 0}))
    assert len(none.rows) == 4 and none.dropped == {"synthetic_cap": 6}
    # Past the share and the depth set, the export warns (model collapse); under them it does not.
    assert capped.manifest["warnings"] == []
    Generation.objects.filter(job=job).update(depth=3)
    deep = snapshot_create(project=project)
    assert deep.manifest["sources"]["max_depth"] == 3 and deep.manifest["sources"]["synthetic_share"] == 0.6
    assert [w.split(" ")[0] for w in deep.manifest["warnings"]] == ["60%", "Replies"]


def test_other_projects_join_only_where_the_user_researches(people, media):
    project, ann, _ = people
    other, foreign = ProjectFactory(name="other"), ProjectFactory(name="foreign")
    user = UserFactory()
    for p in (project, other):
        MembershipFactory(project=p, user=user, role=Membership.Role.RESEARCHER)
    MembershipFactory(project=foreign, user=user, role=Membership.Role.ANNOTATOR)
    for p, question in ((project, "mine"), (other, "theirs"), (foreign, "foreign")):
        PairLabelFactory(item=_item(p, question), annotator=ann, verdict="A")
    joined = snapshot_create(project=project, user=user,
                             **snapshot_options_parse(project=project, data={"filters": {"projects": [other.pk]}},
                                                      user=user))
    assert _prompts(joined) == ["mine", "theirs"]
    assert [p["name"] for p in joined.manifest["projects"]] == [project.name, "other"]
    with pytest.raises(ValidationError, match="no project .* you can export from") as refused:
        snapshot_options_parse(project=project, data={"filters": {"projects": [foreign.pk]}}, user=user)
    assert "filters.projects" in refused.value.message_dict


@pytest.mark.parametrize("data, field", [
    ({"filters": {"min_agreement": 1.5}}, "filters.min_agreement"),
    ({"filters": {"since": "yesterday"}}, "filters.since"),
    ({"filters": {"since": "2026-02-01", "until": "2026-01-01"}}, "filters.until"),
    ({"filters": {"annotators": ["nobody"]}}, "filters.annotators"),
    ({"filters": {"judges": ["x:1"]}}, "filters.judges"),
    ({"filters": {"colour": "red"}}, "filters"),
    ({"layout": {"target": "verl"}}, "layout.target"),
    ({"layout": {"target": "trl", "file_format": "csv"}}, "layout.file_format"),
    ({"layout": {"split": {"train": 0.9, "test": 0.2}}}, "layout.split"),
])
def test_bad_options_name_their_field(data, field):
    project = ProjectFactory()
    with pytest.raises(ValidationError) as error:
        snapshot_options_parse(project=project, data=data)
    assert field in error.value.message_dict, error.value.message_dict


# -- the unpaired and SFT formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["unpaired", "sft"])
def test_unpaired_and_sft_rows_are_streamed_as_the_in_memory_reference(people, media, fmt):
    project, ann, bob = people
    for question, verdict in (("one", "A"), ("two", "B"), ("tie", "tie"), ("bad", "both_bad")):
        PairLabelFactory(item=_item(project, question), annotator=ann, verdict=verdict)
    rows, lineage = export_rows(project=project, fmt=fmt, source="human")
    snapshot = snapshot_create(project=project, fmt=fmt)
    assert snapshot_path(snapshot=snapshot).read_bytes() == dataset_bytes(rows, "jsonl")
    assert snapshot.manifest["lineage"] == lineage and snapshot.manifest["record"] == fmt
    if fmt == "unpaired":
        assert [row["label"] for row in rows] == [True, False, True, False]
        with_bad = snapshot_create(project=project, fmt=fmt, both_bad=True)
        assert [row["label"] for row in _rows(with_bad)] == [True, False, True, False, False, False]
    else:
        assert rows[1]["messages"][-1]["content"] == PairLabel.objects.get(verdict="B").item.completion_b.text


# -- layouts and splits ----------------------------------------------------------------------------------------------


@pytest.fixture
def many(people):
    """60 labelled pairs; prompts 0-9 asked twice (two items each), prompts 50-59 in paraphrase groups."""
    project, ann, _ = people
    for i in range(40):
        item = _item(project, f"Question {i % 30}?")
        PairLabelFactory(item=item, annotator=ann, verdict="A" if i % 2 else "B")
    for i in range(20):
        prompt = PromptFactory(project=project, messages=[{"role": "user", "content": f"Paraphrase {i} of it"}],
                               metadata={"paraphrase_group": f"g{i % 4}"})
        item = PairItemFactory(project=project, prompt=prompt, completion_a__prompt=prompt,
                               completion_b__prompt=prompt)
        PairLabelFactory(item=item, annotator=ann, verdict="A")
    return project


def _split_prompts(folder, name):
    return [json.loads(line)["prompt"][-1]["content"] for line in (folder / name).read_text().splitlines()]


def test_a_split_keeps_each_prompt_and_paraphrase_group_on_one_side_and_is_reproducible(many, media):
    import datasets

    options = snapshot_options_parse(project=many, data={"layout": {"split": {"train": 0.7, "test": 0.3}, "seed": 7}})
    snapshot = snapshot_create(project=many, **options)
    manifest = snapshot.manifest
    folder = settings.MEDIA_ROOT / manifest["folder"]
    train, test = _split_prompts(folder, "train.jsonl"), _split_prompts(folder, "test.jsonl")
    assert len(train) + len(test) == snapshot.rows == 60 and train and test
    assert not set(train) & set(test)
    groups = {f"Paraphrase {i} of it": f"g{i % 4}" for i in range(20)}
    assert not {groups[p] for p in train if p in groups} & {groups[p] for p in test if p in groups}
    assert manifest["splits"]["test"]["rows"] == len(test)
    assert manifest["splits"]["test"]["file"] == f"{manifest['folder']}/test.jsonl"
    assert manifest["options"]["layout"]["split"]["seed"] == 7
    # A datasets-ready folder: load_dataset gives the splits.
    loaded = datasets.load_dataset(str(folder))
    assert loaded["train"].num_rows == len(train) and loaded["test"].num_rows == len(test)
    # The files are read-only and hashed in the manifest.
    assert not (folder / "train.jsonl").stat().st_mode & 0o222
    # The same seed gives the same split (the same folder, reused); another seed another split.
    again = snapshot_create(project=many, **options)
    assert again.manifest["files"] == manifest["files"]
    other = snapshot_plan(project=many, **snapshot_options_parse(
        project=many, data={"layout": {"split": {"train": 0.7, "test": 0.3}, "seed": 8}}))
    assert other.sha256 == snapshot.sha256  # the rows are the same; only the layout differs


def test_openrlhf_and_verl_layouts(many, media, client):
    snapshot = snapshot_create(project=many, **snapshot_options_parse(
        project=many, data={"layout": {"target": "openrlhf", "file_format": "parquet"}}))
    folder = settings.MEDIA_ROOT / snapshot.manifest["folder"]
    assert "--chosen_key chosen" in (folder / "openrlhf.args").read_text()
    assert set(snapshot.manifest["files"]) == {"train.parquet", "openrlhf.args", "README.md"}
    sft = snapshot_create(project=many, **snapshot_options_parse(
        project=many, data={"format": "sft", "layout": {"target": "verl", "split": 0.2}}))
    import pyarrow.parquet as pq

    table = pq.read_table(settings.MEDIA_ROOT / sft.manifest["splits"]["train"]["file"])
    assert table.column_names == ["messages"] or "messages" in table.column_names
    # The layout's files download, checked against their sha256.
    user = UserFactory()
    MembershipFactory(project=many, user=user, role=Membership.Role.RESEARCHER)
    client.force_login(user)
    url = reverse("training:snapshot_layout_file", args=[many.pk, snapshot.pk, "openrlhf.args"])
    assert client.get(url).status_code == 200
    missing = reverse("training:snapshot_layout_file", args=[many.pk, snapshot.pk, "x.args"])
    assert client.get(missing).status_code == 404
    assert client.get(url.replace("openrlhf.args", "..%2Fsecret")).status_code == 404
    args = folder / "openrlhf.args"
    args.chmod(0o644)
    args.write_text("--evil\n")
    assert client.get(url).status_code == 409


def test_the_layout_fits_the_record(many):
    with pytest.raises(ValidationError, match="verl takes prompt_only, sft rows, not preference"):
        layout_parse({"target": "verl"}, record="preference")
    assert layout_parse({"split": 0.1}, record="preference").split.proportions == {"test": 0.1, "train": 0.9}


# -- snapshot jobs, the API, the command -----------------------------------------------------------------------------


def test_a_snapshot_job_makes_the_snapshot_with_progress(many, media):
    user = UserFactory()
    job = snapshot_job_create(project=many, data={"format": "unpaired", "layout": {"split": 0.25}}, name="big",
                              user=user, start=False)
    done = snapshot_job_run(job_id=job.pk)
    assert done.status == JobStatus.DONE, done.error
    assert done.snapshot.name == "big" and done.snapshot.rows == 120 and done.progress == done.total == 120
    assert done.snapshot.manifest["created_by"]["id"] == user.pk and set(done.snapshot.manifest["splits"]) == {
        "train", "test"}
    # Nothing to export: the job fails saying why, and no snapshot is left.
    empty = ProjectFactory()
    failed = snapshot_job_run(job_id=snapshot_job_create(project=empty, data={}, start=False).pk)
    assert failed.status == JobStatus.FAILED and "no human labels" in failed.error
    assert not DatasetSnapshot.objects.filter(project=empty).exists()


def test_the_api_creates_in_the_background_and_filters(many, media, client, monkeypatch):
    user = UserFactory()
    MembershipFactory(project=many, user=user, role=Membership.Role.RESEARCHER)
    client.force_login(user)
    url = reverse("training:api_snapshots", args=[many.pk])
    bad = client.post(url, {"filters": {"min_agreement": 2}}, content_type="application/json")
    assert bad.status_code == 400 and "filters.min_agreement" in bad.content.decode()
    dry = client.post(url, {"dry_run": True, "filters": {"min_strength": 4}}, content_type="application/json").json()
    assert dry["rows"] == 0 and dry["dropped"] == {"weak": 60}
    monkeypatch.setattr("training.tasks.snapshot_job_run_task.delay_on_commit", lambda job_id: None)
    queued = client.post(url, {"background": True, "name": "later", "layout": {"split": 0.1}},
                         content_type="application/json")
    assert queued.status_code == 202
    job = queued.json()["job"]
    assert job["status"] == "queued" and SnapshotJob.objects.get(pk=job["id"]).params["name"] == "later"
    snapshot_job_run(job_id=job["id"])
    followed = client.get(job["url"]).json()["job"]
    assert followed["status"] == "done" and followed["snapshot"]["name"] == "later"
    stranger = UserFactory()
    client.force_login(stranger)
    assert client.get(job["url"]).status_code == 404


def test_the_command_writes_a_split_layout(many, media):
    from io import StringIO

    out = StringIO()
    call_command("export_snapshot", project=many.name, test_share=0.2, seed=3, target="trl",
                 filters=json.dumps({"min_agreement": 0.5}), stdout=out)
    assert "train:" in out.getvalue() and "test:" in out.getvalue()
    snapshot = DatasetSnapshot.objects.get(project=many)
    assert snapshot.manifest["options"]["layout"]["split"]["proportions"] == {"test": 0.2, "train": 0.8}


# -- the compare page and the lineage download ---------------------------------------------------------------------


def test_the_compare_page_shows_an_adjudication_and_the_lineage_downloads(people, media, client):
    project, ann, bob = people
    items = [_item(project, f"<b>q{i}</b>") for i in range(3)]
    for item in items:
        PairLabelFactory(item=item, annotator=ann, verdict="A")
    before = snapshot_create(project=project, name="before")
    items[1].final_verdict = "B"
    items[1].adjudicated_by, items[1].adjudicated_at = bob, timezone.now()
    items[1].save()
    after = snapshot_create(project=project, name="after")
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=Membership.Role.RESEARCHER)
    client.force_login(user)
    page = client.get(reverse("training:snapshot_diff", args=[project.pk]), {"a": before.pk, "b": after.pk})
    text = page.content.decode()
    assert page.status_code == 200 and "<b>1</b> flipped" in text and "adjudicated" in text
    assert "<b>q1</b>" not in text and "&lt;b&gt;q1&lt;/b&gt;" in text  # model text escaped
    lineage = client.get(reverse("training:snapshot_lineage", args=[project.pk, after.pk]))
    entries = [json.loads(line) for line in b"".join(lineage.streaming_content if lineage.streaming
                                                     else [lineage.content]).decode().splitlines()]
    assert [entry["item"] for entry in entries] == [item.pk for item in items]
    labels = PairLabel.objects.filter(pk__in=entries[0]["labels"])
    assert [label.annotator.username for label in labels] == ["ann"]
    client.force_login(UserFactory())
    assert client.get(reverse("training:snapshot_diff", args=[project.pk])).status_code == 404
    assert Counter(after.manifest["sources"]["adjudications"]["reviewers"][0].values())[bob.pk] == 1


def test_snapshot_jobs_go_to_the_default_queue_and_training_to_its_own():
    from config.celery import app

    def queue(task):
        return app.amqp.router.route({}, task)["queue"].name

    assert queue("training.tasks.snapshot_job_run_task") == "default"  # a worker of the default queue exports
    assert queue("training.tasks.training_job_run_task") == "training"


def test_the_rows_synthesis_jobs_chose_themselves(people, media):
    from synth.models import SyntheticRow

    project, ann, _ = people
    endpoint = ModelEndpoint.objects.create(name="gen", path="unused")
    revise, other = (SynthesisJob.objects.create(project=project, endpoint=endpoint) for _ in range(2))
    item = _item(project, "revise it")
    # The revision (b) was chosen over the original (a); a pair whose chosen reply is not its own is skipped.
    SyntheticRow.objects.create(project=project, job=revise, kind=SyntheticRow.Kind.PAIR, pair_item=item,
                                prompt=item.prompt, depth=2, meta={"chosen": item.completion_b_id, "margin": 0.5,
                                                                   "strategy": "revision_over_original"})
    stray = _item(project, "stray")
    SyntheticRow.objects.create(project=project, job=other, kind=SyntheticRow.Kind.PAIR, pair_item=stray,
                                prompt=stray.prompt, meta={"chosen": item.completion_a_id})
    SyntheticRow.objects.create(project=project, job=other, kind=SyntheticRow.Kind.SFT, prompt=item.prompt,
                                messages=item.prompt.messages, completion="the best of four", depth=1)
    pairs = snapshot_create(project=project, source="synthetic")
    assert _rows(pairs) == [{"prompt": item.prompt.messages,
                             "chosen": [{"role": "assistant", "content": item.completion_b.text}],
                             "rejected": [{"role": "assistant", "content": item.completion_a.text}], "margin": 0.5}]
    assert pairs.manifest["lineage"][0]["synthesis_jobs"] == [revise.pk]
    sft = snapshot_create(project=project, source="synthetic", fmt="sft",
                          filters=filters_parse({"synthesis_jobs": [other.pk]}))
    assert _rows(sft) == [{"prompt": item.prompt.messages,
                           "completion": [{"role": "assistant", "content": "the best of four"}]}]
    assert snapshot_plan(project=project, source="synthetic", fmt="sft",
                         filters=filters_parse({"synthesis_jobs": [revise.pk]})).rows == []
    with pytest.raises(ValidationError, match="filtered by job only"):
        snapshot_options_parse(project=project, data={"source": "synthetic", "filters": {"min_agreement": 0.5}})


def test_prompt_only_rows_of_the_problem_bank_split_by_their_marks(tmp_path, media):
    import datasets

    from synth.problems import problems_import

    project = ProjectFactory()
    path = tmp_path / "problems.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in [
        {"question": "What is 2+3?", "answer": "Add them.\n#### 5", "tags": ["arith"], "split": "train"},
        {"question": "What is 7*6?", "answer": "42", "tags": ["arith"], "split": "test"},
        {"prompt": "Write add(a, b).", "test_list": ["assert add(1, 2) == 3"], "tags": ["code"]},
        {"prompt": "Write inc(x).", "test": "def check(candidate):\n    assert candidate(1) == 2\n",
         "entry_point": "inc", "tags": ["code"]},
    ]) + "\n")
    problems_import(project=project, path=path)
    options = snapshot_options_parse(project=project, data={"format": "prompt_only", "layout": {"split": "marked"}})
    snapshot = snapshot_create(project=project, **options)
    rows = _rows(snapshot)
    assert rows[0] == {"prompt": [{"role": "user", "content": "What is 2+3?"}], "answer": "5", "tests": []}
    assert rows[2]["tests"] == ["assert add(1, 2) == 3"] and rows[2]["answer"] == ""
    assert rows[3]["tests"][0].rstrip().endswith("check(inc)")  # HumanEval's check made one test that calls it
    assert snapshot.manifest["record"] == "prompt_only"
    assert {split: info["rows"] for split, info in snapshot.manifest["splits"].items()} == {"train": 3, "test": 1}
    loaded = datasets.load_dataset(str(settings.MEDIA_ROOT / snapshot.manifest["folder"]))
    assert loaded["test"][0]["answer"] == "42"
    arith = snapshot_plan(project=project, **snapshot_options_parse(
        project=project, data={"format": "prompt_only", "filters": {"tags": ["arith"]}}))
    assert len(arith.rows) == 2
    with pytest.raises(ValidationError, match="only problems carry"):
        snapshot_options_parse(project=project, data={"layout": {"split": "marked"}})


def test_a_large_snapshot_built_in_memory_keeps_its_lineage_in_a_file_too(people, media, monkeypatch):
    from synth.models import SyntheticRow

    project, _, _ = people
    endpoint = ModelEndpoint.objects.create(name="gen", path="unused")
    job = SynthesisJob.objects.create(project=project, endpoint=endpoint)
    prompt = PromptFactory(project=project)
    for i in range(3):
        SyntheticRow.objects.create(project=project, job=job, kind=SyntheticRow.Kind.SFT, prompt=prompt,
                                    messages=prompt.messages, completion=f"target {i}")
    monkeypatch.setattr("training.services.LINEAGE_INLINE_ROWS", 2)
    snapshot = snapshot_create(project=project, source="synthetic", fmt="sft")
    assert snapshot.manifest["lineage"] is None
    lines = (settings.MEDIA_ROOT / snapshot.manifest["lineage_file"]).read_text().splitlines()
    assert [json.loads(line)["synthesis_jobs"] for line in lines] == [[job.pk]] * 3


def test_the_page_exports_the_problem_bank_by_tag_split_by_its_marks(tmp_path, client, media):
    from synth.problems import problems_import

    member = MembershipFactory(role=Membership.Role.RESEARCHER)
    project = member.project
    path = tmp_path / "p.jsonl"
    rows = [{"question": f"q{i}", "answer": str(i), "tags": ["even" if i % 2 == 0 else "odd"],
             "split": "test" if i < 2 else "train"} for i in range(6)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    problems_import(project=project, path=path)
    client.force_login(member.user)
    url = reverse("training:datasets", args=[project.pk])
    page = client.get(url).content.decode()
    assert 'value="even"' in page and 'name="marked_split"' in page
    response = client.post(url, {"format": "prompt_only", "source": "human", "tags": ["even"], "marked_split": "on",
                                 "target": "trl", "file_format": "jsonl", "name": "even", "action": "create"})
    assert response.status_code == 302
    snapshot = DatasetSnapshot.objects.get(name="even")
    assert snapshot.rows == 3 and snapshot.manifest["options"]["filters"] == {"tags": ["even"]}
    assert {split: info["rows"] for split, info in snapshot.manifest["splits"].items()} == {"test": 1, "train": 2}
