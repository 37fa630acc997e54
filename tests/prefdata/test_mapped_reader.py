"""Files of no known format read through a column mapping: JSON Lines, JSON arrays, CSV and Parquet to pairs
and steps, gold verdicts through a value map, and the preview of the first rows with its errors."""

import csv
import json
from pathlib import Path

import pytest

from prefdata.readers import MAPPED, ColumnMapping, MappingError, ReadError, ReadOptions, RowCounter, preview, read
from prefdata.readers.mapped import column_value, container_detect

LLMBAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "external" / "llmbar" / "LLMBar_Natural.jsonl"
LLMBAR_MAP = {"columns": {"prompt": "input", "response_a": "output_1", "response_b": "output_2", "gold": "label"},
              "gold_values": {"1": "A", "2": "B"}}
ROWS = [{"input": "Name a colour.", "output_1": "Blue.", "output_2": "Seven.", "label": 1},
        {"input": "Add 2 and 2.", "output_1": "5", "output_2": "4", "label": 2},
        {"input": "Say hi.", "output_1": "hi", "output_2": "Hello!", "label": "tie"}]
TIE_MAP = {**LLMBAR_MAP, "gold_values": {"1": "A", "2": "B", "tie": "tie"}}


def jsonl(tmp_path, rows, name="rows.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_an_llmbar_shaped_file_is_read_as_pairs_with_gold_verdicts(tmp_path):
    counter = RowCounter()
    pairs = list(read(jsonl(tmp_path, ROWS), MAPPED, kind="pairs", mapping=TIE_MAP, counter=counter))
    assert [p.prompt[-1]["content"] for p in pairs] == ["Name a colour.", "Add 2 and 2.", "Say hi."]
    assert [(p.response_a, p.response_b) for p in pairs] == [("Blue.", "Seven."), ("5", "4"), ("hi", "Hello!")]
    assert [p.metadata["source_preference"] for p in pairs] == ["A", "B", "tie"]
    assert [p.line for p in pairs] == [1, 2, 3] and counter.rows == 3 and counter.ignored == {}


@pytest.mark.skipif(not LLMBAR.exists(), reason="the LLMBar sample is not in ../shared")
def test_the_real_llmbar_sample():
    pairs = list(read(LLMBAR, MAPPED, kind="pairs", mapping=LLMBAR_MAP))
    labels = [json.loads(line)["label"] for line in LLMBAR.read_text().splitlines()]
    assert len(pairs) == 100
    assert [p.metadata["source_preference"] for p in pairs] == ["A" if v == 1 else "B" for v in labels]
    shown = preview(LLMBAR, kind="pairs")
    assert shown.detected_format is None and shown.columns == ["input", "output_1", "output_2", "label"]
    assert shown.suggested == LLMBAR_MAP["columns"] and shown.values["label"] == ["1", "2"]


def test_a_gold_value_that_maps_to_nothing_is_refused_with_line_and_field(tmp_path):
    with pytest.raises(ReadError) as err:
        list(read(jsonl(tmp_path, ROWS), MAPPED, kind="pairs", mapping=LLMBAR_MAP))
    assert (err.value.line, err.value.field) == (3, "label") and "'tie' maps to no verdict" in str(err.value)
    shown = preview(jsonl(tmp_path, ROWS), kind="pairs", mapping=LLMBAR_MAP)
    assert [(e["line"], e["field"]) for e in shown.errors] == [(3, "label")]


def test_without_a_value_map_the_gold_column_must_hold_verdicts(tmp_path):
    rows = [{**r, "label": v} for r, v in zip(ROWS, ["a", "B", "tie"], strict=True)]
    mapping = {"columns": LLMBAR_MAP["columns"]}
    assert [p.metadata["source_preference"] for p in read(jsonl(tmp_path, rows), MAPPED, kind="pairs",
                                                           mapping=mapping)] == ["A", "B", "tie"]


def test_a_mapping_is_checked_before_reading():
    with pytest.raises(MappingError) as err:
        ColumnMapping.from_dict({"columns": {"prompt": "input", "response_a": "x"}}, kind="pairs")
    assert err.value.field == "response_b" and "not mapped" in str(err.value)
    with pytest.raises(MappingError, match="not one of"):
        ColumnMapping.from_dict({**LLMBAR_MAP, "gold_values": {"1": "left"}}, kind="pairs")
    with pytest.raises(MappingError, match="not a field of pairs"):
        ColumnMapping.from_dict({"columns": {**LLMBAR_MAP["columns"], "steps": "x"}}, kind="pairs")


def test_a_column_not_in_the_file_is_named_by_the_preview(tmp_path):
    mapping = {"columns": {**LLMBAR_MAP["columns"], "response_b": "output_3"}}
    shown = preview(jsonl(tmp_path, ROWS), kind="pairs", mapping=mapping)
    assert shown.errors[0]["field"] == "output_3" and "not in the file" in shown.errors[0]["message"]
    assert shown.rows and shown.columns == ["input", "output_1", "output_2", "label"]


def test_csv_is_mapped_with_its_line_numbers(tmp_path):
    path = tmp_path / "pairs.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["question", "good", "bad", "winner"])
        writer.writerow(["Two\nlines", "x", "y", "0"])
        writer.writerow(["q2", "a", "b", "1"])
        writer.writerow(["q3", "a", "b", "2"])
    mapping = {"columns": {"prompt": "question", "response_a": "good", "response_b": "bad", "gold": "winner"},
               "gold_values": {"0": "A", "1": "B"}}
    assert container_detect(path) == "csv"
    with pytest.raises(ReadError) as err:
        list(read(path, MAPPED, kind="pairs", mapping=mapping))
    assert (err.value.line, err.value.field) == (5, "winner")  # the first record spans lines 2 and 3
    mapping["gold_values"]["2"] = "tie"
    pairs = list(read(path, MAPPED, kind="pairs", mapping=mapping))
    assert [p.metadata["source_preference"] for p in pairs] == ["A", "B", "tie"]
    assert pairs[0].prompt[0]["content"] == "Two\nlines" and [p.line for p in pairs] == [2, 4, 5]


def test_parquet_is_read_by_batches_and_the_mapped_columns_only(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    n = 2500  # more than a batch
    table = pa.table({"input": [f"q{i}" for i in range(n)], "output_1": ["a"] * n, "output_2": ["b"] * n,
                      "label": [1 + i % 2 for i in range(n)], "unused": ["z" * 10] * n})
    path = tmp_path / "pairs.parquet"
    pq.write_table(table, path, row_group_size=1000)
    assert container_detect(path) == "parquet"
    counter = RowCounter()
    pairs = list(read(path, MAPPED, kind="pairs", mapping=LLMBAR_MAP, counter=counter))
    assert len(pairs) == n and pairs[-1].line == n and pairs[-1].prompt[0]["content"] == f"q{n - 1}"
    assert [p.metadata["source_preference"] for p in pairs[:2]] == ["A", "B"]
    assert counter.ignored == {}  # "unused" was never read
    shown = preview(path, kind="pairs")
    assert shown.container == "parquet" and len(shown.rows) == 20 and "unused" in shown.columns


def test_parquet_texts_are_held_to_the_field_limit(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "long.parquet"
    pq.write_table(pa.table({"input": ["q", "q"], "output_1": ["a", "x" * 300], "output_2": ["b", "c"]}), path)
    mapping = {"columns": {"prompt": "input", "response_a": "output_1", "response_b": "output_2"}}
    with pytest.raises(ReadError) as err:
        list(read(path, MAPPED, kind="pairs", mapping=mapping, options=ReadOptions(max_field_bytes=100)))
    assert (err.value.line, err.value.field) == (2, "output_1")


def test_dotted_paths_reach_into_nested_json(tmp_path):
    rows = [{"prompt": "q", "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
             "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]}]
    mapping = {"columns": {"prompt": "prompt", "response_a": "chosen.1.content", "response_b": "rejected.-1.content"}}
    [pair] = read(jsonl(tmp_path, rows), MAPPED, kind="pairs", mapping=mapping)
    assert (pair.response_a, pair.response_b) == ("good", "bad")
    assert column_value({"a.b": 1, "a": {"b": 2}}, "a.b") == 1  # a column named with a dot wins
    with pytest.raises(KeyError):
        column_value(rows[0], "chosen.5.content")


def test_a_json_array_of_solutions_maps_to_steps_split_or_listed(tmp_path):
    path = tmp_path / "solutions.json"
    path.write_text(json.dumps([
        {"problem": "2+2?", "solution": "Two and two.\n\nIs four.", "labels": [1, -1], "answer": 4},
        {"problem": "3+3?", "solution": ["Three and three.", "Is six."], "labels": None, "answer": 6},
    ]))
    mapping = {"columns": {"prompt": "problem", "steps": "solution", "ratings": "labels",
                           "reference_answer": "answer"}, "split": "blank_lines"}
    first, second = read(path, MAPPED, kind="steps", mapping=mapping)
    assert first.steps == ["Two and two.", "Is four."] and first.label.ratings == [1, -1]
    assert first.label.finish_reason == "found_error" and first.reference_answer == "4"
    assert second.steps == ["Three and three.", "Is six."] and second.label is None
    path.write_text(json.dumps([{"problem": "p", "solution": "a\n\nb", "labels": [1]}]))
    with pytest.raises(ReadError) as err:
        list(read(path, MAPPED, kind="steps", mapping=mapping))
    assert (err.value.line, err.value.field) == (1, "labels") and "2 ratings" in str(err.value)


def test_identical_replies_are_refused_as_in_every_format(tmp_path):
    rows = [{"input": "q", "output_1": "same", "output_2": "same ", "label": 1}]
    with pytest.raises(ReadError) as err:
        list(read(jsonl(tmp_path, rows), MAPPED, kind="pairs", mapping=LLMBAR_MAP))
    assert err.value.field == "output_2"


def test_preview_cells_are_cut_and_hostile_rows_reported(tmp_path):
    rows = [{"input": "q" * 1000, "output_1": "a", "output_2": "b", "label": 1}]
    path = jsonl(tmp_path, rows)
    with path.open("a") as out:
        out.write('{"input": "q", "input": "twice"}\n')
    shown = preview(path, kind="pairs", mapping=LLMBAR_MAP)
    assert len(shown.rows[0]["input"]) == 200 and shown.rows[0]["input"].endswith("…")
    assert [(e["line"], e["field"]) for e in shown.errors] == [(2, "input")]
