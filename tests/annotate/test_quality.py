import math
import re

import krippendorff
import numpy as np
import pytest
from django.urls import reverse

from annotate.quality import disputed_items, pair_item_verdicts, project_quality
from annotate.services import pair_label_submit
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeled():
    """Three annotators, six items, k=3; ann3 sees B on the left on odd items; one gold item."""
    project = ProjectFactory(overlap=3)
    researcher = MembershipFactory(project=project, researcher=True).user
    users = [MembershipFactory(project=project).user for _ in range(3)]
    items = [PairItemFactory(project=project) for _ in range(6)]
    gold = PairItemFactory(project=project, gold=True)  # gold answer "A"
    plan = {  # item index -> verdicts (ann1, ann2, ann3) with strengths
        0: [("A", 3), ("A", 2), ("A", 3)],
        1: [("B", 4), ("B", 3), ("A", 1)],
        2: [("A", 2), ("B", 2), ("tie", None)],
        3: [("B", 1), ("B", 1), ("B", 2)],
        4: [("A", 4), ("A", 4), ("B", 4)],
        5: [("tie", None), ("tie", None), ("A", 2)],
    }
    for index, verdicts in plan.items():
        for user, (verdict, strength) in zip(users, verdicts, strict=True):
            pair_label_submit(item=items[index], annotator=user, verdict=verdict, strength=strength,
                              shown_order="AB" if user != users[2] or index % 2 == 0 else "BA")
    pair_label_submit(item=gold, annotator=users[0], verdict="A")
    pair_label_submit(item=gold, annotator=users[1], verdict="B")
    return project, researcher, users, items, plan


def test_project_agreement_matches_the_reference(labeled):
    project, _, users, items, plan = labeled
    quality = project_quality(project=project)
    signed = {"A": -1, "B": 1, "tie": 0}
    data = np.array([[signed[plan[i][u][0]] * (plan[i][u][1] or 0) for i in range(6)] for u in range(3)], float)
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
    assert quality["alpha_ordinal"] == pytest.approx(expected, abs=1e-4)
    assert quality["items_with_k_labels"] == 6 and quality["labels"] == 20
    assert -1 <= quality["fleiss_kappa"] <= 1


def test_per_annotator_figures(labeled):
    project, _, users, *_ = labeled
    rows = {a.username: a for a in project_quality(project=project)["annotators"]}
    first, second, third = (rows[u.username] for u in users)
    assert (first.gold_labels, first.gold_accuracy) == (1, 1.0)
    assert (second.gold_labels, second.gold_accuracy) == (1, 0.0)
    assert third.gold_accuracy is None
    # ann1 agrees with the majority of the others on items 0, 1, 3, 4, 5 (item 2: the others split)
    assert first.agreement_with_majority == pytest.approx(1.0)
    assert third.agreement_with_majority < 0.5
    # ann3 (AB on even items, BA on odd ones) picked the left response on items 0 and 3 of 5 decisive ones.
    assert third.agreement_with_majority == pytest.approx(2 / 5, abs=1e-3)
    assert third.left_share == pytest.approx(2 / 5, abs=1e-3)
    assert first.left_share == pytest.approx(4 / 6, abs=1e-3)  # always shown AB: A-verdicts are left picks


def test_final_verdicts_majority_weighted_and_adjudicated(labeled, client):
    project, researcher, users, items, plan = labeled
    plain = pair_item_verdicts(project=project)
    assert plain[items[0].pk].verdict == "A" and plain[items[0].pk].margin == pytest.approx(8 / 3)
    assert plain[items[2].pk].verdict is None  # A, B, tie: no majority
    weighted = pair_item_verdicts(project=project, weighted=True)
    assert weighted[items[1].pk].verdict == "B"
    disputed_ids = [d["item"].pk for d in disputed_items(project=project)]
    assert items[2].pk in disputed_ids and items[0].pk not in disputed_ids and items[3].pk not in disputed_ids
    client.force_login(researcher)
    response = client.post(reverse("annotate:adjudicate", args=[project.pk, items[2].pk]),
                           {"verdict": "B", "strength": "3"})
    assert response.status_code == 302
    final = pair_item_verdicts(project=project)[items[2].pk]
    assert (final.verdict, final.margin) == ("B", 3.0)
    assert items[2].pk not in [d["item"].pk for d in disputed_items(project=project)]


def test_quality_review_and_leaderboard_pages_and_api(labeled, client):
    project, researcher, users, items, _ = labeled
    for i, item in enumerate(items):
        item.completion_a.model_name, item.completion_b.model_name = ("big", "small") if i % 2 else ("small", "big")
        item.completion_a.save()
        item.completion_b.save()
    client.force_login(researcher)
    for name in ("annotate:quality", "annotate:review", "judges:leaderboard"):
        assert client.get(reverse(name, args=[project.pk])).status_code == 200
    board = client.get(reverse("api_leaderboard", args=[project.pk])).json()["models"]
    assert {row["model"] for row in board} == {"big", "small"}
    assert all(row["lower"] <= row["rating"] <= row["upper"] for row in board)
    assert sum(row["battles"] for row in board) == 2 * 18
    data = client.get(reverse("api_quality", args=[project.pk])).json()
    assert len(data["annotators"]) == 3 and not math.isnan(data["alpha_ordinal"])
    disputes = client.get(reverse("api_disputes", args=[project.pk])).json()
    assert items[2].pk in [d["item"]["id"] for d in disputes]
    response = client.post(reverse("api_adjudicate", args=[project.pk, items[2].pk]), {"verdict": "A"},
                           content_type="application/json")
    assert response.json()["final_verdict"] == "A"
    # Annotators see none of it (403: they are members, without the researcher role).
    client.force_login(users[0])
    for name in ("annotate:quality", "annotate:review", "judges:leaderboard", "api_quality", "api_disputes",
                 "api_leaderboard"):
        assert client.get(reverse(name, args=[project.pk])).status_code == 403, name
    assert client.post(reverse("api_adjudicate", args=[project.pk, items[3].pk]), {"verdict": "A"}).status_code == 403


def test_openapi_schema_and_docs(client):
    client.force_login(UserFactory())
    schema = client.get(reverse("api_schema"), HTTP_ACCEPT="application/json").json()
    paths = set(schema["paths"])
    for path in ("/api/projects/{project_id}/next/", "/api/projects/{project_id}/items/{item_id}/label/",
                 "/api/projects/{project_id}/imports/", "/api/projects/{project_id}/leaderboard/"):
        assert path in paths
    docs = client.get(reverse("api_docs")).content.decode()
    assert "swagger" in docs.lower() and "cdn" not in docs.lower()


def test_a_tiny_position_p_value_is_shown_in_scientific_notation(client):
    """An annotator who picked the left response 40 times of 40: p = 2 * 0.5**40 = 1.8e-12, which rounding
    to four places used to show as 0.0. The API keeps the full number; the page writes it as 1.8e-12."""
    project = ProjectFactory()
    researcher = MembershipFactory(project=project, researcher=True).user
    annotator = MembershipFactory(project=project).user
    for i in range(40):
        order = "AB" if i % 2 else "BA"
        pair_label_submit(item=PairItemFactory(project=project), annotator=annotator, verdict=order[0],
                          shown_order=order)
    client.force_login(researcher)
    row = next(a for a in client.get(reverse("api_quality", args=[project.pk])).json()["annotators"]
               if a["annotator_id"] == annotator.pk)
    assert row["position_p_value"] == pytest.approx(2 * 0.5 ** 40, rel=1e-9)
    page = client.get(reverse("annotate:quality", args=[project.pk])).content.decode()
    assert "p = 1.8e-12" in page and "(0.0)" not in page


def test_the_review_page_pages_through_every_disagreement(client):
    """120 disputed pairs: 50 a page, page 3 holds the last 20 and a page past the last shows the last;
    the pager keeps "show decided ones too"."""
    project = ProjectFactory(overlap=2)
    researcher = MembershipFactory(project=project, researcher=True).user
    first, second = MembershipFactory(project=project).user, MembershipFactory(project=project).user
    items = [PairItemFactory(project=project) for _ in range(120)]
    for item in items:
        pair_label_submit(item=item, annotator=first, verdict="A")
        pair_label_submit(item=item, annotator=second, verdict="B")
    client.force_login(researcher)
    url = reverse("annotate:review", args=[project.pk])
    shown = lambda page: [int(n) for n in re.findall(r'id="dispute-(\d+)"', page)]  # noqa: E731
    one = client.get(url).content.decode()
    assert shown(one) == [i.pk for i in items[:50]] and "1–50 of 120" in one and "?page=3" in one
    three = client.get(url, {"page": 3}).content.decode()
    assert shown(three) == [i.pk for i in items[100:]] and "101–120 of 120" in three
    assert shown(client.get(url, {"page": 99}).content.decode()) == shown(three)
    assert "?all=1&amp;page=2" in client.get(url, {"all": 1}).content.decode()
