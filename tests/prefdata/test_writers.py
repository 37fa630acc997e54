"""Export writers: the JSON Lines bytes a snapshot's sha256 is taken of, and the registry of formats."""

import json

import pytest

from prefdata.records import PreferenceRow, StepwiseRow, UnpairedRow
from prefdata.writers import EXPORT_FORMATS, dataset_bytes, jsonl_bytes, prm800k_row, rows_encode


def test_jsonl_bytes_are_json_dumps_per_row():
    rows = [{"prompt": [{"role": "user", "content": "Café? 😀 \"q\"\n"}], "chosen": "ü", "rejected": "\t",
             "margin": 0.25}, {"prompt": "x", "completion": "y", "label": False}]
    expected = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    assert jsonl_bytes(rows) == dataset_bytes(rows, "jsonl") == expected
    assert dataset_bytes([]) == b""


def test_rows_encode_checks_the_record_kind_of_the_format():
    row = PreferenceRow("p", "c", "r", margin=0.5)
    assert rows_encode("preference", [row]) == [{"prompt": "p", "chosen": "c", "rejected": "r", "margin": 0.5}]
    assert rows_encode("stepwise", [StepwiseRow("p", ["a"], [True])]) == [
        {"prompt": "p", "completions": ["a"], "labels": [True]}]
    assert rows_encode("outcome", [UnpairedRow("p", "c", False)])[0]["label"] is False
    with pytest.raises(TypeError, match="a stepwise export writes StepwiseRow rows, not PreferenceRow"):
        rows_encode("stepwise", [row])
    assert {f.items for f in EXPORT_FORMATS.values()} == {"pairs", "steps"}


def test_prm800k_row_keeps_every_rating_up_to_the_last_rated_step():
    row = prm800k_row(problem="6 * 7?", steps=["a", "b", "c"], ratings=[1, -1, None], labeler=7, source="human",
                      source_name="", finish_reason="gave_up", outcome="", flags=[1], total_time=900)
    assert [s["completions"][0] for s in row["label"]["steps"]] == [
        {"text": "a", "rating": 1, "flagged": False}, {"text": "b", "rating": -1, "flagged": True}]
    assert [s["chosen_completion"] for s in row["label"]["steps"]] == [0, None]
    assert row["label"]["finish_reason"] == "give_up", "PRM800K's spelling"
    assert row["question"]["pre_generated_steps"] == ["a", "b", "c"] and row["outcome"] is None
