import math
import re

import pytest

from judges.models import AIJudgment, Judge
from judges.services import items_judge, judge_prompt, judgment_combine
from synth.models import ModelEndpoint
from tests.factories import CompletionFactory, PairItemFactory, ProjectFactory, PromptFactory


class FirstBiasedJudge:
    """A scripted judge: prefers the better response, but prefers whatever is shown first more.

    Each response says its true quality ("quality=0.7"); P(first is better) = sigmoid(2 + 3 * (q1 - q2)),
    so the first response always wins when judged in one order.
    """

    name = "scripted"

    def score(self, conversations, candidates):
        out = []
        for conversation, cands in zip(conversations, candidates, strict=True):
            assert cands == ["A", "B"]
            q_first, q_second = map(float, re.findall(r"quality=([0-9.]+)", conversation[-1]["content"]))
            p_first = 1 / (1 + math.exp(-(2 + 3 * (q_first - q_second))))
            out.append([math.log(p_first), math.log(1 - p_first)])
        return out


@pytest.fixture
def biased_items(db):
    project = ProjectFactory()
    items = []
    for i in range(10):
        prompt = PromptFactory(project=project)
        better_is_a = i % 2 == 0
        qa, qb = (0.9, 0.4) if better_is_a else (0.4, 0.9)
        items.append(PairItemFactory(project=project, prompt=prompt,
                                     completion_a=CompletionFactory(prompt=prompt, text=f"quality={qa}"),
                                     completion_b=CompletionFactory(prompt=prompt, text=f"quality={qb}")))
    return items


def make_judge(debiasing):
    endpoint, _ = ModelEndpoint.objects.get_or_create(name="scripted", defaults={"path": "unused"})
    return Judge.objects.create(name=f"judge-{debiasing}", endpoint=endpoint, debiasing=debiasing)


def truth(item):
    return "A" if item.completion_a.text.endswith("0.9") else "B"


def test_without_debiasing_the_first_position_always_wins(biased_items):
    judgments = items_judge(judge=make_judge(Judge.Debiasing.NONE), items=biased_items, backend=FirstBiasedJudge())
    assert {j.verdict for j in judgments} == {"A"}
    assert all(j.verdict_ba == "" and j.prob_a_ba is None for j in judgments)


def test_swap_average_removes_the_position_bias(biased_items):
    judgments = items_judge(judge=make_judge(Judge.Debiasing.SWAP_AVERAGE), items=biased_items,
                            backend=FirstBiasedJudge())
    assert [j.verdict for j in judgments] == [truth(i) for i in biased_items]
    for j in judgments:
        # Both orders were judged, and each picked the response shown first.
        assert (j.verdict_ab, j.verdict_ba) == ("A", "B")
        assert j.flipped
        assert math.isclose(j.probability, (j.prob_a_ab + j.prob_a_ba) / 2)


def test_swap_makes_inconsistent_pairs_ties(biased_items):
    judgments = items_judge(judge=make_judge(Judge.Debiasing.SWAP), items=biased_items, backend=FirstBiasedJudge())
    assert {j.verdict for j in judgments} == {"tie"}


def test_judging_twice_stores_one_judgment_per_item(biased_items):
    judge = make_judge(Judge.Debiasing.SWAP_AVERAGE)
    items_judge(judge=judge, items=biased_items, backend=FirstBiasedJudge())
    items_judge(judge=judge, items=biased_items[:3], backend=FirstBiasedJudge())
    assert AIJudgment.objects.filter(judge=judge).count() == len(biased_items)
    judge.template_version += 1  # a new template version judges again
    judge.save()
    items_judge(judge=judge, items=biased_items[:3], backend=FirstBiasedJudge())
    assert AIJudgment.objects.filter(judge=judge).count() == len(biased_items) + 3


def test_combine_rules():
    assert judgment_combine(debiasing="swap", prob_a_ab=0.8, prob_a_ba=0.7) == ("A", 0.75)
    assert judgment_combine(debiasing="swap", prob_a_ab=0.8, prob_a_ba=0.3) == ("tie", 0.5)
    assert judgment_combine(debiasing="swap_average", prob_a_ab=0.9, prob_a_ba=0.3) == ("A", 0.6)
    assert judgment_combine(debiasing="none", prob_a_ab=0.2, prob_a_ba=None) == ("B", 0.2)


def test_template_placeholders_in_responses_are_not_substituted():
    prompt = judge_prompt(template="{conversation}|{response_a}|{response_b}",
                          conversation=[{"role": "user", "content": "q {response_b}"}], first="x {response_a}",
                          second="y")
    assert prompt == [{"role": "user", "content": "User: q {response_b}|x {response_a}|y"}]


def test_disputed_items_are_prioritized_for_people(biased_items):
    from annotate.models import ItemSlot
    from annotate.services import item_lease_next
    from judges.services import disputed_items_prioritize
    from tests.factories import UserFactory

    project = biased_items[0].project
    consistent = make_judge(Judge.Debiasing.NONE)  # says A for every pair, never flips (one order)
    items_judge(judge=consistent, items=biased_items, backend=FirstBiasedJudge())
    assert disputed_items_prioritize(project=project) == len(biased_items)
    assert set(ItemSlot.objects.filter(project=project).values_list("priority", flat=True)) == {0}
    swapper = make_judge(Judge.Debiasing.SWAP_AVERAGE)  # flips on every pair; agrees with "A" on half
    items_judge(judge=swapper, items=biased_items, backend=FirstBiasedJudge())
    disputed_items_prioritize(project=project)
    priority = dict(ItemSlot.objects.filter(project=project).values_list("item_id", "priority"))
    for item in biased_items:
        assert priority[item.pk] == (1 if truth(item) == "A" else 2)
    served = item_lease_next(project=project, user=UserFactory())
    assert truth(served) == "B"  # judges disagree on it: people see it first


def test_report_measures_bias_agreement_and_calibration(biased_items, client):
    from annotate.services import pair_label_submit
    from judges.reports import judge_report
    from tests.factories import MembershipFactory, UserFactory

    project = biased_items[0].project
    people = UserFactory()
    for item in biased_items:
        pair_label_submit(item=item, annotator=people, verdict=truth(item), strength=3, time_spent_ms=36_000)
    naive = make_judge(Judge.Debiasing.NONE)
    items_judge(judge=naive, items=biased_items, backend=FirstBiasedJudge())
    debiased = make_judge(Judge.Debiasing.SWAP_AVERAGE)
    items_judge(judge=debiased, items=biased_items, backend=FirstBiasedJudge())
    before = judge_report(judge=naive, project=project)
    assert before["first_position_before"] == 1.0 and before["accuracy"] == 0.5 and before["flip_rate"] is None
    after = judge_report(judge=debiased, project=project)
    assert after["first_position_before"] == 1.0  # each single order still picks the first shown
    assert after["flip_rate"] == 1.0 and after["accuracy"] == 1.0 and after["kappa"] == 1.0
    assert after["first_position_after"] == 0.5  # half the pairs really are A-better
    assert sum(row["count"] for row in after["calibration"]) == len(biased_items)
    assert all(row["accuracy"] == 1.0 for row in after["calibration"])
    project.annotator_hourly_rate = 20.0
    project.save()
    assert judge_report(judge=debiased, project=project)["human_cost_per_label"] == pytest.approx(0.2)
    researcher = MembershipFactory(project=project, researcher=True).user
    client.force_login(researcher)
    html = client.get(f"/projects/{project.pk}/judges/").content.decode()
    assert "<svg" in html and "Reliability" in html
    api = client.get(f"/api/projects/{project.pk}/judges/reports/").json()
    assert {r["judge"] for r in api} == {naive.name, debiased.name}
