"""The diff of two snapshots (service and API) around an adjudication and a newly labeled pair; and the
lineage a row of a snapshot leads to: the exact labels and their annotators, the AI judgments with their
judge and version."""

import json

import jsonschema
import pytest
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator

from annotate.models import Membership, PairLabel
from annotate.services import pair_item_adjudicate, pair_label_submit
from judges.models import AIJudgment, Judge
from synth.models import ModelEndpoint
from tests.factories import MembershipFactory, PairItemFactory, PairLabelFactory, UserFactory
from training.diffs import snapshot_diff, snapshot_rows
from training.services import snapshot_create, snapshot_path

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher():
    return MembershipFactory(researcher=True)


@pytest.fixture
def around_an_adjudication(researcher, media):
    """Snapshot a: a disputed pair (A, A, B: A chosen) and a settled one. Then a reviewer adjudicates the
    disputed pair as B, and a new pair gets its first label. Snapshot b."""
    project = researcher.project
    disputed, settled, fresh = (PairItemFactory(project=project) for _ in range(3))
    for verdict in ("A", "A", "B"):
        PairLabelFactory(item=disputed, verdict=verdict, strength=2)
    PairLabelFactory(item=settled, verdict="B", strength=3)
    a = snapshot_create(project=project, name="before", user=researcher.user)
    reviewer = UserFactory(username="reviewer-rae")
    pair_item_adjudicate(item=disputed, reviewer=reviewer, verdict="B", strength=3)
    newcomer = UserFactory(username="annotator-nia")
    label = pair_label_submit(item=fresh, annotator=newcomer, verdict="A", strength=2)
    b = snapshot_create(project=project, name="after", user=researcher.user)
    return {"a": a, "b": b, "disputed": disputed, "settled": settled, "fresh": fresh, "label": label,
            "project": project}


def test_the_flip_is_reported_as_adjudicated_naming_who_and_the_new_pair_as_added(around_an_adjudication):
    world = around_an_adjudication
    diff = snapshot_diff(a=world["a"], b=world["b"])
    assert diff["counts"] == {"added": 1, "removed": 0, "flipped": 1, "changed": 0, "unchanged": 1}
    (flipped,) = diff["flipped"]
    assert flipped["item"] == world["disputed"].pk
    adjudicated = [r for r in flipped["reasons"] if r["kind"] == "adjudicated"]
    assert adjudicated == [{"kind": "adjudicated", "by": "reviewer-rae",
                            "at": world["disputed"].adjudicated_at.isoformat()}]
    assert flipped["row"]["chosen"][0]["content"] == world["disputed"].completion_b.text
    (added,) = diff["added"]
    assert added["item"] == world["fresh"].pk
    assert added["reasons"] == [{"kind": "new_labels",
                                 "labels": [{"id": world["label"].pk, "annotator": "annotator-nia"}]}]
    assert diff["reasons"] == {"adjudicated": 1, "new_labels": 1}
    assert diff["snapshot_changes"] == []
    # The other way round, b to a: the new pair is removed, the flip is the same flip.
    back = snapshot_diff(a=world["b"], b=world["a"])
    assert back["counts"]["removed"] == 1 and back["counts"]["flipped"] == 1
    assert back["flipped"][0]["reasons"][0]["by"] == "reviewer-rae"


def _nullable(node: object) -> object:
    """OpenAPI 3.0's ``nullable`` as JSON Schema's null type."""
    if isinstance(node, dict):
        node = {k: _nullable(v) for k, v in node.items()}
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        return node
    return [_nullable(v) for v in node] if isinstance(node, list) else node


def diff_response_schema() -> dict:
    doc = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
    operation = doc["paths"]["/api/projects/{project_id}/snapshots/{snapshot_id}/diff/{other_id}/"]["get"]
    return _nullable({**operation["responses"]["200"]["content"]["application/json"]["schema"],
                      "components": doc["components"]})


def test_the_api_answers_researchers_with_the_diff(client, researcher, around_an_adjudication):
    world = around_an_adjudication
    url = reverse("training:api_snapshot_diff", args=[world["project"].pk, world["a"].pk, world["b"].pk])
    client.force_login(researcher.user)
    response = client.get(url)
    assert response.status_code == 200, response.content
    body = response.json()
    jsonschema.validate(body, diff_response_schema())  # the answer is what the schema says
    assert body["a"]["name"] == "before" and body["b"]["name"] == "after"
    assert body["flipped"][0]["reasons"][0] == {"kind": "adjudicated", "by": "reviewer-rae",
                                                "at": world["disputed"].adjudicated_at.isoformat()}
    assert client.get(url, {"limit": 0}).json()["flipped"] == []
    assert client.get(url, {"limit": 0}).json()["truncated"] is True
    assert client.get(url, {"limit": "many"}).status_code == 400

    annotator = MembershipFactory(project=world["project"], role=Membership.Role.ANNOTATOR)
    client.force_login(annotator.user)
    assert client.get(url).status_code == 403
    stranger = MembershipFactory(researcher=True)
    client.force_login(stranger.user)
    assert client.get(url).status_code == 404
    other = reverse("training:api_snapshot_diff", args=[stranger.project.pk, world["a"].pk, world["b"].pk])
    response = client.get(other)  # snapshots of another project: not found in this one
    assert response.status_code == 404 and "detail" in response.json()


def test_the_api_refuses_to_compare_an_altered_file(client, researcher, around_an_adjudication):
    world = around_an_adjudication
    path = snapshot_path(snapshot=world["b"])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b'{"prompt": "slipped in"}\n')
    client.force_login(researcher.user)
    response = client.get(reverse("training:api_snapshot_diff",
                                  args=[world["project"].pk, world["a"].pk, world["b"].pk]))
    assert response.status_code == 409 and "altered" in response.json()["detail"]


# -- lineage ---------------------------------------------------------------------------------------------------


def test_a_row_leads_to_its_exact_labels_and_their_annotators(researcher, media):
    project = researcher.project
    item, other = PairItemFactory(project=project), PairItemFactory(project=project)
    labels = {PairLabelFactory(item=item, verdict=v, annotator=UserFactory(username=f"ann-{n}")).pk: f"ann-{n}"
              for n, v in enumerate(("B", "B", "A"))}
    PairLabelFactory(item=other, verdict="A")
    snapshot = snapshot_create(project=project, name="lineage")
    rows = list(snapshot_rows(snapshot=snapshot))
    lineage = snapshot.manifest["lineage"]
    assert len(lineage) == len(rows) == snapshot.rows == 2
    index = next(i for i, entry in enumerate(lineage) if entry["item"] == item.pk)
    entry, row = lineage[index], rows[index]
    assert entry["by"] == "human"
    assert sorted(entry["labels"]) == sorted(labels)  # exactly this item's labels, no other's
    found = PairLabel.objects.filter(pk__in=entry["labels"]).select_related("annotator")
    assert {label.pk: label.annotator.username for label in found} == labels
    # The row's chosen reply is the completion the lineage names, as the majority (B) says.
    assert (entry["chosen"], entry["rejected"]) == (item.completion_b_id, item.completion_a_id)
    assert row["chosen"][0]["content"] == item.completion_b.text
    assert entry["prompt"] == item.prompt_id


def test_an_ai_row_leads_to_its_judgments_judge_and_version(researcher, media):
    project = researcher.project
    item = PairItemFactory(project=project)
    endpoint = ModelEndpoint.objects.create(name="lineage-endpoint", path="unused")
    judges = [Judge.objects.create(name=f"judge-{n}", endpoint=endpoint, template_version=n + 2) for n in range(2)]
    made = {AIJudgment.objects.create(judge=judge, item=item, template_version=judge.template_version,
                                      verdict="A", probability=0.8).pk: (judge.name, judge.template_version)
            for judge in judges}
    snapshot = snapshot_create(project=project, name="ai", source="ai")
    (entry,) = snapshot.manifest["lineage"]
    assert entry["by"] == "ai" and sorted(entry["judgments"]) == sorted(made)
    found = AIJudgment.objects.filter(pk__in=entry["judgments"]).select_related("judge")
    assert {j.pk: (j.judge.name, j.template_version) for j in found} == made
    assert json.loads(snapshot_path(snapshot=snapshot).read_text())["chosen"][0]["content"] == item.completion_a.text


def test_a_lineage_kept_in_a_file_beside_the_snapshot_explains_the_diff_too(monkeypatch, around_an_adjudication):
    """A large snapshot's lineage is a JSON Lines file the manifest names (here: past one row)."""
    world = around_an_adjudication
    monkeypatch.setattr("training.services.LINEAGE_INLINE_ROWS", 1)
    pair_item_adjudicate(item=world["settled"], reviewer=UserFactory(username="reviewer-sam"), verdict="A")
    c = snapshot_create(project=world["project"], name="large")
    assert c.manifest.get("lineage_file") and not c.manifest.get("lineage")
    diff = snapshot_diff(a=world["b"], b=c)
    assert diff["counts"]["flipped"] == 1
    assert diff["flipped"][0]["item"] == world["settled"].pk
    assert diff["flipped"][0]["reasons"][0]["by"] == "reviewer-sam"
    lineage_path = snapshot_path(snapshot=c).parent / c.manifest["lineage_file"].rsplit("/", 1)[-1]
    assert oct(lineage_path.stat().st_mode & 0o777) == oct(0o444)
