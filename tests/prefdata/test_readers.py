"""The streaming layer of the readers: gzip (capped once decompressed), JSON arrays of records, and one
format detection for pairs and steps."""

import gzip
import json
from pathlib import Path

import pytest

from annotate.importers import items_import, step_items_import
from annotate.models import PairItem, Project, Prompt, StepItem
from prefdata.readers import FORMATS, ReadError, ReadOptions, RowCounter, format_detect, formats_for, read
from prefdata.readers import stream as streams
from tests.conftest import SHARED_DATA
from tests.factories import ProjectFactory

DATA = Path(__file__).resolve().parents[1] / "annotate" / "data"
HH = SHARED_DATA / "hh-rlhf-helpful-base" / "helpful-base_test_first2000.jsonl"


def gzip_copy(source: Path, target: Path) -> Path:
    target.write_bytes(gzip.compress(source.read_bytes()))
    return target


def pair_rows(n):
    return [{"prompt": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(n)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- gzip ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.skipif(not HH.exists(), reason="shared hh-rlhf sample absent")
def test_a_gzip_file_imports_the_same_pairs_as_the_plain_file(tmp_path):
    packed = gzip_copy(HH, tmp_path / "helpful-base.jsonl.gz")
    assert packed.read_bytes()[:2] == b"\x1f\x8b" and packed.stat().st_size < HH.stat().st_size / 2
    assert format_detect(packed) == "hh-rlhf"
    # The sample's 9 pairs whose conversations differ are kept, its one pair of identical replies left out.
    options = ReadOptions(context_differs="keep", identical="skip")
    assert list(read(packed, kind="pairs", options=options)) == list(read(HH, kind="pairs", options=options))
    plain, zipped = ProjectFactory(), ProjectFactory()
    items_import(project=plain, path=HH, options=options)
    result = items_import(project=zipped, path=packed, options=options)
    assert (result.format, result.rows, result.items) == ("hh-rlhf", 2000, 1999)

    def stored(project):
        return list(PairItem.objects.filter(project=project).order_by("id").values_list(
            "prompt__messages", "prompt__metadata", "completion_a__text", "completion_b__text"))

    assert stored(zipped) == stored(plain)


@pytest.mark.django_db
def test_the_decompressed_size_limit_refuses_a_gzip_bomb_and_stores_nothing(tmp_path, monkeypatch):
    # 200 rows of ~70 bytes each, a few hundred bytes once compressed.
    packed = tmp_path / "bomb.jsonl.gz"
    packed.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in pair_rows(200)).encode()))
    with pytest.raises(ReadError) as excinfo:
        list(read(packed, "pairs", max_bytes=1000))
    error = excinfo.value
    assert (error.path, error.field) == ("bomb.jsonl.gz", "(file)") and 1 < error.line < 200
    assert "more than 1,000 bytes once decompressed" in str(error)
    assert str(error).startswith(f"bomb.jsonl.gz, line {error.line}, field '(file)': ")
    # The import refuses it too (with the default limit lowered), after chunks were stored: all rolled back.
    monkeypatch.setattr(streams, "DEFAULT_MAX_BYTES", 5000)
    project = ProjectFactory()
    stored = []
    with pytest.raises(ReadError) as excinfo:
        items_import(project=project, path=packed, chunk_size=10,
                     progress=lambda rows: stored.append(PairItem.objects.filter(project=project).count()))
    assert excinfo.value.field == "(file)" and excinfo.value.line > 10
    assert stored and stored[0] == 10, "chunks were stored before the limit was reached"
    assert not Prompt.objects.filter(project=project).exists()
    assert not PairItem.objects.filter(project=project).exists()


def test_the_limit_holds_for_a_line_longer_than_it(tmp_path):
    """A bomb without line breaks: refused at the limit, not read whole into memory."""
    packed = tmp_path / "zeros.jsonl.gz"
    packed.write_bytes(gzip.compress(b'{"prompt": "' + b"0" * 2_000_000))
    with pytest.raises(ReadError, match="once decompressed") as excinfo:
        list(read(packed, "pairs", max_bytes=100_000))
    assert (excinfo.value.line, excinfo.value.field) == (1, "(file)")


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_broken_gzip_file_is_a_clear_error(tmp_path, damage):
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in pair_rows(500)).encode())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data = data[:10] + bytes(b ^ 0xFF for b in data[10:40]) + data[40:]
    packed = tmp_path / "broken.jsonl.gz"
    packed.write_bytes(data)
    with pytest.raises(ReadError) as excinfo:
        list(read(packed, "pairs"))
    assert excinfo.value.field == "(file)" and excinfo.value.path == "broken.jsonl.gz"
    assert "not a valid gzip file" in str(excinfo.value)


def test_csv_and_label_studio_read_through_gzip_too(tmp_path):
    for name, fmt, n in (("pairs.csv", "csv", 3), ("label_studio.json", "label-studio", 3)):
        packed = gzip_copy(DATA / name, tmp_path / f"{name}.gz")
        assert format_detect(packed) == fmt
        assert list(read(packed, kind="pairs")) == list(read(DATA / name, kind="pairs"))
        assert len(list(read(packed, kind="pairs"))) == n


# -- JSON arrays of records ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind", "fmt"), [
    ("arena.jsonl", "pairs", "arena"), ("oasst.jsonl", "pairs", "oasst"),
    ("steps/prm800k.jsonl", "steps", "prm800k"), ("steps/bbm.jsonl", "steps", "bbm"),
    ("steps/math_shepherd.jsonl", "steps", "math-shepherd"), ("steps/steps.jsonl", "steps", "steps"),
])
def test_a_record_format_reads_from_a_json_array(tmp_path, name, kind, fmt):
    rows = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
    array = tmp_path / "records.json"
    array.write_text(json.dumps(rows, ensure_ascii=False, indent=1))
    assert format_detect(array) == fmt
    assert format_detect(array, kind=kind) == fmt
    counter = RowCounter()
    options = ReadOptions(context_differs="keep")  # the Arena sample's second battle differs before the replies
    records = list(read(array, kind=kind, counter=counter, options=options))
    expected = list(read(DATA / name, fmt, kind=kind, options=options))
    # The same records; their "line" is the element's number in the array, the line's in JSON Lines.
    assert [(r.prompt, r.metadata) for r in records] == [(r.prompt, r.metadata) for r in expected]
    assert counter.rows == len(rows)
    gzip_copy(array, tmp_path / "records.json.gz")
    assert list(read(tmp_path / "records.json.gz", kind=kind, options=options)) == records


def test_json_array_errors_name_the_record(tmp_path):
    array = tmp_path / "pairs.json"
    array.write_text(json.dumps([*pair_rows(2), {"prompt": "q", "response_a": "a"}]))
    with pytest.raises(ReadError) as excinfo:
        list(read(array, "pairs"))
    assert (excinfo.value.line, excinfo.value.field) == (3, "response_b")
    assert str(excinfo.value) == "pairs.json, line 3, field 'response_b': record 3: missing"
    array.write_text(json.dumps(pair_rows(3))[:-20])
    with pytest.raises(ReadError, match="record 3: invalid JSON") as excinfo:
        list(read(array, "pairs"))
    assert excinfo.value.field == "(json)"


@pytest.mark.django_db
def test_steps_import_from_a_json_array(tmp_path):
    rows = [json.loads(line) for line in (DATA / "steps" / "bbm.jsonl").read_text().splitlines() if line.strip()]
    array = tmp_path / "bbm.json"
    array.write_text(json.dumps(rows))
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    result = step_items_import(project=project, path=array)
    assert (result.format, result.rows, result.items) == ("bbm", 3, 3)
    assert StepItem.objects.filter(project=project).count() == 3


# -- one detection, one registry ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fmt"), [
    ("arena.jsonl", "arena"), ("oasst.jsonl", "oasst"), ("pairs.csv", "csv"), ("label_studio.json", "label-studio"),
    ("steps/prm800k.jsonl", "prm800k"), ("steps/bbm.jsonl", "bbm"), ("steps/math_shepherd.jsonl", "math-shepherd"),
    ("steps/steps.jsonl", "steps"),
])
def test_one_detection_for_both_kinds(name, fmt):
    assert format_detect(DATA / name) == fmt
    kind = FORMATS[fmt].kind
    assert format_detect(DATA / name, kind=kind) == fmt
    other = "steps" if kind == "pairs" else "pairs"
    if fmt not in ("csv", "label-studio"):
        with pytest.raises(ReadError, match="unknown format: expected") as excinfo:
            format_detect(DATA / name, kind=other)
        assert (excinfo.value.line, excinfo.value.field) == (1, "(row)")


def test_a_format_of_the_other_kind_is_refused():
    with pytest.raises(ReadError, match="unknown format 'csv'; known: auto, steps, prm800k") as excinfo:
        read(DATA / "pairs.csv", "csv", kind="steps")
    assert excinfo.value.field == "(format)"


def test_every_format_has_a_kind_and_a_way_to_read_it():
    assert set(formats_for()) == {"auto", *FORMATS}
    assert set(formats_for("pairs")) | set(formats_for("steps")) == set(formats_for())
    for spec in FORMATS.values():
        assert spec.kind in ("pairs", "steps")
        assert (spec.parse is None) != (spec.reader is None), spec.name
        assert (spec.detect is None) == (spec.parse is None), spec.name
    with pytest.raises(ValueError, match="unknown kind"):
        formats_for("images")
