"""Files a JSON parser would accept but that cannot have meant what would be stored: each is refused with
its file, line and field, within memory bounded by the limits (``ReadOptions``), or kept as asked."""

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prefdata.readers import ReadError, ReadOptions, RowCounter, read

GOOD = {"prompt": "q", "response_a": "a", "response_b": "b"}
ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, *lines: object) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def array(path: Path, *records: object) -> Path:
    path.write_text("[" + ", ".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "]")
    return path


def with_metadata(metadata_json: str) -> str:
    """A line of our format whose metadata is the JSON text given (which json.dumps could not write)."""
    return '{"prompt": "q", "response_a": "a", "response_b": "b", "metadata": ' + metadata_json + "}"


def refused(path: Path, fmt: str = "auto", **options) -> ReadError:
    with pytest.raises(ReadError) as excinfo:
        list(read(path, fmt, options=ReadOptions(**options) if options else None))
    assert excinfo.value.path == path.name
    return excinfo.value


# -- 1. two replies of the same text --------------------------------------------------------------------------


@pytest.mark.parametrize(("row", "fmt", "field"), [
    ({"prompt": "q", "response_a": "same", "response_b": "same"}, "pairs", "response_b"),
    ({"prompt": "q", "response_a": "same\n", "response_b": "  same"}, "pairs", "response_b"),  # white space aside
    ({"prompt": "q", "chosen": "x", "rejected": "x"}, "trl-preference", "rejected"),
    ({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
      "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]}, "trl-preference",
     "rejected"),
    ({"chosen": "\n\nHuman: q\n\nAssistant: x", "rejected": "\n\nHuman: q\n\nAssistant: x"}, "hh-rlhf", "rejected"),
    ({"model_a": "m1", "model_b": "m2", "winner": "tie",
      "conversation_a": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
      "conversation_b": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]}, "arena",
     "conversation_b"),
])
def test_a_pair_of_identical_replies_is_refused_naming_line_and_fields(tmp_path, row, fmt, field):
    error = refused(write(tmp_path / "same.jsonl", row), fmt)
    assert (error.line, error.field) == (1, field)
    assert "the same text as" in str(error)


def test_identical_replies_in_csv_label_studio_and_oasst(tmp_path):
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("prompt,response_a,response_b\nq,a,b\n\"q\",\"x\",\"x\"\n")
    error = refused(csv_file)
    assert (error.line, error.field) == (3, "response_b")
    tasks = array(tmp_path / "ls.json", {"data": {"prompt": "p", "answer1": "x", "answer2": "y"}},
                  {"data": {"prompt": "p", "answer1": "x", "answer2": "x"}})
    error = refused(tasks, "label-studio")
    assert (error.line, error.field) == (2, "data.answer2")
    assert str(error).startswith("ls.json, line 2, field 'data.answer2': task 2: data.answer2: the same text as "
                                 "data.answer1")
    tree = {"message_tree_id": "t", "prompt": {"role": "prompter", "text": "q", "replies": [
        {"role": "assistant", "text": "same", "rank": 0}, {"role": "assistant", "text": "other", "rank": 1},
        {"role": "assistant", "text": "same", "rank": 2}]}}
    error = refused(write(tmp_path / "oasst.jsonl", tree), "oasst")
    assert (error.line, error.field) == (1, "prompt.replies[2].text")
    assert "the same text as prompt.replies[0].text" in str(error)


def test_identical_replies_can_be_left_out_and_are_counted(tmp_path):
    path = write(tmp_path / "same.jsonl", GOOD, {"prompt": "q", "response_a": "x", "response_b": "x"}, GOOD)
    counter = RowCounter()
    pairs = list(read(path, counter=counter, options=ReadOptions(identical="skip")))
    assert [p.line for p in pairs] == [1, 3]
    assert (counter.rows, counter.identical_skipped) == (3, 1)


# -- 2. the same key twice ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "key"), [
    ('{"prompt": "q", "response_a": "a", "response_b": "b", "response_a": "c"}', "response_a"),
    ('{"prompt" : "q", "response_a" : "a", "response_b" : "b", "prompt"\t: "z"}', "prompt"),  # white space
    ('{"prompt": [{"role": "user", "content": "x", "content": "y"}], "response_a": "a", "response_b": "b"}', "content"),
    ('{"prompt": "q", "response_a": "a", "response_b": "b", "metadata": {"k": {"s": 1, "s": 2}}}', "s"),
])
def test_a_key_twice_in_one_object_is_refused_naming_the_key(tmp_path, line, key):
    error = refused(write(tmp_path / "dup.jsonl", GOOD, line))
    assert (error.line, error.field) == (2, key)
    assert f"the key {key!r} appears twice in one object" in str(error)
    error = refused(array(tmp_path / "dup.json", GOOD, line))
    assert (error.line, error.field) == (2, key) and "record 2: the key" in str(error)


def test_what_looks_like_a_key_twice_inside_a_text_is_not_one(tmp_path):
    """Colons and escaped quotes inside texts, and the same key in different objects, are no duplicate."""
    rows = [{"prompt": 'say \\": x', "response_a": 'Human: "a": 1, "a": 2', "response_b": "b",
             "metadata": {"a": {"a": 1}, "list": [{"a": 1}, {"a": 2}]}},
            {"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"},
                        {"role": "user", "content": "q2"}], "response_a": "a", "response_b": "b"}]
    path = write(tmp_path / "ok.jsonl", *rows)
    assert [p.metadata for p in read(path)] == [rows[0]["metadata"], {}]
    assert len(list(read(array(tmp_path / "ok.json", *rows)))) == 2


# -- 3. NaN and infinities ------------------------------------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinities_are_refused_with_the_line(tmp_path, constant):
    line = with_metadata('{"scores": [1, ' + constant + "]}")
    error = refused(write(tmp_path / "nan.jsonl", GOOD, GOOD, line))
    assert (error.line, error.field) == (3, "(json)")
    assert f"{constant} is not a JSON value" in str(error)
    error = refused(array(tmp_path / "nan.json", GOOD, line))
    assert (error.line, error.field) == (2, "(json)") and "NaN and infinities are not JSON values" in str(error)


def test_a_number_too_large_for_a_float_is_refused_too(tmp_path):
    error = refused(write(tmp_path / "big.jsonl", GOOD, with_metadata('{"score": -1.5e999}')))
    assert (error.line, error.field) == (2, "(json)") and "-1.5e999 is too large for a float" in str(error)
    error = refused(array(tmp_path / "big.json", with_metadata('{"score": 1e999}')))
    assert (error.line, error.field) == (1, "(json)") and "overflow" in str(error)
    assert next(read(write(tmp_path / "ok.jsonl", with_metadata('{"score": 1.5e300}')))).metadata == {"score": 1.5e300}


def test_margin_must_be_a_finite_number(tmp_path):
    error = refused(write(tmp_path / "trl.jsonl", {"prompt": "q", "chosen": "a", "rejected": "b", "margin": "1e999"}))
    assert (error.line, error.field) == (1, "margin")
    error = refused(write(tmp_path / "trl.jsonl", {"prompt": "q", "chosen": "a", "rejected": "b", "margin": True}))
    assert (error.line, error.field) == (1, "margin")


# -- 4. NUL characters --------------------------------------------------------------------------------------


def test_a_nul_character_is_refused_naming_the_field_in_every_container(tmp_path):
    row = {"prompt": "q", "response_a": "a", "response_b": "b\u0000"}
    error = refused(write(tmp_path / "nul.jsonl", GOOD, row))
    assert (error.line, error.field) == (2, "response_b") and "NUL character" in str(error)
    error = refused(array(tmp_path / "nul.json", GOOD, row))
    assert (error.line, error.field) == (2, "response_b")
    csv_file = tmp_path / "nul.csv"
    csv_file.write_bytes(b"prompt,response_a,response_b\nq,a,b\nq,a\x00,b\n")
    error = refused(csv_file)
    assert (error.line, error.field) == (3, "response_a")
    # An escaped backslash before "u0000" is text, not a NUL.
    escaped = write(tmp_path / "escaped.jsonl", {"prompt": "q", "response_a": "a\\u0000", "response_b": "b"})
    assert next(read(escaped)).response_a == "a\\u0000"


def test_text_clean_still_drops_nul_for_model_outputs():
    from prefdata.records import text_clean

    assert text_clean("a\x00b") == "ab"  # what synth backends rely on


# -- 5. sizes: a field, a line, memory ----------------------------------------------------------------------


def test_a_field_over_the_limit_is_refused_naming_it(tmp_path):
    long_row = {"prompt": [{"role": "user", "content": "q"}], "response_a": "a", "response_b": "b",
                "metadata": {"trace": ["short", "é" * 600]}}  # 600 characters, 1,200 bytes
    error = refused(write(tmp_path / "big.jsonl", GOOD, long_row), max_field_bytes=1000)
    assert (error.line, error.field) == (2, "metadata")
    assert "metadata.trace[1]: longer than 1,000 bytes (the limit of a field)" in str(error)
    error = refused(array(tmp_path / "big.json", GOOD, long_row), max_field_bytes=1000)
    assert (error.line, error.field) == (2, "metadata")
    assert len(list(read(write(tmp_path / "ok.jsonl", long_row), options=ReadOptions(max_field_bytes=1200)))) == 1
    csv_file = tmp_path / "big.csv"
    csv_file.write_text("prompt,response_a,response_b\nq,a,b\nq,a," + "x" * 1001 + "\n")
    error = refused(csv_file, max_field_bytes=1000)
    assert (error.line, error.field) == (3, "response_b")


@pytest.mark.parametrize("packed", [False, True])
def test_a_line_over_the_limit_is_refused_unread(tmp_path, packed):
    line = json.dumps({"prompt": "q", "response_a": "a" * 5000, "response_b": "b"})
    data = "".join(x + "\n" for x in (json.dumps(GOOD), line, json.dumps(GOOD))).encode()
    path = tmp_path / ("long.jsonl.gz" if packed else "long.jsonl")
    path.write_bytes(gzip.compress(data) if packed else data)
    error = refused(path, max_field_bytes=100_000, max_line_bytes=2000)
    assert (error.line, error.field) == (2, "(line)")
    assert "longer than 2,000 bytes (the limit of a line or record" in str(error)
    # A line of exactly the limit (its line break aside) is read.
    exact = tmp_path / "exact.jsonl"
    exact.write_text(json.dumps(GOOD) + "\n")
    limit = len(json.dumps(GOOD))
    assert len(list(read(exact, options=ReadOptions(max_line_bytes=limit)))) == 1
    assert refused(exact, max_line_bytes=limit - 1).field == "(line)"
    # The line limit is 16 fields by default.
    assert ReadOptions(max_field_bytes=1000).max_line_bytes == 16_000


def test_a_record_over_the_limit_in_a_json_array_or_a_csv_line_is_refused(tmp_path):
    records = array(tmp_path / "long.json", GOOD, {"prompt": "q", "response_a": "a" * 300_000, "response_b": "b"})
    error = refused(records, max_field_bytes=1000)
    assert (error.line, error.field) == (2, "(line)") and "record 2: longer than 16,000 bytes" in str(error)
    csv_file = tmp_path / "long.csv"
    csv_file.write_text("prompt,response_a,response_b\nq,a,b\nq," + "x" * 30_000 + ",b\n")
    error = refused(csv_file, max_field_bytes=1000)
    assert (error.line, error.field) == (3, "(line)")


MEMORY_PROBE = textwrap.dedent("""
    import resource, sys
    sys.path.insert(0, sys.argv[2])
    from prefdata.readers import ReadError, read
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        list(read(sys.argv[1]))
    except ReadError as exc:
        print(exc.line, exc.field)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
""")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_memory_stays_flat_whatever_the_row(tmp_path, suffix):
    """A 60 MB row (330-760 MB of memory once, before the limits): refused at the line limit (16 MiB)."""
    path = tmp_path / f"huge{suffix}"
    with open(path, "w") as out:
        first, huge = json.dumps(GOOD), json.dumps({"prompt": "q", "response_a": "x" * (60 << 20), "response_b": "b"})
        out.write(f"{first}\n{huge}\n" if suffix == ".jsonl" else f"[{first}, {huge}]")
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), str(ROOT)], capture_output=True, text=True,
                           check=True)
    where, grown_mb = probe.stdout.split("\n")[:2]
    assert where == "2 (line)"
    assert int(grown_mb) < 40, f"reading grew memory by {grown_mb} MB"


# -- 6. nesting ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [150, 100_000])
def test_deep_nesting_is_refused_with_the_line(tmp_path, levels):
    line = with_metadata('{"x": ' + "[" * levels + "]" * levels + "}")
    error = refused(write(tmp_path / "deep.jsonl", GOOD, line))
    assert (error.line, error.field) == (2, "(json)") and "nested more than 100 levels deep" in str(error)
    error = refused(array(tmp_path / "deep.json", GOOD, line))
    assert (error.line, error.field) == (2, "(json)") and "record 2: nested more than" in str(error)
    assert refused(write(tmp_path / "deep.jsonl", with_metadata('{"k": ' * levels + "1" + "}" * levels))).line == 1


def test_nesting_within_the_limit_is_read(tmp_path):
    nested = 1
    for _ in range(98):  # with the record and "metadata": 100 levels
        nested = [nested]
    path = write(tmp_path / "ok.jsonl", {**GOOD, "metadata": {"x": nested}})
    assert next(read(path)).metadata == {"x": nested}
    assert next(read(array(tmp_path / "ok.json", {**GOOD, "metadata": {"x": nested}}))).metadata == {"x": nested}
    assert refused(write(tmp_path / "deeper.jsonl", {**GOOD, "metadata": {"x": [nested]}})).field == "(json)"


# -- 7. conversations that differ before the replies ------------------------------------------------------------


CONTEXT_DIFFERS = [
    ("hh-rlhf", {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye\n\nAssistant: Bye!",
                 "rejected": "\n\nHuman: Hi\n\nAssistant: Hey\n\nHuman: Bye\n\nAssistant: Go."}, "rejected"),
    ("trl-preference", {"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "A"}],
                        "rejected": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "B"}]},
     "rejected"),
    ("arena", {"model_a": "m1", "model_b": "m2", "winner": "model_a",
               "conversation_a": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "A"}],
               "conversation_b": [{"role": "user", "content": "Yo"}, {"role": "assistant", "content": "B"}]},
     "conversation_b"),
]


@pytest.mark.parametrize(("fmt", "row", "field"), CONTEXT_DIFFERS)
def test_conversations_that_differ_are_refused_or_kept_flagged(tmp_path, fmt, row, field):
    path = write(tmp_path / "differs.jsonl", row)
    error = refused(path, fmt)
    assert (error.line, error.field) == (1, field)
    assert "the conversation before the final reply differs" in str(error)
    counter = RowCounter()
    (pair,) = read(path, fmt, counter=counter, options=ReadOptions(context_differs="keep"))
    assert pair.metadata["context_differs"] is True and counter.context_differs == 1


def test_our_own_metadata_flag_is_not_taken_for_the_check(tmp_path):
    path = write(tmp_path / "ours.jsonl", {**GOOD, "metadata": {"context_differs": True}})
    assert next(read(path)).metadata == {"context_differs": True}


# -- 8. fields no rule reads ----------------------------------------------------------------------------------


def test_fields_no_rule_reads_are_counted_and_a_trl_margin_is_kept(tmp_path):
    path = write(tmp_path / "trl.jsonl", {"prompt": "q", "chosen": "a", "rejected": "b", "margin": 2, "id": 1},
                 {"prompt": "q", "chosen": "a", "rejected": "c", "id": 2, "label": True})
    counter = RowCounter()
    first, second = read(path, counter=counter)
    assert first.metadata["source_margin"] == 2.0 and "source_margin" not in second.metadata
    assert counter.ignored == {"id": 2, "label": 1}
    ls = array(tmp_path / "ls.json", {"id": 1, "data": {"prompt": "p", "answer1": "x", "answer2": "y", "topic": "t"}})
    counter = RowCounter()
    assert len(list(read(ls, counter=counter))) == 1
    assert counter.ignored == {"data.topic": 1}
    steps = write(tmp_path / "steps.jsonl", {"prompt": "p", "steps": ["a"], "score": 3})
    counter = RowCounter()
    assert len(list(read(steps, counter=counter))) == 1
    assert counter.ignored == {"score": 1}
