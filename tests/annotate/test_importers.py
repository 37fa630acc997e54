import json

import pytest

from annotate.importers import ImportError_, hh_transcript_split, items_import
from annotate.models import Completion, PairItem, Prompt
from tests.conftest import SHARED_DATA
from tests.factories import ProjectFactory

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
    with pytest.raises(ImportError_) as excinfo:
        items_import(project=project, path=path)
    assert (excinfo.value.path, excinfo.value.line, excinfo.value.field) == ("broken.jsonl", 3, "response_b")
    assert "broken.jsonl, line 3" in str(excinfo.value)
    assert not Prompt.objects.filter(project=project).exists()
    assert not Completion.objects.exists()


def test_bad_json_and_bad_role_are_reported(tmp_path):
    project = ProjectFactory()
    with pytest.raises(ImportError_) as excinfo:
        items_import(project=project, path=write_jsonl(tmp_path / "a.jsonl", ['{"prompt": ']))
    assert excinfo.value.line == 1 and excinfo.value.field == "(json)"
    bad_role = {"prompt": [{"role": "robot", "content": "x"}], "response_a": "a", "response_b": "b"}
    with pytest.raises(ImportError_) as excinfo:
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
    result = items_import(project=project, path=source)
    assert (result.format, result.items) == ("hh-rlhf", 2000)
    # SOURCE.md: 9 pairs whose transcripts differ before the final turn; they are kept and flagged.
    assert Prompt.objects.filter(project=project, metadata__context_differs=True).count() == 9
    row = json.loads(lines[0])
    item = PairItem.objects.filter(project=project).order_by("id").first()
    # The shared conversation ends with the human's turn; the replies are the two final turns.
    assert item.prompt.messages[-1]["role"] == "user"
    final_chosen = hh_transcript_split(row["chosen"])[-1]["content"]
    assert final_chosen in (item.completion_a.text, item.completion_b.text)


def test_nul_characters_are_dropped(tmp_path):
    """PostgreSQL text cannot hold NUL: it is removed, not left to fail the whole import."""
    project = ProjectFactory()
    items_import(project=project, path=write_jsonl(tmp_path / "nul.jsonl", [
        {"prompt": "q\u0000?", "response_a": "a\u0000b", "response_b": "c"}]))
    item = PairItem.objects.get(project=project)
    assert (item.prompt.messages[0]["content"], item.completion_a.text) == ("q?", "ab")
