"""One plurality rule for every majority vote of the platform, and the step rules built on it."""

import pytest

from prefdata.stats import aggregate_verdicts, agreement_with_majority, plurality
from prefdata.steps import (
    finish_reason_for,
    first_error,
    ratings_stop_at_first_error,
    step_majority,
    stepwise_labels,
)


def test_plurality():
    assert plurality(["A", "B", "A"]) == "A"
    assert plurality(["A", "B"]) is None, "the top two are level"
    assert plurality(["A", "A", "B", "B", "tie"]) is None
    assert plurality([]) is None, "nothing given"
    assert plurality([0, 1, 0]) == 0, "a falsy winner is still a winner"
    assert plurality(iter(["x"])) == "x"


def test_weighted_plurality_ranks_weights_not_counts():
    assert plurality(["A", "B", "B"], weights=[4, 1, 1]) == "A"
    assert plurality(["A", "B"], weights=[2, 2]) is None
    assert plurality(["A", "B"], weights=[0, 0]) is None, "nothing of positive weight"
    with pytest.raises(ValueError):
        plurality(["A", "B"], weights=[1])


def test_step_rules():
    assert first_error([1, 0, -1, -1]) == 2 and first_error([1, None]) is None and first_error([]) is None
    assert ratings_stop_at_first_error([1, -1, 1, 0]) == [1, -1, None, None]
    assert ratings_stop_at_first_error([1, 0]) == [1, 0]
    assert (finish_reason_for([1, -1]), finish_reason_for([1, None])) == ("found_error", "solution")
    assert step_majority([[1, 0, None], [1, -1, None], [-1, -1, None]]) == [1, -1, None]
    assert stepwise_labels([1, 0, -1, 1], neutral="negative") == [True, False, False]


@pytest.mark.django_db
def test_the_former_majority_votes_agree_on_a_tie():
    """Each place that used to count its own majority now asks ``plurality``: on a level vote they all
    find no majority."""
    from annotate.models import Project, StepItem, StepLabel
    from annotate.quality import project_quality
    from tests.factories import PairItemFactory, PairLabelFactory, ProjectFactory, PromptFactory, UserFactory
    from training.step_exports import step_item_ratings

    # 1. Verdicts of people and AI judges (aggregate_verdicts): one A, one B.
    assert aggregate_verdicts(labels=[(1, "A", None), (1, "B", 2)])[1].verdict is None
    assert aggregate_verdicts(labels=[(1, "A", 1), (1, "B", 2), (1, "A", 1)], weighted=True)[1].verdict is None
    # 2. Agreement with the others' majority: a and b see the others split (A / B) and are not scored.
    assert agreement_with_majority(labels=[(1, "a", "A"), (1, "b", "A"), (1, "c", "B")]) == {"c": 0.0}
    # 3. Per-step majority of the review page.
    assert step_majority([[1, 1], [-1, 1]]) == [None, 1]
    # 4. The step exports: two people split on the first step.
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    item = StepItem.objects.create(project=project, prompt=PromptFactory(project=project), steps=["a", "b"])
    for ratings in ([1, 1], [-1, 1]):
        StepLabel.objects.create(item=item, annotator=UserFactory(), ratings=ratings)
    assert step_item_ratings(project=project)[item.pk].ratings == (None, 1)
    # 5. The quality page's kappa with the majority: every annotator sees the other two split.
    pairs = ProjectFactory(overlap=3)
    pair = PairItemFactory(project=pairs)
    for verdict in ("A", "B", "tie"):
        PairLabelFactory(item=pair, annotator=UserFactory(), verdict=verdict)
    quality = project_quality(project=pairs)
    assert [(a.agreement_with_majority, a.kappa_with_majority) for a in quality["annotators"]] == [(None, None)] * 3
