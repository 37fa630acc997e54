"""Exports that explain themselves: options of the project's kind, a preview of the rows, what the export
rules dropped and why (kept on the snapshot), identical snapshots refused unless confirmed, the manifest."""

import hashlib
import json

import pytest
from django.urls import reverse

from annotate.models import Project, StepItem, StepLabel
from tests.factories import MembershipFactory, PairItemFactory, PairLabelFactory, PromptFactory, UserFactory
from training.models import DatasetSnapshot
from training.services import export_rows, snapshot_create, snapshot_path, snapshot_plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher():
    return MembershipFactory(researcher=True)


def eleven_labels(project, *, ties=2):
    """11 items with one label each: 9 with a preference, ``ties`` ties."""
    for i in range(11):
        PairLabelFactory(item__project=project, verdict="tie" if i < ties else ("A" if i % 2 else "B"),
                         strength=None if i < ties else 3)


def steps_project_member():
    return MembershipFactory(researcher=True, project__task_kind=Project.TaskKind.STEPS)


def step_item(project, steps, **fields):
    prompt = PromptFactory(project=project, messages=[{"role": "user", "content": "What is 6 * 7?"}])
    return StepItem.objects.create(project=project, prompt=prompt, steps=steps, **fields)


def options_of(page: str, name: str) -> set[str]:
    """The option values of the <select name=...> in the page."""
    start = page.index(f'name="{name}"')
    block = page[start:page.index("</select>", start)]
    return {part.split('"', 1)[0] for part in block.split('value="')[1:]}


# -- options of the project's kind ---------------------------------------------------------------------------


def test_a_pairwise_project_is_offered_pair_formats_only(client, researcher):
    client.force_login(researcher.user)
    page = client.get(reverse("training:datasets", args=[researcher.project.pk])).content.decode()
    assert options_of(page, "format") == {"preference", "unpaired", "sft", "prompt_only"}
    assert options_of(page, "source") == {"human", "ai", "both", "synthetic"}
    assert 'name="neutral"' not in page and "Stepwise" not in page
    assert 'name="weighted"' in page
    assert "preference records" in page  # the record kind each format writes


def test_a_steps_project_is_offered_step_formats_only(client):
    member = steps_project_member()
    client.force_login(member.user)
    page = client.get(reverse("training:datasets", args=[member.project.pk])).content.decode()
    assert options_of(page, "format") == {"stepwise", "prm800k", "outcome"}
    assert options_of(page, "source") == {"human", "ai", "auto"}
    assert 'name="weighted"' not in page and 'name="neutral"' in page
    assert "stepwise records" in page and "unpaired records" in page
    # A format of the other kind posted anyway is refused, not exported.
    response = client.post(reverse("training:datasets", args=[member.project.pk]),
                           {"format": "preference", "source": "human", "action": "create"})
    assert response.status_code == 200 and not DatasetSnapshot.objects.exists()
    assert "Select a valid choice" in response.content.decode()


# -- preview and dropped counts -------------------------------------------------------------------------------


def test_preview_says_9_rows_2_ties_dropped_and_the_snapshot_keeps_it(client, researcher, media):
    project = researcher.project
    eleven_labels(project)
    client.force_login(researcher.user)
    preview = client.post(reverse("training:snapshot_preview", args=[project.pk]),
                          {"format": "preference", "source": "human"}, headers={"HX-Request": "true"})
    text = preview.content.decode()
    assert preview.status_code == 200 and text.lstrip().startswith('<div id="preview"')
    assert "<b>9 rows</b>" in text and "(2 ties dropped)" in text
    assert "tie says nothing about which reply to prefer" in text
    assert text.count("&quot;chosen&quot;") == 5, "the first 5 rows of the file, escaped"
    assert not DatasetSnapshot.objects.exists(), "a preview writes nothing"

    response = client.post(reverse("training:datasets", args=[project.pk]),
                           {"format": "preference", "source": "human", "name": "prefs-v1", "action": "create"})
    assert response.status_code == 302
    snapshot = DatasetSnapshot.objects.get()
    assert (snapshot.rows, snapshot.dropped, snapshot.created_by) == (9, {"tie": 2}, researcher.user)
    assert snapshot.manifest["dropped"] == {"tie": 2} and snapshot.manifest["label_counts"] == {"human": 11, "ai": 0}
    listing = client.get(reverse("training:datasets", args=[project.pk])).content.decode()
    assert "9 rows <span class=\"small muted\">(2 ties dropped)</span>" in listing


def test_each_reason_is_counted_and_the_rows_do_not_change(researcher):
    project = researcher.project
    PairLabelFactory(item__project=project, verdict="A")
    PairLabelFactory(item__project=project, verdict="both_bad", strength=None)
    PairLabelFactory(item__project=project, item__gold=True, verdict="B")  # gold: checks people, not data
    split = PairItemFactory(project=project)
    PairLabelFactory(item=split, verdict="A")
    PairLabelFactory(item=split, verdict="B")  # level: no majority
    PairItemFactory(project=project)  # nobody labeled it yet
    plan = snapshot_plan(project=project, source="human", fmt="preference")
    assert len(plan.rows) == 1
    assert plan.dropped == {"both_bad": 1, "no_majority": 1, "gold": 1}
    assert plan.unlabeled == 1
    rows, lineage = export_rows(project=project, fmt="preference", source="human")
    assert plan.rows == rows and plan.lineage == lineage, "counting changes no row"


def test_steps_exports_count_what_they_leave_out():
    member = steps_project_member()
    project = member.project
    rated = step_item(project, ["a", "b"])
    StepLabel.objects.create(item=rated, annotator=UserFactory(), ratings=[1, -1], outcome="incorrect")
    unrated_first = step_item(project, ["a", "b"])
    StepLabel.objects.create(item=unrated_first, annotator=UserFactory(), ratings=[None, 1])
    resplit = step_item(project, ["a", "b", "c"])
    StepLabel.objects.create(item=resplit, annotator=UserFactory(), ratings=[1, 1])  # two ratings, three steps
    gold = step_item(project, ["a"], is_gold=True)
    StepLabel.objects.create(item=gold, annotator=UserFactory(), ratings=[1])
    step_item(project, ["a"])  # unlabeled
    stepwise = snapshot_plan(project=project, source="human", fmt="stepwise")
    assert len(stepwise.rows) == 1
    assert stepwise.dropped == {"no_rated_step": 1, "stale": 1, "gold": 1} and stepwise.unlabeled == 1
    outcome = snapshot_plan(project=project, source="human", fmt="outcome")
    assert len(outcome.rows) == 1 and outcome.dropped == {"no_outcome": 1, "stale": 1, "gold": 1}
    prm = snapshot_plan(project=project, source="human", fmt="prm800k")
    assert len(prm.rows) == 2 and prm.dropped == {"stale": 1, "gold": 1} and prm.unlabeled == 1


def test_model_text_is_escaped_in_the_preview(client, researcher):
    label = PairLabelFactory(item__project=researcher.project, verdict="A",
                             item__completion_a__text='<script>alert("x")</script><img src=x onerror=1>')
    client.force_login(researcher.user)
    text = client.post(reverse("training:snapshot_preview", args=[label.item.project.pk]),
                       {"format": "preference", "source": "human"}).content.decode()
    assert "<script>alert" not in text and "<img" not in text
    assert "&lt;script&gt;alert(" in text


# -- identical snapshots ----------------------------------------------------------------------------------------


def test_an_identical_snapshot_is_refused_on_the_page_unless_confirmed(client, researcher, media):
    project = researcher.project
    eleven_labels(project)
    client.force_login(researcher.user)
    url = reverse("training:datasets", args=[project.pk])
    options = {"format": "preference", "source": "human", "action": "create"}
    assert client.post(url, {**options, "name": "prefs-v1"}).status_code == 302
    first = DatasetSnapshot.objects.get()
    again = client.post(url, {**options, "name": "prefs-v2"})
    text = again.content.decode()
    assert again.status_code == 200 and DatasetSnapshot.objects.count() == 1
    assert f"Identical to prefs-v1 (sha {first.sha256[:12]})" in text
    assert 'name="allow_duplicate"' in text, "the page asks"
    # The preview says so before anyone presses Export.
    preview = client.post(reverse("training:snapshot_preview", args=[project.pk]), options).content.decode()
    assert "Identical to <b>prefs-v1</b>" in preview
    # Other options (strength-weighted: margins change nothing here, so the rows are the same) count too.
    assert client.post(url, {**options, "name": "prefs-v2", "weighted": "on"}).status_code == 200
    confirmed = client.post(url, {**options, "name": "prefs-v2", "allow_duplicate": "on"})
    assert confirmed.status_code == 302
    assert list(DatasetSnapshot.objects.order_by("id").values_list("name", "sha256")) == [
        ("prefs-v1", first.sha256), ("prefs-v2", first.sha256)]
    # New labels make new rows: no notice.
    PairLabelFactory(item__project=project, verdict="A")
    assert client.post(url, {**options, "name": "prefs-v3"}).status_code == 302


# -- the API ----------------------------------------------------------------------------------------------------


def test_api_dry_run_create_409_and_allow_duplicate(client, researcher, media):
    project = researcher.project
    eleven_labels(project)
    client.force_login(researcher.user)
    url = reverse("training:api_snapshots", args=[project.pk])
    dry = client.post(url, {"dry_run": True}, content_type="application/json")
    assert dry.status_code == 200
    body = dry.json()
    assert (body["format"], body["rows"], body["dropped"], body["dropped_text"]) == (
        "preference", 9, {"tie": 2}, "2 ties")
    assert len(body["preview"]) == 5 and set(body["preview"][0]) >= {"prompt", "chosen", "rejected"}
    assert body["identical_to"] is None and not DatasetSnapshot.objects.exists()

    created = client.post(url, {"name": "prefs-v1"}, content_type="application/json")
    assert created.status_code == 201 and created.json()["dropped"] == {"tie": 2}
    assert created.json()["sha256"] == body["sha256"]
    first = created.json()["id"]
    conflict = client.post(url, {"name": "prefs-v2"}, content_type="application/json")
    assert conflict.status_code == 409
    assert conflict.json()["existing"] == {"id": first, "name": "prefs-v1", "sha256": body["sha256"]}
    assert "identical to prefs-v1" in conflict.json()["detail"]
    assert client.post(url, {"dry_run": True}, content_type="application/json").json()["identical_to"]["id"] == first
    allowed = client.post(url, {"name": "prefs-v2", "allow_duplicate": True}, content_type="application/json")
    assert allowed.status_code == 201
    listed = client.get(url).json()
    assert [s["name"] for s in listed] == ["prefs-v2", "prefs-v1"] and listed[0]["dropped_text"] == "2 ties"
    # A name taken, a format of the other kind: 400 naming the field.
    taken = client.post(url, {"name": "prefs-v1", "allow_duplicate": True}, content_type="application/json")
    assert taken.status_code == 400 and "name" in taken.json()
    wrong_kind = client.post(url, {"format": "stepwise", "dry_run": True}, content_type="application/json")
    assert wrong_kind.status_code == 400 and "format" in wrong_kind.json()


def test_api_and_pages_are_for_the_projects_researchers(client, researcher, media):
    eleven_labels(researcher.project)
    snapshot = snapshot_create(project=researcher.project, name="prefs-v1")
    annotator = MembershipFactory(project=researcher.project)
    stranger = UserFactory()
    args = [researcher.project.pk]
    urls = [reverse("training:api_snapshots", args=args),
            reverse("training:api_snapshot_manifest", args=[*args, snapshot.pk]),
            reverse("training:datasets", args=args),
            reverse("training:snapshot_download", args=[*args, snapshot.pk]),
            reverse("training:snapshot_manifest", args=[*args, snapshot.pk])]
    for user, code in ((annotator.user, 403), (stranger, 404)):
        client.force_login(user)
        for url in urls:
            assert client.get(url).status_code == code, (url, user)
        assert client.post(urls[0], {"dry_run": True}, content_type="application/json").status_code == code
        assert client.post(reverse("training:snapshot_preview", args=args),
                           {"format": "preference", "source": "human"}).status_code == code
    client.force_login(researcher.user)
    download = client.get(urls[3])
    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == snapshot.sha256
    assert 'filename="prefs-v1.jsonl"' in download["Content-Disposition"]


def test_manifest_download_from_the_page_and_the_api(client, researcher, media):
    project = researcher.project
    eleven_labels(project)
    client.force_login(researcher.user)
    client.post(reverse("training:datasets", args=[project.pk]),
                {"format": "preference", "source": "human", "weighted": "on", "name": "prefs-v1",
                 "action": "create"})
    snapshot = DatasetSnapshot.objects.get()
    page = client.get(reverse("training:snapshot_manifest", args=[project.pk, snapshot.pk]))
    assert page["Content-Disposition"] == 'attachment; filename="prefs-v1.manifest.json"'
    manifest = json.loads(page.content)
    assert manifest["snapshot"] == {"id": snapshot.pk, "name": "prefs-v1", "file": "prefs-v1.jsonl"}
    assert manifest["project"] == {"id": project.pk, "name": project.name, "task_kind": "pairwise"}
    assert (manifest["format"], manifest["record"], manifest["source"]) == ("preference", "preference", "human")
    assert manifest["options"] == {"weighted": True}
    assert (manifest["rows"], manifest["dropped"], manifest["unlabeled"]) == (9, {"tie": 2}, 0)
    assert manifest["sha256"] == hashlib.sha256(snapshot_path(snapshot=snapshot).read_bytes()).hexdigest()
    assert manifest["label_counts"] == {"human": 11, "ai": 0}
    assert manifest["created_by"] == {"id": researcher.user.pk, "username": researcher.user.username}
    assert manifest["created_at"] and len(manifest["lineage"]) == 9
    api = client.get(reverse("training:api_snapshot_manifest", args=[project.pk, snapshot.pk]))
    assert api.status_code == 200 and api.json() == manifest
    assert api["Content-Disposition"] == 'attachment; filename="prefs-v1.manifest.json"'


def test_a_free_text_name_makes_a_safe_file_name(client, researcher, media):
    eleven_labels(researcher.project)
    snapshot = snapshot_create(project=researcher.project, name='prefs "v1"\n/../x')
    client.force_login(researcher.user)
    response = client.get(reverse("training:snapshot_manifest", args=[researcher.project.pk, snapshot.pk]))
    assert response["Content-Disposition"] == 'attachment; filename="prefs-v1-.-x.manifest.json"'
