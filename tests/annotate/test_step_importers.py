import json
from pathlib import Path

import pytest

from annotate.importers import step_items_import
from annotate.models import Project, Prompt, StepItem, StepLabel
from prefdata.readers import ReadError, format_detect, formats_for, read
from prefdata.steps import steps_split
from tests.conftest import SHARED_DATA
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data" / "steps"
BBM = SHARED_DATA / "big-bench-mistake"
PRM800K_EXAMPLE = SHARED_DATA / "prm800k-readme-example" / "prm800k_readme_example.jsonl"


def steps_project(**kwargs) -> Project:
    return ProjectFactory(task_kind=Project.TaskKind.STEPS, **kwargs)


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def only_label(item: StepItem) -> StepLabel:
    (label,) = item.labels.all()
    return label


# -- formats ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "fmt"), [("steps.jsonl", "steps"), ("prm800k.jsonl", "prm800k"),
                                           ("bbm.jsonl", "bbm"), ("math_shepherd.jsonl", "math-shepherd")])
def test_format_detected_from_first_row(file, fmt):
    assert format_detect(DATA / file, kind="steps") == fmt
    assert fmt in formats_for("steps")


def test_own_format_keeps_prompt_steps_ratings_and_metadata():
    project = steps_project()
    result = step_items_import(project=project, path=DATA / "steps.jsonl")
    assert (result.format, result.rows, result.items) == ("steps", 3, 3)
    first, second, third = StepItem.objects.filter(project=project).order_by("id")
    assert first.prompt.messages == [{"role": "user", "content": "What is 2 + 3 * 4?"}]
    assert first.prompt.source == "steps.jsonl"
    assert first.steps == ["Multiplication first: 3 * 4 = 12.", "Then 2 + 12 = 14.", "The answer is 14."]
    assert first.solution_text == "\n\n".join(first.steps) and first.split_rule == "given"
    assert (first.reference_answer, first.model_name, first.metadata) == ("14", "tiny-llama", {"split": "train"})
    label = only_label(first)
    assert (label.annotator, label.source, label.source_name) == (None, "auto", "steps:steps.jsonl")
    assert (label.ratings, label.finish_reason, label.outcome) == ([1, 0, 1], "solution", "")
    assert second.prompt.messages[0] == {"role": "system", "content": "Think step by step."}
    assert second.ground_truth_solution.startswith("91 = 7 * 13")
    assert (only_label(second).finish_reason, only_label(second).outcome) == ("found_error", "incorrect")
    assert not third.labels.exists(), "a row without ratings has no label"


def test_prm800k_takes_chosen_human_or_first_completion():
    project = steps_project()
    result = step_items_import(project=project, path=DATA / "prm800k.jsonl")
    assert (result.format, result.rows, result.items) == ("prm800k", 3, 2), "a row with no labeled step is skipped"
    phase1, gave_up = StepItem.objects.filter(project=project).order_by("id")
    # chosen 0, then the labeler's own step (taken as +1), then chosen 1.
    assert phase1.steps == ["I add 1 and 2 to get 3.", "Then 3 + 3 = 6.", "# Answer\n\n6"]
    assert (phase1.reference_answer, phase1.prompt.last_user_text) == ("6", "Compute $1 + 2 + 3$.")
    assert phase1.ground_truth_solution.endswith("\\boxed{6}$.")
    label = only_label(phase1)
    assert label.ratings == [1, 1, 1] and label.finish_reason == "solution"
    assert label.source_name == "prm800k:prm800k.jsonl"
    alternatives = phase1.metadata["alternatives"]
    assert [(a["step"], a["text"], a["rating"]) for a in alternatives] == [
        (0, "I multiply them.", -1), (1, "Then 3 + 3 = 7.", -1), (1, "Then 3 + 3 is 33.", -1),
        (2, "So the sum is 6.", 0)]
    assert phase1.metadata["human_steps"] == [1] and phase1.metadata["total_time_ms"] == 12345
    assert phase1.metadata["labeler"] == "a-labeler"
    # Chosen null and no human step: the first completion, with its (null) rating; give_up maps to gave_up.
    assert gave_up.steps == ["Divide both sides by 2.", "So $x = 5$."]
    assert only_label(gave_up).ratings == [0, None]
    assert only_label(gave_up).finish_reason == StepLabel.FinishReason.GAVE_UP
    assert gave_up.metadata["pre_generated_steps"][-1] == "# Answer\n\n5", "the whole solution is kept"
    assert gave_up.metadata["pre_generated_verifier_score"] == 0.93


def test_prm800k_readme_example():
    if not PRM800K_EXAMPLE.exists():
        pytest.skip("shared PRM800K sample not present")
    project = steps_project()
    result = step_items_import(project=project, path=PRM800K_EXAMPLE)
    assert (result.format, result.items) == ("prm800k", 1)
    item = StepItem.objects.get(project=project)
    row = json.loads(PRM800K_EXAMPLE.read_text())
    assert item.steps == row["question"]["pre_generated_steps"][:3]
    assert item.reference_answer == "40,\\!000"
    label = only_label(item)
    assert label.ratings == [0, 0, -1] and label.first_error == 2
    assert label.finish_reason == StepLabel.FinishReason.FOUND_ERROR
    # The step where labeling stopped had 5 candidates: the first is taken, 4 kept as alternatives.
    assert [a["step"] for a in item.metadata["alternatives"]] == [2, 2, 2, 2]
    assert len(item.metadata["pre_generated_steps"]) == 16


def test_bbm_ratings_outcome_and_finish_reason():
    project = steps_project()
    result = step_items_import(project=project, path=DATA / "bbm.jsonl")
    assert (result.format, result.items) == ("bbm", 3)
    clean, mistake, unknown = StepItem.objects.filter(project=project).order_by("id")
    assert (only_label(clean).ratings, only_label(clean).finish_reason, only_label(clean).outcome) == (
        [1, 1], "solution", "correct")
    assert (only_label(mistake).ratings, only_label(mistake).finish_reason, only_label(mistake).outcome) == (
        [1, -1, None], "found_error", "incorrect")
    assert (only_label(unknown).ratings, only_label(unknown).outcome) == ([-1, None], ""), "no answer: no outcome"
    assert mistake.reference_answer == "6" and mistake.metadata == {"mistake_index": 1, "answer": "5"}
    assert only_label(mistake).source_name == "bbm:bbm.jsonl"


def test_math_shepherd_splits_at_the_marker_and_reads_signs():
    project = steps_project()
    result = step_items_import(project=project, path=DATA / "math_shepherd.jsonl")
    assert (result.format, result.items) == ("math-shepherd", 2)
    good, bad = StepItem.objects.filter(project=project).order_by("id")
    assert good.prompt.last_user_text == "Tom has 3 apples and buys 4 more. How many apples does he have?"
    assert good.steps == ["Step 1: Tom starts with 3 apples.", "Step 2: He buys 4 more, so 3 + 4 = <<3+4=7>>7.",
                          "Step 3: The answer is: 7"]
    assert good.prompt.metadata["task"] == "GSM8K"
    assert (only_label(good).ratings, only_label(good).outcome) == ([1, 1, 1], "correct")
    assert (only_label(bad).ratings, only_label(bad).finish_reason, only_label(bad).outcome) == (
        [1, -1, -1], "found_error", "incorrect")
    assert "ки" not in "".join(good.steps + bad.steps)


def test_parsing_is_lazy_and_stops_at_the_bad_line(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "p", "steps": ["a"]}, {"prompt": "q", "steps": ["b"]},
                                              {"prompt": "r", "steps": "not a list"}])
    records = read(path, kind="steps")
    assert next(records).steps == ["a"] and next(records).line == 2
    with pytest.raises(ReadError) as excinfo:
        next(records)
    assert (excinfo.value.line, excinfo.value.field) == (3, "steps")


# -- errors: file, line and field, nothing stored ------------------------------------------------------------


@pytest.mark.parametrize(("rows", "line", "field"), [
    ([{"prompt": "p", "steps": ["a", "b"], "ratings": [1]}], 1, "ratings"),
    ([{"prompt": "p", "steps": ["a", "b"], "ratings": [1, 2]}], 1, "ratings[1]"),
    ([{"prompt": "p", "steps": ["a"], "ratings": [True]}], 1, "ratings[0]"),
    ([{"prompt": "p", "steps": ["a", "  "]}], 1, "steps[1]"),
    ([{"prompt": "p", "steps": []}], 1, "steps"),
    ([{"prompt": [{"role": "robot", "content": "x"}], "steps": ["a"]}], 1, "prompt"),
    ([{"prompt": "p", "steps": ["a"], "model": "m" * 201}], 1, "model"),
    ([{"prompt": "p", "steps": ["a"]}, {"steps": ["a"], "prompt": "p", "ratings": [1], "outcome": "maybe"}],
     2, "outcome"),
    ([{"input": "q", "steps": ["a", "b"], "mistake_index": None, "target": "1"},
      {"input": "q", "steps": ["a", "b"], "mistake_index": 2, "target": "1"}], 2, "mistake_index"),
    ([{"input": "q", "steps": ["a"], "mistake_index": "0"}], 1, "mistake_index"),
    ([{"input": "", "steps": ["a"], "mistake_index": None}], 1, "input"),
    ([{"input": "Q? Step 1: a ки", "label": "Q? Step 1: a x"}], 1, "label"),
    ([{"input": "Q? Step 1: a ки", "label": "Q? Step 1: a +++"}], 1, "label"),
    ([{"input": "Q? First: a ки", "label": "Q? First: a +"}], 1, "input"),
    ([{"input": "Q? Step 1: a ки and more", "label": "Q? Step 1: a + and more"}], 1, "input"),
    ([{"question": {"problem": "p"}, "label": {"steps": [{"completions": [{"text": "a", "rating": 5}]}]}}],
     1, "label.steps[0].completions[0].rating"),
    ([{"question": {"problem": "p"}, "label": {"steps": [
        {"completions": [{"text": "a", "rating": 1}], "chosen_completion": 3}]}}],
     1, "label.steps[0].chosen_completion"),
    ([{"question": {"problem": "p"}, "label": {"finish_reason": "done", "steps": [
        {"completions": [{"text": "a", "rating": 1}], "chosen_completion": 0}]}}], 1, "label.finish_reason"),
    ([{"question": {}, "label": {"steps": []}}], 1, "question.problem"),
    (["{not json"], 1, "(json)"),
    ([{"what": "ever"}], 1, "(row)"),
])
def test_bad_record_names_file_line_and_field_and_stores_nothing(tmp_path, rows, line, field):
    project = steps_project()
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ReadError) as excinfo:
        step_items_import(project=project, path=path, display_name="upload.jsonl")
    assert (excinfo.value.path, excinfo.value.line, excinfo.value.field) == ("upload.jsonl", line, field)
    assert f"upload.jsonl, line {line}" in str(excinfo.value)
    assert not Prompt.objects.filter(project=project).exists()
    assert not StepItem.objects.filter(project=project).exists()


def test_error_in_a_later_chunk_rolls_back_the_stored_chunks(tmp_path):
    project = steps_project()
    rows = [{"input": f"q{i}", "steps": ["a", "b"], "mistake_index": 1, "target": "x"} for i in range(9)]
    rows.append({"input": "q", "steps": ["a"], "mistake_index": 7, "target": "x"})
    seen = []
    with pytest.raises(ReadError) as excinfo:
        step_items_import(project=project, path=write_jsonl(tmp_path / "b.jsonl", rows), chunk_size=4,
                          progress=seen.append)
    assert seen == [4, 8], "two chunks were stored before the bad line"
    assert (excinfo.value.line, excinfo.value.field) == (10, "mistake_index")
    assert not StepItem.objects.filter(project=project).exists()
    assert not StepLabel.objects.filter(item__project=project).exists()


def test_progress_reports_rows_after_each_chunk(tmp_path):
    project = steps_project()
    rows = [{"prompt": f"p{i}", "steps": ["a"], "ratings": [1]} for i in range(5)]
    seen = []
    result = step_items_import(project=project, path=write_jsonl(tmp_path / "s.jsonl", rows), chunk_size=2,
                               progress=seen.append)
    assert seen == [2, 4, 5] and result.items == 5
    assert StepLabel.objects.filter(item__project=project, source="auto").count() == 5


def test_refuses_a_pairwise_project_an_unknown_format_and_an_empty_file(tmp_path):
    with pytest.raises(ReadError) as excinfo:
        step_items_import(project=ProjectFactory(), path=DATA / "bbm.jsonl")
    assert excinfo.value.field == "(project)"
    project = steps_project()
    with pytest.raises(ReadError) as excinfo:
        step_items_import(project=project, path=DATA / "bbm.jsonl", fmt="csv")
    assert excinfo.value.field == "(format)"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ReadError) as excinfo:
        step_items_import(project=project, path=empty)
    assert excinfo.value.field == "(file)"
    assert not StepItem.objects.exists()


@pytest.mark.parametrize(("row", "field", "path"), [
    ({"prompt": "p", "steps": ["a", "b\u0000"]}, "steps", "steps[1]"),
    ({"prompt": "p", "steps": ["a"], "metadata": {"k\u0000": "v"}}, "metadata", "metadata (a key)"),
])
def test_nul_characters_are_refused_naming_the_field(tmp_path, row, field, path):
    """The stored text would not be what the file said: refused, with its line and field."""
    project = steps_project()
    with pytest.raises(ReadError) as excinfo:
        step_items_import(project=project, path=write_jsonl(tmp_path / "nul.jsonl", [row]))
    assert (excinfo.value.line, excinfo.value.field) == (1, field)
    assert f"{path}: holds a NUL character" in str(excinfo.value)
    assert not StepItem.objects.filter(project=project).exists()


def test_all_big_bench_mistake_rows_import():
    if not BBM.exists():
        pytest.skip("shared BIG-Bench Mistake sample not present")
    project = steps_project()
    files = sorted(BBM.glob("*.jsonl"))
    assert len(files) == 4
    total = sum(step_items_import(project=project, path=path, chunk_size=128).items for path in files)
    assert total == 1200
    assert StepLabel.objects.filter(item__project=project, source="auto").count() == 1200
    with_mistake = StepLabel.objects.filter(item__project=project, finish_reason="found_error").count()
    assert with_mistake == 1200 - 142, "SOURCE.md: 142 rows have no mistake"


# -- steps_split -------------------------------------------------------------------------------------------


def test_split_blank_lines():
    assert steps_split("First.\n\n  \nSecond\nstill second.\r\n\r\nThird. ", "blank_lines") == [
        "First.", "Second\nstill second.", "Third."]


def test_split_lines():
    assert steps_split("a = 1\n\n  b = 2  \nc = 3", "lines") == ["a = 1", "b = 2", "c = 3"]


def test_split_numbered_step_k():
    text = "Let me think.\nStep 1: list\n1. one\n2. two\nStep 2: add them\nSTEP 3) done\nStep 5: not next"
    assert steps_split(text, "numbered") == [
        "Let me think.", "Step 1: list\n1. one\n2. two", "Step 2: add them", "STEP 3) done\nStep 5: not next"]


def test_split_numbered_k_dot_and_paren_styles():
    assert steps_split("1. first\n2) aside\n2. second\n 3. third 4. inline\n3.5 is a number", "numbered") == [
        "1. first\n2) aside", "2. second", "3. third 4. inline\n3.5 is a number"]
    assert steps_split("1) a\n2) b", "numbered") == ["1) a", "2) b"]
    assert steps_split("no numbers here", "numbered") == ["no numbers here"]


def test_split_sentences():
    text = 'So x = 3.5 here. Then (e.g. this) holds! Is it? yes it is. He said "Done." Next.\n\nDr. Who is new'
    assert steps_split(text, "sentences") == [
        "So x = 3.5 here.", "Then (e.g. this) holds!", "Is it? yes it is.", 'He said "Done."', "Next.",
        "Dr. Who is new"]


def test_split_unknown_rule():
    with pytest.raises(ValueError, match="unknown split rule"):
        steps_split("a", "given")
