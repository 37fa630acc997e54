"""Snapshot targets: the folders written for TRL, OpenRLHF and verl load with ``datasets`` as each trainer
expects, their files are hashed as written, and a file holds one shape of row."""

import hashlib
import json
import shlex

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from prefdata.records import (
    FieldError,
    PreferenceRow,
    PromptOnlyRow,
    SFTRow,
    StepwiseRow,
    UnpairedRow,
    row_format,
)
from prefdata.targets import PRM_PLACEHOLDER, TARGETS, snapshot_folder_write
from prefdata.writers import FILE_FORMATS, dataset_bytes, jsonl_bytes, rows_encode

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France? Café ☕"}]


def reply(text):
    return [{"role": "assistant", "content": text}]


ROWS = {
    "preference": [PreferenceRow(CONV, reply("Paris."), reply("Rome."), margin=0.75),
                   PreferenceRow(CONV, reply("It is Paris."), reply("Lyon."), margin=0.25),
                   PreferenceRow(CONV, reply("Paris!"), reply("Nice."), margin=1.0)],
    "unpaired": [UnpairedRow("2+2?", "4", True), UnpairedRow("2+2?", "5", False), UnpairedRow("3+3?", "6", True)],
    "stepwise": [StepwiseRow("Is 91 prime?", ["91 = 7 * 13.", "So it is prime."], [True, False]),
                 StepwiseRow("Is 7 prime?", ["7 has no divisor but 1 and 7."], [True]),
                 StepwiseRow("Is 9 prime?", ["9 = 3 * 3.", "Not prime."], [True, True])],
    "sft": [SFTRow(messages=[*CONV, *reply("Paris.")]), SFTRow(messages=[*CONV, *reply("Paris, France.")]),
            SFTRow(messages=[{"role": "user", "content": "Hi"}, *reply("Hello.")])],
    # a file holds one shape of row: every row has an answer and tests, either may be empty
    "prompt_only": [PromptOnlyRow(CONV, answer="Paris", tests=[]),
                    PromptOnlyRow([{"role": "user", "content": "Write add(a, b)."}], answer="",
                                  tests=["assert add(1, 2) == 3"]),
                    PromptOnlyRow([{"role": "user", "content": "2+2?"}], answer="4", tests=[])],
}
SPLITS = {"train": slice(0, 2), "test": slice(2, 3)}


def load(folder, **kw):
    # a cache of its own: datasets keys its cache of a local folder by the folder's name and the files'
    # names and times, which a test run repeats
    return load_dataset(str(folder), cache_dir=str(folder.parent / "hf-cache"), **kw)


def write(tmp_path, kind, target="trl", file_format="jsonl", **kw):
    rows = ROWS[kind]
    return snapshot_folder_write(tmp_path / f"{kind}-{target}-{file_format}",
                                 {split: iter(rows[s]) for split, s in SPLITS.items()}, kind=kind, target=target,
                                 file_format=file_format, **kw)


def test_trl_jsonl_is_the_export_bytes_and_every_file_is_hashed_as_written(tmp_path):
    result = write(tmp_path, "preference")
    train = (result.folder / "train.jsonl").read_bytes()
    assert train == jsonl_bytes(rows_encode("preference", ROWS["preference"][:2])), "the snapshot bytes of today"
    assert result.splits == {"train": 2, "test": 1} and result.rows == 3
    assert set(result.files) == {"train.jsonl", "test.jsonl", "README.md"}
    for name, written in result.files.items():
        body = (result.folder / name).read_bytes()
        assert written.sha256 == hashlib.sha256(body).hexdigest() and written.size == len(body)
    assert result.files["README.md"].rows is None


@pytest.mark.parametrize("kind", list(ROWS))
@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_trl_folder_loads_with_its_splits_and_rows_unchanged(tmp_path, kind, file_format):
    result = write(tmp_path, kind, file_format=file_format)
    dataset = load(result.folder)
    assert {split: dataset[split].num_rows for split in dataset} == {"train": 2, "test": 1}
    expected = [row.to_dict() for row in ROWS[kind]]
    assert [*dataset["train"], *dataset["test"]] == expected


def test_parquet_is_written_a_row_group_at_a_time(tmp_path):
    rows = (UnpairedRow(f"{i}+{i}?", str(2 * i), i % 2 == 0) for i in range(5))  # a generator: streamed
    result = snapshot_folder_write(tmp_path / "s", rows, kind="unpaired", file_format="parquet", batch_rows=2)
    parquet = pq.ParquetFile(result.folder / "train.parquet")
    assert parquet.metadata.num_row_groups == 3 and parquet.metadata.num_rows == 5 == result.rows
    assert parquet.schema_arrow == pa.schema([("prompt", pa.string()), ("completion", pa.string()),
                                              ("label", pa.bool_())])
    assert result.files["train.parquet"].sha256 == hashlib.sha256(
        (result.folder / "train.parquet").read_bytes()).hexdigest()


def test_parquet_file_format_is_registered_beside_json_lines(tmp_path):
    rows = rows_encode("preference", ROWS["preference"])
    assert FILE_FORMATS["parquet"].suffix == ".parquet"
    (tmp_path / "p.parquet").write_bytes(dataset_bytes(rows, "parquet"))
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.to_pylist() == rows
    assert table.schema.field("prompt").type == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    assert table.schema.field("margin").type == pa.float64()


def test_verl_parquet_has_verls_schema_and_values(tmp_path):
    result = write(tmp_path, "prompt_only", target="verl", file_format="parquet", data_source="prefdata/capitals")
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    expected = pa.schema([
        ("data_source", pa.string()), ("prompt", pa.list_(message)), ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([("split", pa.string()), ("index", pa.int64())])),
    ])
    for split in ("train", "test"):
        assert pq.read_schema(result.folder / f"{split}.parquet") == expected
    train = pq.read_table(result.folder / "train.parquet").to_pylist()
    test = pq.read_table(result.folder / "test.parquet").to_pylist()
    assert train[0] == {"data_source": "prefdata/capitals", "prompt": CONV, "ability": "math",
                        "reward_model": {"style": "rule", "ground_truth": "Paris"},
                        "extra_info": {"split": "train", "index": 0}}
    assert train[1]["prompt"] == [{"role": "user", "content": "Write add(a, b)."}]
    assert train[1]["ability"] == "code"
    assert json.loads(train[1]["reward_model"]["ground_truth"]) == ["assert add(1, 2) == 3"]
    assert test[0]["extra_info"] == {"split": "test", "index": 0}
    assert load(result.folder)["test"].num_rows == 1


def test_verl_sft_is_messages_and_verl_refuses_what_it_does_not_read(tmp_path):
    rows = [SFTRow(prompt="2+2?", completion="4")]
    result = snapshot_folder_write(tmp_path / "sft", rows, kind="sft", target="verl", file_format="parquet")
    assert pq.read_table(result.folder / "train.parquet").to_pylist() == [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}]
    with pytest.raises(ValueError, match="verl takes prompt_only, sft rows, not preference"):
        write(tmp_path, "preference", target="verl", file_format="parquet")
    with pytest.raises(ValueError, match="verl reads parquet files, not jsonl"):
        write(tmp_path, "prompt_only", target="verl", file_format="jsonl")
    with pytest.raises(ValueError, match="row 0: text: verl's SFT data is conversations"):
        snapshot_folder_write(tmp_path / "t", [SFTRow(text="plain")], kind="sft", target="verl",
                              file_format="parquet")


def openrlhf_keys(folder):
    args = shlex.split((folder / "openrlhf.args").read_text())
    return args, {args[i]: args[i + 1] for i, a in enumerate(args) if a.endswith("_key")}


@pytest.mark.parametrize("kind, keys", [
    ("preference", {"--prompt_key": "prompt", "--chosen_key": "chosen", "--rejected_key": "rejected"}),
    ("unpaired", {"--input_key": "prompt", "--output_key": "completion", "--label_key": "label"}),
    ("sft", {"--input_key": "messages"}),
    ("stepwise", {"--input_key": "input", "--label_key": "value"}),
    ("prompt_only", {"--input_key": "prompt", "--label_key": "answer"}),
])
@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_openrlhf_args_name_keys_the_rows_have(tmp_path, tiny_model_dir, kind, keys, file_format):
    from transformers import AutoTokenizer

    result = write(tmp_path, kind, target="openrlhf", file_format=file_format)
    args, named = openrlhf_keys(result.folder)
    assert named == keys
    dataset = load(result.folder)
    assert set(named.values()) <= set(dataset["train"].column_names)
    assert result.files["openrlhf.args"].rows is None and "openrlhf.args" in (result.folder / "README.md").read_text()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = dataset["train"][0]
    if kind == "stepwise":
        # one placeholder per step, one label token per placeholder
        assert args[args.index("--placeholder_token") + 1] == PRM_PLACEHOLDER
        assert row["input"].count(PRM_PLACEHOLDER) == len(row["value"]) == 2 and row["value"] == ["+", "-"]
        return
    assert "--apply_chat_template" in args
    # what OpenRLHF does with --apply_chat_template: the prompt's messages followed by the reply's
    prompt = row[named["--input_key" if "--input_key" in named else "--prompt_key"]]
    for reply_key in ("--chosen_key", "--rejected_key", "--output_key"):
        if reply_key in named:
            text = tokenizer.apply_chat_template(prompt + row[named[reply_key]], tokenize=False)
            assert text.startswith(tokenizer.apply_chat_template(prompt, tokenize=False))
    if kind == "preference":
        assert row["margin"] == 0.75
    if kind == "unpaired":
        assert row["prompt"] == [{"role": "user", "content": "2+2?"}]
        assert row["completion"] == reply("4") and row["label"] is True
    if kind == "prompt_only":
        assert row["answer"] == "Paris" and dataset["train"][1]["answer"] == '["assert add(1, 2) == 3"]'


def test_openrlhf_sft_of_plain_text_is_pretraining(tmp_path):
    result = snapshot_folder_write(tmp_path / "pt", [SFTRow(text="The sky is blue.")], kind="sft", target="openrlhf")
    args, named = openrlhf_keys(result.folder)
    assert named == {"--input_key": "text"} and "--pretrain_mode" in args


def test_a_file_holds_one_shape_of_row(tmp_path):
    mixed_margin = [PreferenceRow("p", "c", "r", margin=0.5), PreferenceRow("p", "c", "r")]
    with pytest.raises(ValueError, match=r"train row 1: fields \['prompt', 'chosen', 'rejected'\] differ"):
        snapshot_folder_write(tmp_path / "a", mixed_margin, kind="preference")
    mixed_form = [UnpairedRow("p", "c", True), UnpairedRow(CONV, reply("c"), False)]
    with pytest.raises(ValueError, match="train row 1: prompt is messages where the first row's is string"):
        snapshot_folder_write(tmp_path / "b", mixed_form, kind="unpaired", file_format="parquet", batch_rows=1)
    assert not (tmp_path / "b" / "train.parquet").exists(), "a partial file is removed"
    # across splits too: train and test load as one dataset
    with pytest.raises(ValueError, match="test row 0: prompt is messages"):
        snapshot_folder_write(tmp_path / "c", {"train": mixed_form[:1], "test": mixed_form[1:]}, kind="unpaired")
    # OpenRLHF writes messages throughout, so the same rows are one shape there
    result = snapshot_folder_write(tmp_path / "d", mixed_form, kind="unpaired", target="openrlhf")
    assert result.rows == 2


def test_a_row_mixing_strings_and_messages_is_refused_for_trl(tmp_path):
    with pytest.raises(ValueError, match="train row 0: chosen: standard where prompt is conversational"):
        snapshot_folder_write(tmp_path / "a", [PreferenceRow(CONV, "Paris.", "Rome.")], kind="preference")
    result = snapshot_folder_write(tmp_path / "b", [PreferenceRow(CONV, "Paris.", "Rome.")], kind="preference",
                                   target="openrlhf")
    row = json.loads((result.folder / "train.jsonl").read_text())
    assert row["chosen"] == reply("Paris.") and row["prompt"] == CONV


def test_rows_are_checked_against_the_kind(tmp_path):
    with pytest.raises(TypeError, match="train row 0: a stepwise snapshot holds StepwiseRow rows, not PreferenceRow"):
        snapshot_folder_write(tmp_path / "a", ROWS["preference"], kind="stepwise")
    with pytest.raises(ValueError, match="train row 0: label: expected true or false"):
        snapshot_folder_write(tmp_path / "b", [{"prompt": "p", "completion": "c", "label": 1}], kind="unpaired")
    result = snapshot_folder_write(tmp_path / "c", [r.to_dict() for r in ROWS["unpaired"]], kind="unpaired")
    assert result.rows == 3, "dicts are read back with from_dict"
    with pytest.raises(ValueError, match="no rows to write"):
        snapshot_folder_write(tmp_path / "d", [], kind="unpaired")
    with pytest.raises(ValueError, match="unknown target 'axolotl'"):
        snapshot_folder_write(tmp_path / "e", ROWS["unpaired"], kind="unpaired", target="axolotl")
    assert set(TARGETS) == {"trl", "openrlhf", "verl"}


def test_an_empty_split_writes_no_file_and_the_card_lists_the_written_ones(tmp_path):
    result = snapshot_folder_write(tmp_path / "s", {"train": ROWS["sft"], "test": []}, kind="sft")
    assert set(result.files) == {"train.jsonl", "README.md"}
    card = (result.folder / "README.md").read_text()
    assert "split: train" in card and "split: test" not in card
    assert list(load(result.folder)) == ["train"]


def test_sft_rows_take_every_trl_language_modeling_form():
    assert SFTRow(text="The sky is blue.").to_dict() == {"text": "The sky is blue."}
    assert SFTRow.from_dict({"text": "x"}) == SFTRow(text="x")
    with pytest.raises(FieldError):
        SFTRow(text="x", messages=CONV)
    with pytest.raises(FieldError, match="^text: expected a string"):
        SFTRow.from_dict({"text": ["x"]})
    assert row_format({"prompt": CONV, "completion": reply("x")}) == "conversational"
    assert row_format({"text": "x"}) == "standard"
    with pytest.raises(FieldError) as excinfo:
        UnpairedRow.from_dict({"prompt": CONV, "completion": "4", "label": True})
    assert excinfo.value.field == "completion"


def test_targets_import_no_django_and_load_pyarrow_only_to_write_parquet():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import prefdata.targets, sys; assert 'django' not in sys.modules, 'django'; "
            "assert 'pyarrow' not in sys.modules, 'pyarrow'")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
