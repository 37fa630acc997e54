import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotate.importers import step_items_import
from annotate.models import Project, StepItem, StepLabel
from tests.conftest import SHARED_DATA
from tests.factories import ProjectFactory, PromptFactory, UserFactory
from training.step_exports import (
    StepAggregate,
    outcome_rows,
    prm800k_rows,
    step_item_ratings,
    stepwise_labels,
    stepwise_rows,
)

pytestmark = pytest.mark.django_db

BBM = SHARED_DATA / "big-bench-mistake"


@pytest.fixture
def project() -> Project:
    return ProjectFactory(task_kind=Project.TaskKind.STEPS)


def step_item(project, steps, *, problem="What is 6 * 7?", **fields) -> StepItem:
    prompt = PromptFactory(project=project, messages=[{"role": "system", "content": "Be careful."},
                                                      {"role": "user", "content": problem}])
    return StepItem.objects.create(project=project, prompt=prompt, steps=steps, **fields)


def label(item, ratings, *, source="human", source_name="", **fields) -> StepLabel:
    annotator = UserFactory() if source == "human" else None
    return StepLabel.objects.create(item=item, annotator=annotator, source=source, source_name=source_name,
                                    ratings=ratings, **fields)


# -- combining labels -------------------------------------------------------------------------------------


def test_ratings_are_the_per_step_majority_of_that_source(project):
    item = step_item(project, ["a", "b", "c"])
    first = label(item, [1, 1, -1], outcome="incorrect")
    second = label(item, [1, 0, -1], outcome="incorrect")
    third = label(item, [1, 1, 1], outcome="correct")
    label(item, [-1, -1, -1], source="ai", source_name="judge")
    aggregate = step_item_ratings(project=project)[item.pk]
    assert aggregate == StepAggregate(ratings=(1, 1, -1), outcome="incorrect", finish_reason="found_error",
                                      labels=(first.pk, second.pk, third.pk), adjudicated=False)
    assert step_item_ratings(project=project, source="ai")[item.pk].ratings == (-1, -1, -1)
    assert step_item_ratings(project=project, source="auto") == {}


def test_a_level_step_has_no_majority_and_unlabeled_steps_do_not_vote(project):
    item = step_item(project, ["a", "b", "c"])
    label(item, [1, -1, None], finish_reason="found_error")
    label(item, [1, 1, 1])
    aggregate = step_item_ratings(project=project)[item.pk]
    assert aggregate.ratings == (1, None, 1)
    assert aggregate.finish_reason == "solution", "no combined -1: the other labels' reason"
    assert aggregate.outcome == ""


def test_adjudication_wins_for_people_only(project):
    item = step_item(project, ["a", "b"], final_ratings=[1, -1], final_outcome="incorrect")
    label(item, [1, 1], outcome="correct")
    label(item, [1, 1], source="auto", source_name="mc")
    human = step_item_ratings(project=project)[item.pk]
    assert (human.ratings, human.outcome, human.adjudicated) == ((1, -1), "incorrect", True)
    auto = step_item_ratings(project=project, source="auto")[item.pk]
    assert (auto.ratings, auto.adjudicated) == ((1, 1), False)
    # An adjudication alone is enough for the human export.
    lone = step_item(project, ["x"], final_ratings=[1])
    assert step_item_ratings(project=project)[lone.pk].ratings == (1,)


def test_gold_items_and_labels_of_another_length_are_left_out(project):
    gold = step_item(project, ["a"], is_gold=True, gold_ratings=[1])
    label(gold, [1])
    resplit = step_item(project, ["a", "b", "c"])
    stale = label(resplit, [1, -1])
    fresh = label(resplit, [1, 1, 1])
    ratings = step_item_ratings(project=project)
    assert gold.pk not in ratings
    assert ratings[resplit.pk].labels == (fresh.pk,) and stale.pk not in ratings[resplit.pk].labels


def test_unknown_source_or_neutral_is_refused(project):
    with pytest.raises(ValueError, match="source"):
        step_item_ratings(project=project, source="both")
    with pytest.raises(ValueError, match="neutral"):
        stepwise_rows(project=project, neutral="skip")


# -- stepwise ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ratings", "neutral", "expected"), [
    ([1, 1, 1], "positive", [True, True, True]),
    ([1, 0, 1], "positive", [True, True, True]),
    ([1, 0, 1], "negative", [True, False, True]),
    ([1, -1, 1, -1], "positive", [True, False]),
    ([-1, 1], "positive", [False]),
    ([1, None, 1], "positive", [True]),
    ([None, 1], "positive", []),
    ([0, -1, None], "negative", [False, False]),
])
def test_stepwise_label_rule(ratings, neutral, expected):
    assert stepwise_labels(ratings, neutral=neutral) == expected


def test_stepwise_rows_keep_the_steps_up_to_the_first_error(project):
    wrong = step_item(project, ["s1", "s2", "s3", "s4"], problem="Is 91 prime?")
    mine = label(wrong, [1, 0, -1, 1])
    unlabeled = step_item(project, ["t1", "t2"])
    label(unlabeled, [None, None])
    right = step_item(project, ["u1", "u2"])
    label(right, [1, 1])
    rows, lineage = stepwise_rows(project=project)
    assert rows == [
        {"prompt": "Is 91 prime?", "completions": ["s1", "s2", "s3"], "labels": [True, True, False]},
        {"prompt": "What is 6 * 7?", "completions": ["u1", "u2"], "labels": [True, True]},
    ]
    assert lineage[0] == {"item": wrong.pk, "prompt": wrong.prompt_id, "by": "human", "labels": [mine.pk],
                          "adjudicated": False}
    negative, _ = stepwise_rows(project=project, neutral="negative")
    assert negative[0]["labels"] == [True, False, False]
    json.dumps(rows)  # plain JSON values


def test_exports_only_read_in_a_fixed_number_of_queries(project):
    for n in range(5):
        item = step_item(project, ["a", "b"], problem=f"p{n}")
        label(item, [1, -1])
        label(item, [1, 1], source="auto", source_name="mc")
    with CaptureQueriesContext(connection) as queries:
        rows, _ = stepwise_rows(project=project)
        outcome_rows(project=project, source="auto")
        prm800k_rows(project=project)
    assert len(rows) == 5
    assert len(queries) == 6, [q["sql"] for q in queries]
    assert all(q["sql"].lstrip().upper().startswith(("SELECT", "DECLARE")) for q in queries)


# -- PRM800K-like and outcome rows ---------------------------------------------------------------------------


def test_prm800k_rows_keep_every_rating_per_label_and_the_adjudication(project):
    item = step_item(project, ["a", "b", "c"], reference_answer="42", final_ratings=[1, 0, 1])
    human = label(item, [0, -1, None], finish_reason="found_error", flags=[1], time_spent_ms=900)
    label(item, [1, 1, 1], source="auto", source_name="mc", finish_reason="gave_up", outcome="correct")
    rows, lineage = prm800k_rows(project=project)
    assert [r["label_source"] for r in rows] == ["human", "auto", "adjudication"]
    first = rows[0]
    assert first["labeler"] == human.annotator_id
    assert first["question"]["problem"] == "What is 6 * 7?" and first["question"]["ground_truth_answer"] == "42"
    assert first["question"]["pre_generated_steps"] == ["a", "b", "c"]
    assert first["label"]["steps"] == [
        {"completions": [{"text": "a", "rating": 0, "flagged": False}], "human_completion": None,
         "chosen_completion": 0},
        {"completions": [{"text": "b", "rating": -1, "flagged": True}], "human_completion": None,
         "chosen_completion": None},
    ], "labeling stopped at the error, which was not continued"
    assert (first["label"]["finish_reason"], first["label"]["total_time"]) == ("found_error", 900)
    assert (rows[1]["labeler"], rows[1]["label"]["finish_reason"], rows[1]["outcome"]) == ("mc", "give_up", "correct")
    assert [s["completions"][0]["rating"] for s in rows[2]["label"]["steps"]] == [1, 0, 1]
    assert [entry["label"] for entry in lineage] == [human.pk, human.pk + 1, None]
    auto_only, _ = prm800k_rows(project=project, source="auto")
    assert [r["label_source"] for r in auto_only] == ["auto"]


def test_outcome_rows_from_verdicts_else_from_the_steps(project):
    judged = step_item(project, ["a", "b"], solution_text="a then b")
    label(judged, [1, 1], outcome="incorrect")
    erring = step_item(project, ["c", "d"])
    label(erring, [1, -1])
    clean = step_item(project, ["e", "f"])
    label(clean, [1, 0])
    unsure = step_item(project, ["g", "h"])
    label(unsure, [1, None])
    rows, lineage = outcome_rows(project=project)
    assert rows == [
        {"prompt": "What is 6 * 7?", "completion": "a then b", "label": False},
        {"prompt": "What is 6 * 7?", "completion": "c\n\nd", "label": False},
        {"prompt": "What is 6 * 7?", "completion": "e\n\nf", "label": True},
    ]
    assert [entry["from"] for entry in lineage] == ["outcome", "steps", "steps"]
    assert unsure.pk not in {entry["item"] for entry in lineage}


# -- round trip ---------------------------------------------------------------------------------------------


def test_big_bench_mistake_round_trip_reproduces_every_mistake_index(project):
    if not BBM.exists():
        pytest.skip("shared BIG-Bench Mistake sample not present")
    source_rows = []
    for path in sorted(BBM.glob("*.jsonl")):
        step_items_import(project=project, path=path, chunk_size=500)
        source_rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    assert len(source_rows) == 1200

    rows, lineage = stepwise_rows(project=project, source="auto")
    assert len(rows) == 1200, "every row has at least one labeled step"
    items = dict(StepItem.objects.filter(project=project).values_list("id", "metadata"))
    for source, row, entry in zip(source_rows, rows, lineage, strict=True):
        assert items[entry["item"]]["mistake_index"] == source["mistake_index"]
        first_false = row["labels"].index(False) if False in row["labels"] else None
        assert first_false == source["mistake_index"]
        assert row["prompt"] == source["input"].strip()
        assert row["completions"] == [s.strip() for s in source["steps"]][:len(row["labels"])]
        assert len(row["labels"]) == (len(source["steps"]) if source["mistake_index"] is None
                                      else source["mistake_index"] + 1)

    # The same labels through the PRM800K-like export: the first -1 is the mistake, every rating kept.
    prm_rows, _ = prm800k_rows(project=project, source="auto")
    assert len(prm_rows) == 1200
    for source, row in zip(source_rows, prm_rows, strict=True):
        ratings = [s["completions"][0]["rating"] for s in row["label"]["steps"]]
        assert (ratings.index(-1) if -1 in ratings else None) == source["mistake_index"]
        assert row["source_name"].startswith("bbm:")

    # Outcomes: answer == target where both are present, else no mistake (one row has no answer).
    outcomes, outcome_lineage = outcome_rows(project=project, source="auto")
    expected = [s["answer"].strip() == s["target"].strip() if s["answer"] is not None else s["mistake_index"] is None
                for s in source_rows]
    assert [r["label"] for r in outcomes] == expected
    assert sum(entry["from"] == "steps" for entry in outcome_lineage) == 1
