import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from annotate.importers import items_import
from annotate.models import Completion, PairItem, Project, Prompt
from prefdata.readers import ReadError, ReadOptions, format_detect, formats_for, hh_transcript_split, read
from tests.conftest import SHARED_DATA
from tests.factories import PairItemFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_own_format_imports_pairs_with_models(tmp_path):
    project = ProjectFactory()
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "Hi?", "response_a": "Hello!", "response_b": "Go away.", "model_a": "m1", "model_b": "m2"},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
         "response_a": "4", "response_b": "5"},
    ])
    result = items_import(project=project, path=path)
    assert (result.format, result.items) == ("pairs", 2)
    first, second = PairItem.objects.filter(project=project).order_by("id")
    assert first.prompt.messages == [{"role": "user", "content": "Hi?"}]
    assert (first.completion_a.text, first.completion_a.model_name) == ("Hello!", "m1")
    assert second.prompt.messages[0]["role"] == "system"


def test_trl_preference_keeps_which_was_chosen(tmp_path):
    project = ProjectFactory()
    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [{"role": "assistant", "content": f"good{i}"}],
             "rejected": [{"role": "assistant", "content": f"bad{i}"}]} for i in range(20)]
    items_import(project=project, path=write_jsonl(tmp_path / "trl.jsonl", rows))
    sides = set()
    for item in PairItem.objects.filter(project=project).select_related("prompt", "completion_a", "completion_b"):
        preferred = item.prompt.metadata["source_preference"]
        sides.add(preferred)
        chosen = item.completion_a if preferred == "A" else item.completion_b
        assert chosen.text.startswith("good")
    assert sides == {"A", "B"}, "the preferred reply must not always be stored on the same side"


def test_bad_line_names_file_line_and_field_and_stores_nothing(tmp_path):
    project = ProjectFactory()
    path = write_jsonl(tmp_path / "broken.jsonl", [
        {"prompt": "ok", "response_a": "a", "response_b": "b"},
        {"prompt": "ok", "response_a": "a", "response_b": "b"},
        {"prompt": "missing b", "response_a": "a"},
    ])
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=path)
    assert (excinfo.value.path, excinfo.value.line, excinfo.value.field) == ("broken.jsonl", 3, "response_b")
    assert "broken.jsonl, line 3" in str(excinfo.value)
    assert not Prompt.objects.filter(project=project).exists()
    assert not Completion.objects.exists()


def test_bad_json_and_bad_role_are_reported(tmp_path):
    project = ProjectFactory()
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=write_jsonl(tmp_path / "a.jsonl", ['{"prompt": ']))
    assert excinfo.value.line == 1 and excinfo.value.field == "(json)"
    bad_role = {"prompt": [{"role": "robot", "content": "x"}], "response_a": "a", "response_b": "b"}
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=write_jsonl(tmp_path / "b.jsonl", [bad_role]))
    assert excinfo.value.field == "prompt" and "robot" in str(excinfo.value)


def test_hh_transcript_split():
    text = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: How are you?\n\nAssistant: Fine."
    assert hh_transcript_split(text) == [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine."}]


@pytest.mark.skipif(not (SHARED_DATA / "hh-rlhf-helpful-base").exists(), reason="shared hh-rlhf sample absent")
def test_real_hh_rlhf_sample_imports(tmp_path):
    source = SHARED_DATA / "hh-rlhf-helpful-base" / "helpful-base_test_first2000.jsonl"
    lines = source.read_text().splitlines()
    project = ProjectFactory()
    # SOURCE.md: 9 pairs whose transcripts differ before the final turn (the first on line 169), and one
    # (line 722) whose chosen and rejected are the same: refused by default, naming the line.
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=source)
    assert (excinfo.value.line, excinfo.value.field) == (169, "rejected")
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=source, options=ReadOptions(context_differs="keep"))
    assert (excinfo.value.line, excinfo.value.field) == (722, "rejected")
    assert "the same text as chosen" in str(excinfo.value)
    assert not Prompt.objects.filter(project=project).exists()
    # Kept flagged and left out, when asked for; the result counts both.
    result = items_import(project=project, path=source, options=ReadOptions(context_differs="keep", identical="skip"))
    assert (result.format, result.rows, result.items) == ("hh-rlhf", 2000, 1999)
    assert (result.context_differs, result.identical_skipped, result.ignored_fields) == (9, 1, {})
    assert Prompt.objects.filter(project=project, metadata__context_differs=True).count() == 9
    row = json.loads(lines[0])
    item = PairItem.objects.filter(project=project).order_by("id").first()
    # The shared conversation ends with the human's turn; the replies are the two final turns.
    assert item.prompt.messages[-1]["role"] == "user"
    final_chosen = hh_transcript_split(row["chosen"])[-1]["content"]
    assert final_chosen in (item.completion_a.text, item.completion_b.text)


def test_hh_rlhf_errors(tmp_path):
    project = ProjectFactory()
    good = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away"}
    path = write_jsonl(tmp_path / "hh.jsonl", [good, {**good, "rejected": "no transcript"}])
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=path)
    assert (excinfo.value.line, excinfo.value.field) == (2, "rejected")
    assert not Prompt.objects.filter(project=project).exists()


@pytest.mark.parametrize(("row", "field", "path"), [
    ({"prompt": "q", "response_a": "a\u0000b", "response_b": "c"}, "response_a", "response_a"),
    ({"prompt": [{"role": "user", "content": "q\u0000?"}], "response_a": "a", "response_b": "c"}, "prompt",
     "prompt[0].content"),
    ({"prompt": "q", "response_a": "a", "response_b": "c", "metadata": {"note": ["x", "y\u0000"]}}, "metadata",
     "metadata.note[1]"),
])
def test_nul_characters_are_refused_naming_the_field(tmp_path, row, field, path):
    """The stored text would not be what the file said (PostgreSQL text cannot hold NUL): refused."""
    project = ProjectFactory()
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=write_jsonl(tmp_path / "nul.jsonl", [pair_rows(1)[0], row]))
    assert (excinfo.value.line, excinfo.value.field) == (2, field)
    assert f"{path}: holds a NUL character" in str(excinfo.value)
    assert not Prompt.objects.filter(project=project).exists()


# -- streaming, chunks, progress, atomicity ----------------------------------------------------------------

DATA = Path(__file__).parent / "data"


def pair_rows(n, start=0):
    return [{"prompt": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}", "model_a": "m1", "model_b": "m2"}
            for i in range(start, start + n)]


def test_chunks_are_stored_as_they_go_and_progress_reports_rows(tmp_path):
    project = ProjectFactory()
    seen = []

    def progress(rows):
        # Called between chunks, in the import's transaction: the rows stored so far are visible to it.
        seen.append((rows, PairItem.objects.filter(project=project).count()))

    result = items_import(project=project, path=write_jsonl(tmp_path / "p.jsonl", pair_rows(5)), chunk_size=2,
                          progress=progress)
    assert (result.rows, result.items) == (5, 5)
    assert seen == [(2, 2), (4, 4), (5, 5)]
    texts = list(PairItem.objects.filter(project=project).order_by("id").values_list("completion_a__text", flat=True))
    assert texts == [f"a{i}" for i in range(5)]


def test_error_in_a_later_chunk_rolls_back_the_earlier_ones(tmp_path):
    project = ProjectFactory()
    rows = [*pair_rows(12), {"prompt": "q", "response_a": "a"}]
    stored = []
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=write_jsonl(tmp_path / "late.jsonl", rows), chunk_size=3,
                     progress=lambda rows: stored.append(PairItem.objects.filter(project=project).count()))
    assert (excinfo.value.line, excinfo.value.field) == (13, "response_b")
    # On PostgreSQL the two chunks before the bad one are still being encoded and stored when it is read.
    assert stored[:2] == [3, 6], "chunks were stored before the error"
    assert not Prompt.objects.filter(project=project).exists()
    assert not Completion.objects.filter(prompt__project=project).exists()
    assert not PairItem.objects.filter(project=project).exists()


def test_an_exception_from_progress_cancels_the_import(tmp_path):
    """A task may cancel an import by raising from its progress callback: the chunks stored so far go."""
    project = ProjectFactory()
    stored = []

    def progress(rows):
        stored.append(PairItem.objects.filter(project=project).count())
        if rows >= 4:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        items_import(project=project, path=write_jsonl(tmp_path / "p.jsonl", pair_rows(9)), chunk_size=2,
                     progress=progress)
    assert stored == [2, 4]
    assert not Prompt.objects.filter(project=project).exists()
    assert not PairItem.objects.filter(project=project).exists()


postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY path runs on PostgreSQL")


@postgres_only
def test_postgres_writes_with_copy_not_the_orm(tmp_path):
    project = ProjectFactory()
    path = write_jsonl(tmp_path / "p.jsonl", pair_rows(50))
    with CaptureQueriesContext(connection) as queries:
        items_import(project=project, path=path)
    assert PairItem.objects.filter(project=project).count() == 50
    assert not [q for q in queries.captured_queries if "INSERT" in q["sql"]]


@postgres_only
@pytest.mark.parametrize("rows", [3, 9])  # the error comes out at the end, or while later chunks are read
def test_postgres_database_error_in_copy_is_djangos_and_leaves_the_transaction_usable(tmp_path, rows):
    ghost = Project(pk=10**9, name="never saved")
    with pytest.raises(IntegrityError, match="foreign key"):
        items_import(project=ghost, path=write_jsonl(tmp_path / "p.jsonl", pair_rows(rows)), chunk_size=2)
    assert not Prompt.objects.filter(project_id=ghost.pk).exists()  # the transaction is still usable


def test_text_that_cannot_be_encoded_is_reported_with_its_line_while_earlier_chunks_are_stored(tmp_path,
                                                                                                 monkeypatch):
    """Text the database cannot take (a lone surrogate) shows up only when a chunk is encoded for the
    database, which on PostgreSQL happens while the chunk before is being stored by the worker thread."""
    import dataclasses

    import annotate.importers as importers
    from prefdata import readers

    parse_pairs = readers.FORMATS["pairs"].parse

    def parse_with_a_surrogate(row):
        pair = parse_pairs(row)
        if row["prompt"] == "q6":
            pair.response_b = "bad \ud800"
        return pair

    store = importers._PostgresCopyWriter._store

    def slow_store(self, *args):
        store(self, *args)
        time.sleep(0.1)  # so that the worker is still busy with a chunk when the bad one is encoded

    monkeypatch.setitem(readers.FORMATS, "pairs", dataclasses.replace(readers.FORMATS["pairs"],
                                                                       parse=parse_with_a_surrogate))
    monkeypatch.setattr(importers._PostgresCopyWriter, "_store", slow_store)
    project = ProjectFactory()
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=write_jsonl(tmp_path / "p.jsonl", pair_rows(9)), fmt="pairs", chunk_size=2)
    assert (excinfo.value.line, excinfo.value.field) == (7, "response_b")
    # The chunk in flight was waited for before the rollback (which it would otherwise race with).
    assert not [t for t in threading.enumerate() if t.name.startswith("items-import-copy")]
    assert not Prompt.objects.filter(project=project).exists()  # nothing stored, the transaction still usable


@postgres_only
def test_postgres_foreign_keys_are_deferred_again_after_the_import(tmp_path):
    """The import checks its foreign keys chunk by chunk (SET CONSTRAINTS ... IMMEDIATE); the rest of
    the caller's transaction gets the declared deferred checking back."""
    project = ProjectFactory()
    items_import(project=project, path=write_jsonl(tmp_path / "p.jsonl", pair_rows(2)))
    with transaction.atomic():
        # Immediate checking would raise here; deferred checking waits for a commit that never comes.
        Prompt.objects.create(project_id=10**9, messages=[{"role": "user", "content": "x"}])
        transaction.set_rollback(True)
    assert PairItem.objects.filter(project=project).count() == 2


def test_reading_is_lazy(tmp_path):
    """The file is streamed: the first pair comes out before a broken line further down is read."""
    path = write_jsonl(tmp_path / "lazy.jsonl", [*pair_rows(2), '{"prompt": '])
    pairs = read(path, "pairs")
    assert next(pairs).response_a == "a0"
    assert next(pairs).response_a == "a1"
    with pytest.raises(ReadError) as excinfo:
        next(pairs)
    assert excinfo.value.line == 3


def test_stored_rows_match_what_the_orm_would_store(tmp_path):
    """On PostgreSQL the rows are written by COPY, bypassing the ORM: created_at, JSON columns and every
    default of the other fields must still be what the ORM stores."""
    project = ProjectFactory()
    rows = [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
             "response_a": "4", "response_b": "tab\there\nnewline \\ backslash \"quote\" é 😀",
             "metadata": {"nested": {"list": [1, 2.5, None, True]}, "escaped": "x\\u0000y"}}]
    items_import(project=project, path=write_jsonl(tmp_path / "orm.jsonl", rows))
    item = PairItem.objects.select_related("prompt", "completion_a", "completion_b").get(project=project)
    assert item.completion_b.text == rows[0]["response_b"]
    assert item.prompt.source == "orm.jsonl"
    # JSON is stored as JSON (not as a JSON string): key lookups work in the database.
    assert Prompt.objects.filter(project=project, messages__1__content="2+2?",
                                 metadata__nested__list__1=2.5).exists()
    assert item.prompt.metadata["escaped"] == "x\\u0000y"  # an escaped backslash, not a NUL
    reference = PairItemFactory()
    for obj, ref in ((item, reference), (item.prompt, reference.prompt), (item.completion_a, reference.completion_a)):
        assert obj.created_at is not None and abs(obj.created_at - ref.created_at) < timedelta(minutes=5)
        for f in type(obj)._meta.concrete_fields:
            if f.primary_key or f.is_relation or f.name in SET_BY_IMPORT | {"created_at"}:
                continue
            assert getattr(obj, f.attname) == getattr(ref, f.attname), f"{type(obj).__name__}.{f.name}"


# Fields the importer sets from the file (or that factories fill with made-up values).
SET_BY_IMPORT = {"messages", "source", "metadata", "text", "model_name"}


def test_lone_surrogate_is_reported_with_its_line(tmp_path):
    project = ProjectFactory()
    path = tmp_path / "surrogate.jsonl"
    path.write_text(json.dumps(pair_rows(1)[0]) + "\n" + '{"prompt": "bad \\ud800", "response_a": "a", '
                    '"response_b": "b"}\n')
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=path)
    assert (excinfo.value.line, excinfo.value.field) == (2, "prompt")
    assert not Prompt.objects.filter(project=project).exists()


def test_empty_file_is_an_error(tmp_path):
    project = ProjectFactory()
    (tmp_path / "empty.jsonl").write_text("\n\n")
    for fmt in ("auto", "pairs"):
        with pytest.raises(ReadError, match="no rows"):
            items_import(project=project, path=tmp_path / "empty.jsonl", fmt=fmt)


def test_every_format_is_listed_for_the_form_and_the_command():
    assert set(formats_for("pairs")) == {"auto", "pairs", "csv", "trl-preference", "hh-rlhf", "arena", "oasst",
                                         "label-studio"}


# -- formats -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fmt", "items"), [
    ("pairs.csv", "csv", 3), ("label_studio.json", "label-studio", 3), ("arena.jsonl", "arena", 3),
    ("oasst.jsonl", "oasst", 4),
])
def test_formats_are_detected(name, fmt, items):
    project = ProjectFactory()
    assert format_detect(DATA / name) == fmt
    result = items_import(project=project, path=DATA / name, options=ReadOptions(context_differs="keep"))
    assert (result.format, result.items) == (fmt, items)
    assert PairItem.objects.filter(project=project).count() == items


def test_csv_rows_models_and_extra_columns():
    project = ProjectFactory()
    items_import(project=project, path=DATA / "pairs.csv", fmt="csv")
    first, second, third = PairItem.objects.filter(project=project).order_by("id").select_related(
        "prompt", "completion_a", "completion_b")
    assert first.prompt.messages == [{"role": "user", "content": "What is 2+2?"}]
    assert (first.completion_a.model_name, first.completion_b.model_name) == ("m1", "m2")
    assert first.prompt.metadata == {"source_row": "r1"}
    assert second.prompt.messages[0]["content"] == "Write a haiku\nabout rain"
    assert second.completion_b.text == 'It rains, "a lot".'
    assert (third.completion_a.model_name, third.prompt.metadata) == ("", {})


def test_csv_errors_name_line_and_column(tmp_path):
    project = ProjectFactory()
    path = tmp_path / "bad.csv"
    # The quoted cell spans lines 2-3, so the bad record starts on line 4.
    path.write_text('prompt,response_a,response_b\n"multi\nline",a,b\nq,,b\n')
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=path)
    assert (excinfo.value.line, excinfo.value.field) == (4, "response_a")
    path.write_text("prompt,response_a\nq,a\n")
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=path, fmt="csv")
    assert (excinfo.value.line, excinfo.value.field) == (1, "response_b")
    path.write_text("prompt,response_a,response_b\nq,a,b\nq,a\n")
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=path, fmt="csv")
    assert (excinfo.value.line, excinfo.value.field) == (3, "(row)")
    assert not Prompt.objects.filter(project=project).exists()


def test_csv_header_names_can_be_mapped(tmp_path):
    project = ProjectFactory()
    path = tmp_path / "mapped.csv"
    path.write_text("question,good,bad\nWhy?,Because.,No.\n")
    result = items_import(project=project, path=path,
                          field_map={"prompt": "question", "response_a": "good", "response_b": "bad"})
    assert result.format == "csv"
    item = PairItem.objects.get(project=project)
    assert (item.prompt.messages[0]["content"], item.completion_a.text) == ("Why?", "Because.")


def test_label_studio_keeps_the_selected_side():
    project = ProjectFactory()
    items_import(project=project, path=DATA / "label_studio.json")
    items = list(PairItem.objects.filter(project=project).order_by("id").select_related(
        "prompt", "completion_a", "completion_b"))
    assert [(i.completion_a.text, i.completion_b.text) for i in items] == [
        ("Jupiter.", "Mars."), ("bye", "Hi!"), ("one", "two")]
    assert [i.prompt.metadata.get("source_preference") for i in items] == ["A", "B", None]
    assert [i.prompt.metadata["source_id"] for i in items] == [11, 12, 13]


def test_label_studio_data_keys_vary(tmp_path):
    project = ProjectFactory()
    tasks = [
        {"id": 1, "data": {"question": "Q1", "response_a": "x", "response_b": "y"},
         "annotations": [{"result": [{"type": "pairwise", "value": {"selected": "right"}}]},
                         {"result": [{"type": "pairwise", "value": {"selected": "right"}}]}]},
        {"id": 2, "data": {"text": "Q2", "first": "p", "second": "q"},
         "annotations": [{"result": [{"type": "pairwise", "value": {"selected": "left"},
                                      "to_name": ["first", "second"]}]},
                         {"result": [{"type": "pairwise", "value": {"selected": "right"},
                                      "to_name": ["first", "second"]}]},
                         {"was_cancelled": True, "result": [{"type": "pairwise", "value": {"selected": "right"}}]}]},
    ]
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(tasks))
    items_import(project=project, path=path)
    first, second = PairItem.objects.filter(project=project).order_by("id").select_related(
        "prompt", "completion_a", "completion_b")
    assert (first.prompt.messages[0]["content"], first.completion_a.text, first.completion_b.text) == ("Q1", "x", "y")
    assert first.prompt.metadata["source_preference"] == "B"
    # The Pairwise tag's toName names the data keys; two annotators disagree: no single preference.
    assert (second.completion_a.text, second.completion_b.text) == ("p", "q")
    assert "source_preference" not in second.prompt.metadata
    assert second.prompt.metadata["source_preferences"] == ["A", "B"]


def test_label_studio_field_map_and_left_right_follow_to_name(tmp_path):
    project = ProjectFactory()
    # "left" is the first object named by toName: here the data key mapped to B.
    tasks = [{"id": 5, "data": {"ask": "Q", "one": "p", "two": "q"},
              "annotations": [{"result": [{"type": "pairwise", "value": {"selected": "left"},
                                           "to_name": "two,one"}]}]}]
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(tasks))
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=path)
    assert (excinfo.value.line, excinfo.value.field) == (1, "data.prompt")
    items_import(project=project, path=path, field_map={"prompt": "ask", "response_a": "one", "response_b": "two"})
    item = PairItem.objects.select_related("prompt", "completion_a").get(project=project)
    assert (item.completion_a.text, item.prompt.metadata["source_preference"]) == ("p", "B")


def test_label_studio_errors_name_the_task(tmp_path):
    project = ProjectFactory()
    good = {"id": 1, "data": {"prompt": "Q", "answer1": "a", "answer2": "b"}, "annotations": []}
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([good, good, {"id": 3, "data": {"prompt": "Q", "answer1": "a"}}]))
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=path, chunk_size=1)
    assert (excinfo.value.path, excinfo.value.line, excinfo.value.field) == ("ls.json", 3, "data.answer2")
    assert "task 3" in str(excinfo.value)
    path.write_text(json.dumps([good, good])[:-30])  # cut short inside task 2
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=path, fmt="label-studio")
    assert (excinfo.value.line, excinfo.value.field) == (2, "(json)")
    assert not Prompt.objects.filter(project=project).exists()


def test_arena_battles():
    project = ProjectFactory()
    # A second turn: each model saw its own first reply. Refused by default, naming the line.
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=DATA / "arena.jsonl")
    assert (excinfo.value.line, excinfo.value.field) == (2, "conversation_b")
    assert "differs from conversation_a's" in str(excinfo.value)
    result = items_import(project=project, path=DATA / "arena.jsonl", options=ReadOptions(context_differs="keep"))
    assert result.context_differs == 1
    first, multi, tie = Prompt.objects.filter(project=project).order_by("id")
    item = first.pair_items.select_related("completion_a", "completion_b").get()
    assert first.messages == [{"role": "user", "content": "What is the difference between OpenCL and CUDA?"}]
    assert (item.completion_a.model_name, item.completion_b.model_name) == ("chatglm-6b", "koala-13b")
    assert item.completion_b.text == "CUDA only runs on NVIDIA GPUs."
    # Arena's own fields are kept; its moderation tags would be listed as ignored.
    assert first.metadata == {"source_preference": "B", "source_id": "q1", "language": "English", "turn": 1,
                              "source_judge": "arena_user_1", "anony": True, "source_tstamp": 1682351591.1322}
    # Kept: conversation_a's and the row flagged.
    assert [m["content"] for m in multi.messages] == ["Hi", "Hello from A", "Tell a joke"]
    assert (multi.metadata["source_preference"], multi.metadata["context_differs"]) == ("both_bad", True)
    assert tie.metadata["source_preference"] == "tie" and "context_differs" not in tie.metadata


def test_arena_errors(tmp_path):
    project = ProjectFactory()
    row = json.loads((DATA / "arena.jsonl").read_text().splitlines()[0])
    for change, field_name in (({"winner": "model_c"}, "winner"),
                               ({"conversation_b": [{"role": "user", "content": "x"}]}, "conversation_b"),
                               ({"model_a": None, "conversation_a": "x"}, "conversation_a")):
        path = write_jsonl(tmp_path / "arena.jsonl", [row, {**row, **change}])
        with pytest.raises(ReadError) as excinfo:
            items_import(project=project, path=path)
        assert (excinfo.value.line, excinfo.value.field) == (2, field_name)
    assert not Prompt.objects.filter(project=project).exists()


def test_oasst_ranked_siblings_become_pairs():
    project = ProjectFactory()
    result = items_import(project=project, path=DATA / "oasst.jsonl")
    assert (result.rows, result.items) == (2, 4)
    by_texts = {}
    for item in PairItem.objects.filter(project=project).select_related("prompt", "completion_a", "completion_b"):
        preferred = item.prompt.metadata["source_preference"]
        better, worse = ((item.completion_a, item.completion_b) if preferred == "A"
                         else (item.completion_b, item.completion_a))
        by_texts[(better.text, worse.text)] = item
    # Rank 0 is best; unranked and deleted replies make no pair.
    assert set(by_texts) == {
        ("Put it in boiling water for 8 to 10 minutes.", "Boil it for 9 minutes."),
        ("Put it in boiling water for 8 to 10 minutes.", "Eggs cannot be boiled."),
        ("Boil it for 9 minutes.", "Eggs cannot be boiled."),
        ("About 6 minutes.", "An hour."),
    }
    nested = by_texts[("About 6 minutes.", "An hour.")]
    assert nested.prompt.messages == [
        {"role": "user", "content": "How do I boil an egg?"},
        {"role": "assistant", "content": "Boil it for 9 minutes."},
        {"role": "user", "content": "And a soft one?"}]
    assert {nested.completion_a.model_name, nested.completion_b.model_name} == {"", "chip20b"}
    assert nested.prompt.metadata["source_id"] == "t1"
    sides = {item.prompt.metadata["source_preference"] for item in by_texts.values()}
    assert sides == {"A", "B"}, "the better reply must not always be stored on the same side"


def test_oasst_errors(tmp_path):
    project = ProjectFactory()
    tree = json.loads((DATA / "oasst.jsonl").read_text().splitlines()[0])
    tree["prompt"]["replies"][0]["replies"][0]["role"] = "robot"
    path = write_jsonl(tmp_path / "oasst.jsonl", [tree])
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=path, fmt="oasst")
    assert (excinfo.value.line, excinfo.value.field) == (1, "prompt.replies[0].replies[0].role")
    assert not Prompt.objects.filter(project=project).exists()


@pytest.mark.skipif(not (SHARED_DATA / "oasst-en-100-trees").exists(), reason="shared oasst sample absent")
def test_real_oasst_sample_imports():
    project = ProjectFactory()
    result = items_import(project=project, path=SHARED_DATA / "oasst-en-100-trees" / "en_100_tree.jsonl")
    # 212 prompter messages have two or more ranked replies (641 ranked in all): sum of C(n, 2) = 754.
    assert (result.format, result.rows, result.items) == ("oasst", 100, 754)
    assert PairItem.objects.filter(project=project).count() == 754
    assert Prompt.objects.filter(project=project, metadata__source_preference="A").exists()
    assert Prompt.objects.filter(project=project, metadata__source_preference="B").exists()


def test_trl_string_prompt_and_implicit_prompt(tmp_path):
    project = ProjectFactory()
    rows = [
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
        {"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
         "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}]},
    ]
    result = items_import(project=project, path=write_jsonl(tmp_path / "trl.jsonl", rows))
    assert result.format == "trl-preference"
    string, implicit = Prompt.objects.filter(project=project).order_by("id")
    for prompt, content, good in ((string, "Capital of France?", "Paris."), (implicit, "Hi", "Hello!")):
        item = prompt.pair_items.select_related("completion_a", "completion_b").get()
        assert prompt.messages == [{"role": "user", "content": content}]
        chosen = item.completion_a if prompt.metadata["source_preference"] == "A" else item.completion_b
        assert chosen.text == good
    assert "context_differs" not in implicit.metadata
    bad = {"chosen": [{"role": "assistant", "content": "no prompt"}], "rejected": [{"role": "assistant",
                                                                                     "content": "x"}]}
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=write_jsonl(tmp_path / "bad.jsonl", [rows[1], bad]))
    assert (excinfo.value.line, excinfo.value.field) == (2, "chosen")
    assert Prompt.objects.filter(project=project).count() == 2
