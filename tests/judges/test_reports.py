"""The judge report: each figure with its n, ties as a verdict of their own (never scored as B), accuracy over
decided pairs next to accuracy over all, p-values at full precision (shown as 1.7e-24, never 0.0), the
reliability diagram, the per-item table, and each judge's verdict on the review page."""

from __future__ import annotations

import math
import re

import pytest
from django.urls import reverse

from annotate.services import pair_label_submit
from judges.models import AIJudgment, Judge
from judges.reports import judge_item_verdicts, judge_report, reliability_svg
from prefdata.stats import p_value_text
from synth.models import ModelEndpoint
from tests.factories import MembershipFactory, PairItemFactory, PairLabelFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _judge(name="swap-judge", debiasing=Judge.Debiasing.SWAP):
    endpoint, _ = ModelEndpoint.objects.get_or_create(name="scripted", defaults={"path": "unused"})
    return Judge.objects.create(name=name, endpoint=endpoint, debiasing=debiasing)


def _judgment(judge, item, *, verdict, probability, ab=None, ba=None):
    ab = ab if ab is not None else verdict
    ba = ba if ba is not None else verdict
    return AIJudgment.objects.create(judge=judge, item=item, template_version=judge.template_version, verdict=verdict,
                                     probability=probability, verdict_ab=ab, verdict_ba=ba, prob_a_ab=probability,
                                     prob_a_ba=probability)


@pytest.fixture
def twenty_pairs():
    """20 pairs, each with one person's verdict: 11 A, 9 B (people said B on 45%)."""
    project = ProjectFactory()
    person = UserFactory()
    items = []
    for i in range(20):
        item = PairItemFactory(project=project)
        pair_label_submit(item=item, annotator=person, verdict="A" if i < 11 else "B", strength=2)
        items.append(item)
    return project, items


def test_a_judge_of_ties_is_not_scored_as_saying_b(twenty_pairs, client):
    """Bug: a tie (p = 0.5) fell in the lowest confidence bin and was scored as a B verdict, so a swap judge
    that gave only ties showed "people agree 0.45", the share of B answers."""
    project, items = twenty_pairs
    judge = _judge()
    for i, item in enumerate(items):  # every pair flipped with the order: a tie under swap debiasing
        _judgment(judge, item, verdict="tie", probability=0.5, ab="A" if i % 2 else "B", ba="B" if i % 2 else "A")
    report = judge_report(judge=judge, project=project)
    assert report["calibration"] == []  # no decided judgment: nothing to calibrate
    assert report["calibration_ties"] == 20
    assert (report["ties_count"], report["ties"], report["decided"]) == (20, 1.0, 0)
    assert (report["accuracy"], report["accuracy_n"]) == (0.0, 20)  # over all pairs a tie is a miss
    assert (report["accuracy_decided"], report["accuracy_decided_n"]) == (None, 0)
    assert report["agreement_text"] == "20 of 20 ties; no decided pairs"
    assert report["first_position_after"] is None and report["first_position_after_n"] == 0
    svg = str(report["calibration_svg"])
    assert "0.45" not in svg and "no decided judgment" in svg and "20 ties left out" in svg

    client.force_login(MembershipFactory(project=project, researcher=True).user)
    html = client.get(reverse("judges:runs", args=[project.pk])).content.decode()
    assert "20 of 20 ties; no decided pairs" in html
    assert "people agree 0.45" not in html
    assert "0%" not in _stat(html, "agree with people, all pairs")
    assert "20 of 20 ties" in _stat(html, "agree with people, all pairs")
    assert "no decided pairs" in _stat(html, "agree with people, decided pairs")


def _stat(html: str, caption: str) -> str:
    """The text of the report stat whose caption contains ``caption``."""
    return next(block for block in re.findall(r'<div class="stat"[^>]*>(.*?)</div>', html, re.S) if caption in block)


def test_calibration_and_accuracy_match_a_computation_by_hand(twenty_pairs):
    project, items = twenty_pairs
    judge = _judge(debiasing=Judge.Debiasing.SWAP_AVERAGE)
    human = ["A"] * 11 + ["B"] * 9
    # 6 ties, 14 decided: confident (p 0.95 / 0.05) and right on 8, unsure (0.55 / 0.45) on 6 (3 right).
    plan = []
    for i in range(20):
        if i in (0, 1, 2, 11, 12, 13):
            plan.append(("tie", 0.5))
        elif i in (3, 4, 5, 6, 14, 15, 16, 17):
            plan.append((human[i], 0.95 if human[i] == "A" else 0.05))
        else:  # 7, 8, 9, 10, 18, 19
            right = i in (7, 8, 18)
            side = human[i] if right else ("B" if human[i] == "A" else "A")
            plan.append((side, 0.55 if side == "A" else 0.45))
    for item, (verdict, p) in zip(items, plan, strict=True):
        _judgment(judge, item, verdict=verdict, probability=p)
    report = judge_report(judge=judge, project=project)
    decided = [(v, p, h) for (v, p), h in zip(plan, human, strict=True) if v != "tie"]
    assert report["decided"] == len(decided) == 14
    assert report["accuracy"] == round(sum(v == h for v, _, h in decided) / 20, 4) == 0.55
    assert report["accuracy_decided"] == round(11 / 14, 4)
    assert report["accuracy_decided_n"] == 14 and report["ties_with_humans"] == 6
    assert report["agreement_text"] == "agrees on 11 of 14 decided pairs; 6 of 20 ties"
    bins = {row["low"]: row for row in report["calibration"]}
    assert set(bins) == {0.5, 0.9}
    low, high = bins[0.5], bins[0.9]
    assert (low["count"], low["accuracy"], low["confidence"]) == (6, 0.5, 0.55)
    assert (high["count"], high["accuracy"], high["confidence"]) == (8, 1.0, 0.95)
    assert sum(row["count"] for row in report["calibration"]) == 14  # the ties are in no bin
    svg = str(report["calibration_svg"])
    assert "n=6" in svg and "n=8" in svg and "judge confidence" in svg and "people agree" in svg
    assert "style=" not in svg and "<script" not in svg  # the CSP allows neither


def test_position_bias_p_value_keeps_full_precision(client):
    """Bug: p-values were rounded to 4 places, so p = 1.8e-12 read 0.0. The report and the API keep the number;
    pages show it in scientific notation."""
    project = ProjectFactory()
    judge = _judge(name="first-picker", debiasing=Judge.Debiasing.SWAP)
    for _ in range(40):  # each order picks the response shown first: 80 of 80 single-order verdicts
        _judgment(judge, PairItemFactory(project=project), verdict="tie", probability=0.5, ab="A", ba="B")
    report = judge_report(judge=judge, project=project)
    expected = 2 * 0.5**80  # two-sided binomial test, 80 of 80
    assert report["first_position_p_value"] == pytest.approx(expected, rel=1e-12)
    assert report["first_position_p_value"] != 0.0 and report["first_position_p_value_n"] == 80
    assert report["first_position_before"] == 1.0 and report["first_position_before_n"] == 80

    researcher = MembershipFactory(project=project, researcher=True).user
    client.force_login(researcher)
    api, = client.get(reverse("api_judge_reports", args=[project.pk])).json()
    assert api["first_position_p_value"] == pytest.approx(expected, rel=1e-12)
    html = client.get(reverse("judges:runs", args=[project.pk])).content.decode()
    assert "p = 1.7e-24" in html
    assert "40 of 40 ties; no pair with a human verdict yet" in html


@pytest.mark.parametrize("value, text", [(1.8e-12, "1.8e-12"), (2 * 0.5**80, "1.7e-24"), (0.0123, "0.0123"),
                                         (0.5, "0.5"), (1.0, "1"), (None, "n/a"), (math.nan, "n/a"),
                                         (0.0, "< 1e-300")])
def test_p_value_text(value, text):
    assert p_value_text(value) == text


def test_reliability_svg_is_large_and_labelled():
    svg = str(reliability_svg([{"low": 0.5, "high": 0.6, "count": 3, "confidence": 0.55, "accuracy": 0.6667}]))
    assert 'width="420"' in svg and 'height="320"' in svg
    assert "n=3" in svg and "judge confidence in its chosen side" in svg and "people agree (share)" in svg


def test_item_table_pages_filters_and_marks_disputes(twenty_pairs, client):
    project, items = twenty_pairs
    judge = _judge(debiasing=Judge.Debiasing.SWAP_AVERAGE)
    for item in items:  # always A: right on the 11 A pairs, wrong on the 9 B ones
        _judgment(judge, item, verdict="A", probability=0.8)
    PairLabelFactory(item=items[12], verdict="A")  # people disagree on item 12: it is on the review page
    page = judge_item_verdicts(judge=judge, project=project, per_page=8)
    assert page.paginator.count == 20 and len(page.object_list) == 8
    wrong = judge_item_verdicts(judge=judge, project=project, show="disagree", per_page=50)
    assert [r.item_id for r in wrong] == [item.pk for item in items[11:] if item.pk != items[12].pk]
    disputed = [r for r in judge_item_verdicts(judge=judge, project=project, per_page=50) if r.disputed]
    assert [r.item_id for r in disputed] == [items[12].pk]

    client.force_login(MembershipFactory(project=project, researcher=True).user)
    url = reverse("judges:judge_items", args=[project.pk, judge.pk])
    html = client.get(url, {"show": "disagree"}).content.decode()
    assert f"#dispute-{items[13].pk}" not in html  # not disputed by people: no review anchor
    assert f"Pair {items[13].pk}" in html
    html = client.get(url).content.decode()
    assert reverse("annotate:review", args=[project.pk]) + f"?all=1#dispute-{items[12].pk}" in html
    # A stranger gets 404, an annotator 403.
    client.force_login(UserFactory())
    assert client.get(url).status_code == 404
    client.force_login(MembershipFactory(project=project).user)
    assert client.get(url).status_code == 403


def test_review_page_shows_each_judges_verdict(twenty_pairs, client):
    project, items = twenty_pairs
    PairLabelFactory(item=items[0], verdict="B")  # a dispute
    judge = _judge(debiasing=Judge.Debiasing.SWAP)
    _judgment(judge, items[0], verdict="tie", probability=0.5, ab="A", ba="B")
    other = _judge(name="other-judge", debiasing=Judge.Debiasing.NONE)
    _judgment(other, items[0], verdict="A", probability=0.9, ab="A", ba="")
    client.force_login(MembershipFactory(project=project, researcher=True).user)
    html = client.get(reverse("annotate:review", args=[project.pk])).content.decode()
    block = html[html.index(f'id="dispute-{items[0].pk}"'):]
    block = block[: block.index("</table>", block.index("judge-verdicts"))]
    assert "swap-judge" in block and "other-judge" in block
    assert "Tie" in block and "A first: A" in block and "B first: B" in block
