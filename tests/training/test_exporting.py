"""The streaming preference export (training.exporting): byte for byte the in-memory path's file, the same
dropped counts and lineage, a bounded number of queries, server-side cursors on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.models.expressions import RawSQL

from annotate.models import Prompt
from judges.models import AIJudgment, Judge
from prefdata.records import PreferenceRow
from prefdata.writers import dataset_bytes
from synth.models import ModelEndpoint
from tests.factories import PairItemFactory, PairLabelFactory, ProjectFactory, PromptFactory
from training import services
from training.exporting import preference_line, preference_lines
from training.models import DatasetSnapshot
from training.services import preference_rows, snapshot_create, snapshot_path, snapshot_plan

pytestmark = pytest.mark.django_db

ODD_TEXT = 'café "quoted" back\\slash\ttab\nline \x01\x1f \x7f \u2028 \u2029 \x85 中文 😀 </script>'


def _judge():
    endpoint, _ = ModelEndpoint.objects.get_or_create(name="scripted", defaults={"path": "unused"})
    judge, _ = Judge.objects.get_or_create(name="export-judge", defaults={"endpoint": endpoint})
    return judge


def _judged(item, verdict, probability):
    version = AIJudgment.objects.filter(item=item).count() + 1  # one judgment per judge version and item
    AIJudgment.objects.create(judge=_judge(), item=item, template_version=version, verdict=verdict,
                              probability=probability)


def _labels(item, *votes):
    for verdict, strength in votes:
        PairLabelFactory(item=item, verdict=verdict, strength=strength)


@pytest.fixture
def varied_project():
    """Every rule at least once: single and several labels, ties, both-bad, levels that weighting settles,
    adjudications (with and without labels), gold items, unlabeled items, AI judgments alone, with people,
    split and tied; prompts of several messages and text that JSON must escape."""
    project = ProjectFactory()

    def item(**fields):
        return PairItemFactory(project=project, **fields)

    conversation = PromptFactory(project=project, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": ODD_TEXT},
        {"role": "assistant", "content": "ok"}, {"role": "user", "content": "and more?", "name": "bob"}])
    _labels(item(prompt=conversation, completion_a__prompt=conversation, completion_b__prompt=conversation,
                 completion_a__text=ODD_TEXT, completion_b__text=""), ("A", 3))
    numbers = PromptFactory(project=project, messages=[{"role": "user", "content": "1, 2: [3", "n": [1, 2.5, None]}])
    if connection.vendor == "postgresql":  # numbers as jsonb keeps them, not as Python writes them
        Prompt.objects.filter(pk=numbers.pk).update(messages=RawSQL(
            """'[{"role": "user", "content": "1, 2: [3", "n": [1, 2.50, 1e2, -0.0]}]'::jsonb""", []))
    _labels(item(prompt=numbers, completion_a__prompt=numbers, completion_b__prompt=numbers), ("B", None))
    _labels(item(), ("tie", None))
    _labels(item(), ("both_bad", None))
    _labels(item(), ("A", 1), ("A", 4))  # margin 2.5
    _labels(item(), ("A", 4), ("B", None), ("B", None))  # B by count, A by weight
    _labels(item(), ("A", 1), ("B", None))  # level either way
    _labels(item(), ("A", 2), ("A", 3), ("B", 4), ("tie", None))
    _labels(item(final_verdict="B", final_strength=2), ("A", 3), ("B", 1))  # adjudicated
    _labels(item(final_verdict="tie"), ("A", 3), ("B", 1))
    item(final_verdict="A")  # adjudicated with no label
    _labels(item(gold=True), ("B", 2))  # gold: dropped with a count
    item(gold=True)  # gold nobody labeled: not counted
    item()  # unlabeled
    _judged(item(), "A", 0.9)
    _judged(item(), "B", 0.123456789)
    split = item()
    _judged(split, "A", 0.8)
    _judged(split, "B", 0.3)  # level: no majority
    tied_people = item()
    _labels(tied_people, ("tie", None))
    _judged(tied_people, "A", 0.95)  # people's tie comes first with both sources
    level_people = item()
    _labels(level_people, ("A", 2), ("B", 2))
    _judged(level_people, "B", 0.2)  # people level, the judge decides
    _judged(item(), "tie", 0.5)
    _judged(item(gold=True), "A", 0.7)
    three = item()
    for verdict, probability in (("A", 0.7), ("A", 0.6), ("B", 0.2)):
        _judged(three, verdict, probability)
    return project


def _reference(project, source, weighted):
    """The in-memory path: rows, lineage and counts, and the file's bytes."""
    dropped: Counter = Counter()
    rows, lineage = preference_rows(project=project, source=source, weighted=weighted, dropped=dropped)
    return rows, lineage, dropped, dataset_bytes(rows, "jsonl")


@pytest.mark.parametrize("source", ["human", "ai", "both"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_streamed_snapshot_is_byte_for_byte_the_in_memory_one(varied_project, media, source, weighted):
    rows, lineage, dropped, body = _reference(varied_project, source, weighted)
    assert rows, "the project exports something from every source"
    snapshot = snapshot_create(project=varied_project, source=source, weighted=weighted)
    assert snapshot_path(snapshot=snapshot).read_bytes() == body
    assert snapshot.sha256 == hashlib.sha256(body).hexdigest() and snapshot.rows == len(rows)
    assert snapshot.dropped == {key: n for key, n in dropped.items() if n and key != "unlabeled"}
    assert snapshot.manifest["unlabeled"] == dropped["unlabeled"]
    assert snapshot.manifest["lineage"] == lineage


def test_the_varied_project_exercises_every_rule(varied_project, media):
    both = snapshot_create(project=varied_project, source="both")
    assert both.dropped == {"gold": 2, "no_majority": 2, "tie": 4, "both_bad": 1}
    assert {entry["by"] for entry in both.manifest["lineage"]} == {"human", "ai"}
    lines = snapshot_path(snapshot=both).read_text().split("\n")[:-1]
    margins = [json.loads(line).get("margin") for line in lines]
    assert 2.5 in margins and 0.8 in margins and 0.7531 in margins  # mean strength; |p - 0.5| * 2, rounded
    weighted = snapshot_create(project=varied_project, source="human", weighted=True)
    unweighted = snapshot_create(project=varied_project, source="human")
    assert weighted.sha256 != unweighted.sha256, "weighting settles an item the other way"


@pytest.mark.parametrize("source", ["human", "ai", "both"])
def test_a_plan_streams_and_keeps_the_first_rows(varied_project, source):
    rows, lineage, dropped, body = _reference(varied_project, source, False)
    plan = snapshot_plan(project=varied_project, source=source)
    assert plan.sha256 == hashlib.sha256(body).hexdigest() and len(plan.rows) == len(rows)
    assert plan.preview == rows[:5] and list(plan.lineage[:5]) == lineage[:5]
    assert plan.preview_lines == body.decode().split("\n")[:5]
    assert plan.dropped == {key: n for key, n in dropped.items() if n and key != "unlabeled"}
    assert plan.unlabeled == dropped["unlabeled"] and plan.body is None
    assert not DatasetSnapshot.objects.exists()


def test_a_large_plan_keeps_only_its_head(varied_project):
    PairLabelFactory.create_batch(7, item__project=varied_project, verdict="A")
    plan = snapshot_plan(project=varied_project, source="human")
    assert len(plan.rows) > 5 and len(plan.preview) == 5
    with pytest.raises(IndexError):
        plan.rows[5]
    with pytest.raises(TypeError):
        list(plan.rows)


def test_a_large_snapshot_keeps_its_lineage_in_a_file_beside_it(varied_project, media, monkeypatch):
    monkeypatch.setattr(services, "LINEAGE_INLINE_ROWS", 3)
    rows, lineage, _, body = _reference(varied_project, "both", False)
    snapshot = snapshot_create(project=varied_project, source="both")
    manifest = snapshot.manifest
    assert manifest["lineage"] is None and manifest["rows"] == len(rows) > 3
    lineage_path = settings.MEDIA_ROOT / manifest["lineage_file"]
    data = lineage_path.read_bytes()
    assert [json.loads(line) for line in data.splitlines()] == lineage
    assert hashlib.sha256(data).hexdigest() == manifest["lineage_sha256"]
    assert sorted(p.name for p in lineage_path.parent.iterdir()) == sorted(
        [f"{snapshot.sha256}.jsonl", lineage_path.name]), "no partial file left behind"


def test_a_refused_snapshot_leaves_no_file(varied_project, media):
    first = snapshot_create(project=varied_project, source="human")
    with pytest.raises(services.SnapshotIdentical):
        snapshot_create(project=varied_project, source="human", allow_duplicate=False)
    assert [p.name for p in snapshot_path(snapshot=first).parent.iterdir()] == [f"{first.sha256}.jsonl"]


@pytest.mark.parametrize("margin", [None, 3.0, 2.5, 0.7531, 1e-05, 123456789.0, math.nan, math.inf])
def test_a_line_is_json_dumps_of_the_row(margin):
    messages = [{"role": "user", "content": ODD_TEXT, "n": [1, 2.5, None, True]}]
    row = PreferenceRow(prompt=messages, chosen=[{"role": "assistant", "content": ODD_TEXT}],
                        rejected=[{"role": "assistant", "content": "\\u0000 \0"}], margin=margin).to_dict()
    assert preference_line(messages, ODD_TEXT, "\\u0000 \0", margin) == dataset_bytes([row], "jsonl").decode()


def test_the_export_queries_do_not_grow_with_the_rows(varied_project, django_assert_max_num_queries):
    def stream() -> int:
        # gold count, items, items with a generated reply, labels, judgments: chunks of 2 rows, whatever the
        # number of rows
        with transaction.atomic(), django_assert_max_num_queries(5):
            return len(list(preference_lines(project=varied_project, source="both", dropped=Counter(),
                                             chunk_size=2)))

    before = stream()
    for _ in range(12):
        item = PairItemFactory(project=varied_project)
        _labels(item, ("A", 2), ("B", 3), ("B", None))
        _judged(item, "A", 0.6)
    assert stream() == before + 12


@pytest.mark.skipif(connection.vendor != "postgresql", reason="server-side cursors are PostgreSQL's")
def test_on_postgresql_the_rows_come_through_server_side_cursors(varied_project):
    with transaction.atomic():
        lines = preference_lines(project=varied_project, source="both", chunk_size=2)
        next(lines)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_cursors WHERE NOT is_holdable")
            open_cursors = cursor.fetchone()[0]
        lines.close()
    assert open_cursors == 3, "items, labels and judgments each stream from a cursor of their own"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="rows are read ahead on PostgreSQL only")
def test_rows_read_ahead_keep_their_order_pass_on_an_error_and_leave_no_reader_behind():
    import threading

    from training.exporting import _read_ahead

    def readers():
        return [t for t in threading.enumerate() if t.name == "export-read-ahead"]

    assert list(_read_ahead(iter(range(23)), size=4)) == list(range(23))

    def failing():
        yield from range(10)
        raise RuntimeError("the server went away")

    with pytest.raises(RuntimeError, match="went away"):
        list(_read_ahead(failing(), size=3))
    closed = _read_ahead(iter(range(1000)), size=2)
    assert [next(closed) for _ in range(5)] == [0, 1, 2, 3, 4]
    closed.close()  # the export stopped early: the reader stops too, and the connection is its thread's again
    assert readers() == [] and not connection.allow_thread_sharing
