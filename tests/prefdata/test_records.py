"""Export rows: the JSON object of each (its key order is part of a snapshot's bytes), read back."""

import json

import pytest

from prefdata.records import (
    RECORD_KINDS,
    FieldError,
    PreferenceRow,
    PromptOnlyRow,
    SFTRow,
    StepwiseRow,
    UnpairedRow,
    conversation_validate,
    json_clean,
    text_clean,
)

CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
REPLY = [{"role": "assistant", "content": "4"}]


@pytest.mark.parametrize("row", [
    PreferenceRow(CONVERSATION, REPLY, [{"role": "assistant", "content": "5"}]),
    PreferenceRow("2+2?", "4", "5", margin=0.75),
    UnpairedRow("2+2?", "4", True),
    UnpairedRow(CONVERSATION, REPLY, False),
    StepwiseRow("Is 91 prime?", ["91 = 7 * 13.", "So it is not prime."], [True, True]),
    SFTRow(messages=[*CONVERSATION, *REPLY]),
    SFTRow(prompt="2+2?", completion="4"),
    PromptOnlyRow("2+2?"),
    PromptOnlyRow("Write add(a, b).", answer="def add(a, b): return a + b", tests=["assert add(1, 2) == 3"]),
])
def test_rows_round_trip_through_json(row):
    back = type(row).from_dict(json.loads(json.dumps(row.to_dict())))
    assert back == row
    assert RECORD_KINDS[row.kind] is type(row)


def test_to_dict_keeps_the_written_keys_in_order():
    assert list(PreferenceRow("p", "c", "r").to_dict()) == ["prompt", "chosen", "rejected"]
    assert list(PreferenceRow("p", "c", "r", margin=0.5).to_dict()) == ["prompt", "chosen", "rejected", "margin"]
    assert list(UnpairedRow("p", "c", True).to_dict()) == ["prompt", "completion", "label"]
    assert list(StepwiseRow("p", ["a"], [True]).to_dict()) == ["prompt", "completions", "labels"]
    assert list(PromptOnlyRow("p", tests=["t"]).to_dict()) == ["prompt", "tests"]
    assert SFTRow(prompt="p", completion="c").to_dict() == {"prompt": "p", "completion": "c"}


@pytest.mark.parametrize(("cls", "row", "field"), [
    (PreferenceRow, {"prompt": "p", "chosen": "c"}, "rejected"),
    (PreferenceRow, {"prompt": "p", "chosen": [{"role": "robot", "content": "x"}], "rejected": "r"}, "chosen"),
    (PreferenceRow, {"prompt": "p", "chosen": "c", "rejected": "r", "margin": "big"}, "margin"),
    (PreferenceRow, {"prompt": "p", "chosen": "c", "rejected": "r", "margin": True}, "margin"),
    (PreferenceRow, {"prompt": [], "chosen": "c", "rejected": "r"}, "prompt"),
    (UnpairedRow, {"prompt": "p", "completion": "c", "label": 1}, "label"),
    (UnpairedRow, {"prompt": "p", "completion": 3, "label": True}, "completion"),
    (StepwiseRow, {"prompt": "p", "completions": ["a", "b"], "labels": [True]}, "labels"),
    (StepwiseRow, {"prompt": "p", "completions": ["a", 2], "labels": [True, True]}, "completions"),
    (StepwiseRow, {"prompt": "p", "completions": ["a"], "labels": [1]}, "labels"),
    (SFTRow, {"prompt": "p"}, "completion"),
    (SFTRow, {"messages": "just text"}, "messages"),
    (SFTRow, {"messages": [{"role": "user"}]}, "messages"),
    (PromptOnlyRow, {"prompt": "p", "tests": "assert True"}, "tests"),
    (PromptOnlyRow, {"answer": "4"}, "prompt"),
    (PromptOnlyRow, ["not", "an", "object"], "(row)"),
])
def test_from_dict_names_the_field(cls, row, field):
    with pytest.raises(ValueError, match=f"^{field.replace('(', '[(]').replace(')', '[)]')}") as excinfo:
        cls.from_dict(row)
    assert isinstance(excinfo.value, FieldError) and excinfo.value.field == field


def test_sft_row_is_one_form_or_the_other():
    with pytest.raises(FieldError):
        SFTRow()
    with pytest.raises(FieldError):
        SFTRow(messages=CONVERSATION, prompt="p", completion="c")


def test_text_helpers():
    assert text_clean("a\x00b") == "ab"
    assert json_clean({"k\x00": ["v\x00", 1, {"n": "\x00"}]}) == {"k": ["v", 1, {"n": ""}]}
    assert conversation_validate("hi\x00") == [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match=r"^prompt\[0\]\.role: 'robot'"):
        conversation_validate([{"role": "robot", "content": "x"}])
