"""Step-level labels (PRM): the shared assignment, both modes, validation, page and edits."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotate.models import ItemSlot, Project, StepLabel
from annotate.services import (
    item_lease_next,
    item_skip,
    step_item_adjudicate,
    step_item_create,
    step_item_resplit,
    step_label_submit,
    step_labels_store,
)
from tests.factories import MembershipFactory, ProjectFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db

STEPS = ["Let x be the number of apples.", "Then 2x = 10.", "So x = 6.", "The answer is 6."]


def make_items(project, n=3):
    return [step_item_create(prompt=PromptFactory(project=project), steps=STEPS, reference_answer="5")
            for _ in range(n)]


def test_step_items_share_the_assignment():
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS, overlap=2)
    items = make_items(project)
    assert ItemSlot.objects.filter(project=project, step_item__isnull=False).count() == 6
    alice, bob, carol = UserFactory(), UserFactory(), UserFactory()
    assert item_lease_next(project=project, user=alice) == items[0]
    assert item_lease_next(project=project, user=alice) == items[0]  # the held lease
    assert item_lease_next(project=project, user=bob) == items[0]  # k = 2: a second slot
    assert item_lease_next(project=project, user=carol) == items[1]
    step_label_submit(item=items[0], annotator=alice, ratings=[1, 1, -1, -1], finish_reason="found_error")
    assert item_lease_next(project=project, user=alice) == items[1]
    item_skip(item=items[1], user=alice)
    assert item_lease_next(project=project, user=alice) == items[2]
    assert ItemSlot.objects.filter(step_item=items[0], done=True).count() == 1


def test_first_error_mode_stores_later_steps_as_unlabeled():
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS, step_mode=Project.StepMode.FIRST_ERROR)
    item, = make_items(project, 1)
    label = step_label_submit(item=item, annotator=UserFactory(), ratings=[1, 1, -1, 1], finish_reason="found_error",
                              outcome="incorrect")
    assert label.ratings == [1, 1, -1, None] and label.first_error == 2


def test_rate_all_mode_needs_every_step_and_coherent_finish():
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS, step_mode=Project.StepMode.RATE_ALL)
    item, = make_items(project, 1)
    user = UserFactory()
    with pytest.raises(ValidationError, match="rate every step"):
        step_label_submit(item=item, annotator=user, ratings=[1, 1, -1, None], finish_reason="found_error")
    with pytest.raises(ValidationError, match="needs a step rated -1"):
        step_label_submit(item=item, annotator=user, ratings=[1, 1, 1, 1], finish_reason="found_error")
    with pytest.raises(ValidationError, match="4 ratings"):
        step_label_submit(item=item, annotator=user, ratings=[1, 1], finish_reason="solution")
    with pytest.raises(ValidationError):
        step_label_submit(item=item, annotator=user, ratings=[1, 1, 2, 1], finish_reason="solution")
    label = step_label_submit(item=item, annotator=user, ratings=[1, 0, -1, -1], finish_reason="found_error")
    assert label.ratings == [1, 0, -1, -1]
    gave_up = step_label_submit(item=item, annotator=UserFactory(), ratings=[1, None, None, None],
                                finish_reason="gave_up")
    assert gave_up.ratings == [1, None, None, None]


def test_sources_side_by_side_and_resplit_and_adjudication():
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    item, = make_items(project, 1)
    step_item_resplit(item=item, steps=["a", "", "b", "c", "d "])
    assert item.steps == ["a", "b", "c", "d"]
    step_labels_store(item=item, source="auto", source_name="math-shepherd", ratings=[1, 1, -1, -1])
    step_labels_store(item=item, source="auto", source_name="math-shepherd", ratings=[1, -1, -1, -1])  # replaces
    step_labels_store(item=item, source="ai", source_name="judge-1", ratings=[1, 1, 1, 1])
    person = step_label_submit(item=item, annotator=UserFactory(), ratings=[1, 1, -1, -1], finish_reason="found_error")
    assert StepLabel.objects.filter(item=item).count() == 3
    assert StepLabel.objects.get(item=item, source_name="math-shepherd").first_error == 1
    assert person.source == "human"
    with pytest.raises(ValidationError, match="already has labels"):
        step_item_resplit(item=item, steps=["x"])
    reviewer = UserFactory()
    step_item_adjudicate(item=item, reviewer=reviewer, ratings=[1, 1, -1, None], outcome="incorrect")
    item.refresh_from_db()
    assert item.final_ratings == [1, 1, -1, None] and item.adjudicated_by == reviewer


def test_step_page_submit_and_edit(client):
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS, step_mode=Project.StepMode.FIRST_ERROR)
    member = MembershipFactory(project=project)
    first, second = make_items(project, 2)
    client.force_login(member.user)
    page = client.get(reverse("annotate:annotate", args=[project.pk])).content.decode()
    assert 'name="rating_3"' in page and f'data-item="{first.pk}"' in page and "Reference answer" in page
    response = client.post(reverse("annotate:steps_submit", args=[project.pk, first.pk]),
                           {"rating_0": "1", "rating_1": "1", "rating_2": "-1", "finish_reason": "found_error",
                            "outcome": "incorrect", "flag_1": "1", "corrected_step_index": "2",
                            "corrected_step": "So x = 5.", "time_spent_ms": "5000"}, HTTP_HX_REQUEST="true")
    assert f'data-item="{second.pk}"' in response.content.decode()
    label = StepLabel.objects.get(item=first, annotator=member.user)
    assert (label.ratings, label.flags, label.corrected_step, label.time_spent_ms) == (
        [1, 1, -1, None], [1], "So x = 5.", 5000)
    bad = client.post(reverse("annotate:steps_submit", args=[project.pk, second.pk]), {"rating_0": "7"})
    assert bad.status_code == 422
    last = client.get(reverse("annotate:annotate_last", args=[project.pk])).content.decode()
    assert f'data-item="{first.pk}"' in last and 'value="-1" checked' in last


def test_step_quality_agreement_gold_disputes_and_review(client):
    import krippendorff
    import numpy as np

    from annotate.models import StepItem
    from annotate.step_quality import step_disputes, step_project_quality

    project = ProjectFactory(task_kind=Project.TaskKind.STEPS, overlap=2)
    researcher = MembershipFactory(project=project, researcher=True).user
    items = make_items(project, 3)
    gold = StepItem.objects.create(project=project, prompt=PromptFactory(project=project), steps=STEPS, is_gold=True,
                                   gold_ratings=[1, 1, -1, -1])
    a, b = UserFactory(), UserFactory()
    plans = {a: [[1, 1, -1, -1], [1, 1, 1, 1], [1, 0, 1, 1]], b: [[1, 1, -1, -1], [1, -1, -1, -1], [1, 0, 1, 1]]}
    for user, plan in plans.items():
        for item, ratings in zip(items, plan, strict=True):
            step_label_submit(item=item, annotator=user, ratings=ratings,
                              finish_reason="found_error" if -1 in ratings else "solution")
    step_label_submit(item=gold, annotator=a, ratings=[1, 1, -1, -1], finish_reason="found_error")
    step_label_submit(item=gold, annotator=b, ratings=[1, 1, 1, -1], finish_reason="found_error")
    quality = step_project_quality(project=project)
    data = np.array([[r for ratings in plans[u] for r in ratings] for u in (a, b)], dtype=float)
    assert quality["alpha_steps"] == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"), abs=1e-4)
    first = np.array([[next((i for i, r in enumerate(p) if r == -1), 4) for p in plans[u]] for u in (a, b)], float)
    assert quality["alpha_first_error"] == pytest.approx(
        krippendorff.alpha(reliability_data=first, level_of_measurement="interval"), abs=1e-4)
    rows = {row["username"]: row for row in quality["annotators"]}
    assert rows[a.username]["gold_accuracy"] == 1.0 and rows[b.username]["gold_accuracy"] == 0.75
    disputes = step_disputes(project=project)
    assert [d["item"] for d in disputes] == [items[1]]
    assert disputes[0]["majority"] == [1, None, None, None]
    client.force_login(researcher)
    assert client.get(reverse("annotate:quality", args=[project.pk])).status_code == 200
    assert "Solution" in client.get(reverse("annotate:review", args=[project.pk])).content.decode()
    client.post(reverse("annotate:adjudicate", args=[project.pk, items[1].pk]),
                {"final_0": "1", "final_1": "-1", "final_2": "", "final_3": "", "outcome": "incorrect"})
    items[1].refresh_from_db()
    assert items[1].final_ratings == [1, -1, None, None] and items[1].final_outcome == "incorrect"
    assert step_disputes(project=project) == []


def test_steps_api_next_label_skip_and_hidden_reference(client):
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS, show_reference=False)
    member = MembershipFactory(project=project)
    first, second = make_items(project, 2)
    client.force_login(member.user)
    data = client.get(reverse("api_next_item", args=[project.pk])).json()
    assert data["id"] == first.pk and data["steps"] == STEPS and "reference_answer" not in data
    url = reverse("api_step_label_submit", args=[project.pk, first.pk])
    bad = client.post(url, {"ratings": [1, 1]}, content_type="application/json")
    assert bad.status_code == 400 and "ratings" in bad.json()
    ok = client.post(url, {"ratings": [1, 1, -1, -1], "finish_reason": "found_error", "outcome": "incorrect"},
                     content_type="application/json")
    assert ok.status_code == 201 and ok.json()["ratings"] == [1, 1, -1, -1]
    assert client.post(reverse("api_step_skip", args=[project.pk, second.pk])).status_code == 204
    assert client.get(reverse("api_next_item", args=[project.pk])).status_code == 204
    outsider = MembershipFactory().user
    client.force_login(outsider)
    assert client.post(url, {"ratings": [1, 1, 1, 1]}, content_type="application/json").status_code == 404


def test_researcher_corrects_the_split_before_labeling(client):
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    researcher = MembershipFactory(project=project, researcher=True).user
    item = step_item_create(prompt=PromptFactory(project=project), steps=["Step 1: a. Step 2: b."],
                            solution_text="Step 1: add.\nStep 2: multiply.\nStep 3: done.")
    client.force_login(researcher)
    url = reverse("annotate:solution_split", args=[project.pk, item.pk])
    assert client.get(url).status_code == 200
    client.post(url, {"rule": "numbered"})
    item.refresh_from_db()
    assert item.steps == ["Step 1: add.", "Step 2: multiply.", "Step 3: done."] and item.split_rule == "numbered"
    client.post(url, {"rule": "given", "steps": "first\n---\nsecond"})
    item.refresh_from_db()
    assert item.steps == ["first", "second"]
    step_label_submit(item=item, annotator=UserFactory(), ratings=[1, 1], finish_reason="solution")
    response = client.post(url, {"rule": "given", "steps": "x"})
    assert response.status_code == 422 and "already has labels" in response.content.decode()
    client.force_login(MembershipFactory(project=project).user)  # annotators cannot
    assert client.get(url).status_code == 403


def test_the_step_review_page_pages_through_every_disagreement(client):
    from annotate.services import step_item_create, step_label_submit

    project = ProjectFactory(task_kind="steps", overlap=2)
    researcher = MembershipFactory(project=project, researcher=True).user
    first, second = MembershipFactory(project=project).user, MembershipFactory(project=project).user
    solutions = [step_item_create(prompt=PromptFactory(project=project), steps=["a", "b"]) for _ in range(30)]
    for item in solutions:
        step_label_submit(item=item, annotator=first, ratings=[1, 1], finish_reason="solution")
        step_label_submit(item=item, annotator=second, ratings=[1, -1], finish_reason="found_error")
    client.force_login(researcher)
    url = reverse("annotate:review", args=[project.pk])
    two = client.get(url, {"page": 2}).content.decode()
    assert "26–30 of 30" in two
    assert [int(n) for n in re.findall(r'id="solution-(\d+)"', two)] == [s.pk for s in solutions[25:]]
