import pytest
from django.urls import reverse

from annotate.models import PairLabel
from annotate.services import pair_label_submit
from annotate.views import presentation_order
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def annotator_setup(client):
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    items = [PairItemFactory(project=project) for _ in range(3)]
    client.force_login(member.user)
    return project, member.user, items


def test_annotator_labels_with_sides_mapped_back_to_a_and_b(client, annotator_setup):
    project, user, items = annotator_setup
    response = client.get(reverse("annotate:annotate", args=[project.pk]))
    assert response.status_code == 200
    item = response.context["item"]
    assert item == items[0]
    order = presentation_order(user_id=user.pk, item_id=item.pk)
    response = client.post(reverse("annotate:annotate_submit", args=[project.pk, item.pk]),
                           {"choice": "left", "strength": "3", "rationale": "clearer", "time_spent_ms": "4200"},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    label = PairLabel.objects.get(item=item, annotator=user)
    assert label.shown_order == order
    assert label.verdict == order[0]  # "left" is A when shown AB, B when shown BA
    assert (label.strength, label.rationale, label.time_spent_ms) == (3, "clearer", 4200)
    # The htmx response is the next item's fragment, not the whole page.
    html = response.content.decode()
    assert f'data-item="{items[1].pk}"' in html
    assert "<html" not in html


def test_orders_are_randomized_across_items():
    orders = {presentation_order(user_id=1, item_id=i) for i in range(40)}
    assert orders == {"AB", "BA"}
    assert presentation_order(user_id=1, item_id=7) == presentation_order(user_id=1, item_id=7)


def test_item_with_enough_labels_is_not_served_again(client, annotator_setup):
    project, user, items = annotator_setup
    pair_label_submit(item=items[0], annotator=UserFactory(), verdict="A")  # overlap 1: item 0 is complete
    response = client.get(reverse("annotate:annotate", args=[project.pk]))
    assert response.context["item"] == items[1]


def test_invalid_choice_is_rejected(client, annotator_setup):
    project, user, items = annotator_setup
    response = client.post(reverse("annotate:annotate_submit", args=[project.pk, items[0].pk]), {"choice": "maybe"})
    assert response.status_code == 422
    assert not PairLabel.objects.exists()


def test_model_text_is_escaped(client, annotator_setup):
    project, user, items = annotator_setup
    items[0].completion_a.text = '<script>alert(1)</script><img src=x onerror=alert(2)> [x](javascript:alert(3))'
    items[0].completion_a.save()
    html = client.get(reverse("annotate:annotate", args=[project.pk])).content.decode()
    assert "<script>alert(1)" not in html
    assert "<img" not in html
    assert 'href="javascript:' not in html
    assert "&lt;script&gt;alert(1)" in html


def test_outsider_gets_404_everywhere(client):
    project = ProjectFactory()
    item = PairItemFactory(project=project)
    MembershipFactory(project=project, researcher=True)
    outsider = MembershipFactory().user  # annotator of another project
    client.force_login(outsider)
    urls = [reverse("annotate:project_detail", args=[project.pk]), reverse("annotate:annotate", args=[project.pk]),
            reverse("annotate:import", args=[project.pk]), reverse("synth:jobs", args=[project.pk]),
            reverse("judges:runs", args=[project.pk]), reverse("training:datasets", args=[project.pk]),
            reverse("api_project_detail", args=[project.pk]), reverse("api_next_item", args=[project.pk])]
    for url in urls:
        assert client.get(url).status_code == 404, url
    response = client.post(reverse("annotate:annotate_submit", args=[project.pk, item.pk]), {"choice": "left"})
    assert response.status_code == 404
    assert client.post(reverse("api_label_submit", args=[project.pk, item.pk]), {"verdict": "A"}).status_code == 404
    assert project.name not in client.get(reverse("annotate:project_list")).content.decode()
    assert [p["id"] for p in client.get(reverse("api_project_list")).json()] == [outsider.memberships.get().project_id]


def test_annotator_cannot_open_researcher_pages(client):
    member = MembershipFactory()
    client.force_login(member.user)
    for name in ("annotate:import", "synth:jobs", "judges:runs", "training:datasets"):
        # A member is told what they lack (a stranger gets 404: tests/test_api_errors.py).
        assert client.get(reverse(name, args=[member.project.pk])).status_code == 403, name


def test_api_next_and_label(client):
    member = MembershipFactory()
    item = PairItemFactory(project=member.project)
    client.force_login(member.user)
    data = client.get(reverse("api_next_item", args=[member.project.pk])).json()
    assert data["id"] == item.pk and data["shown_order"] in ("AB", "BA")
    assert data["response_a"] == item.completion_a.text
    response = client.post(reverse("api_label_submit", args=[member.project.pk, item.pk]),
                           {"verdict": "B", "strength": 2}, content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["verdict"] == "B"
    assert client.get(reverse("api_next_item", args=[member.project.pk])).status_code == 204
    bad = client.post(reverse("api_label_submit", args=[member.project.pk, item.pk]), {"verdict": "C"},
                      content_type="application/json")
    assert bad.status_code == 400 and "verdict" in bad.json()


def test_api_requires_authentication(client):
    assert client.get(reverse("api_project_list")).status_code in (401, 403)


def test_per_criterion_verdicts_are_mapped_and_validated(client):
    project = ProjectFactory(criteria=["helpfulness", "harmlessness"])
    member = MembershipFactory(project=project)
    item = PairItemFactory(project=project)
    client.force_login(member.user)
    page = client.get(reverse("annotate:annotate", args=[project.pk])).content.decode()
    assert 'name="criterion_helpfulness"' in page and 'name="criterion_harmlessness"' in page
    order = presentation_order(user_id=member.user.pk, item_id=item.pk)
    client.post(reverse("annotate:annotate_submit", args=[project.pk, item.pk]),
                {"choice": "left", "criterion_helpfulness": "right", "criterion_harmlessness": "tie"})
    label = PairLabel.objects.get(item=item)
    assert label.criteria == {"helpfulness": order[1], "harmlessness": "tie"}
    bad = client.post(reverse("api_label_submit", args=[project.pk, item.pk]),
                      {"verdict": "A", "criteria": {"honesty": "A"}}, content_type="application/json")
    assert bad.status_code == 400 and "honesty" in str(bad.json())


def test_skip_and_undo_from_the_page(client):
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    first, second = PairItemFactory(project=project), PairItemFactory(project=project)
    client.force_login(member.user)
    assert client.get(reverse("annotate:annotate", args=[project.pk])).context["item"] == first
    response = client.post(reverse("annotate:annotate_skip", args=[project.pk, first.pk]), HTTP_HX_REQUEST="true")
    assert f'data-item="{second.pk}"' in response.content.decode()
    client.post(reverse("annotate:annotate_submit", args=[project.pk, second.pk]), {"choice": "tie"})
    last = client.get(reverse("annotate:annotate_last", args=[project.pk]))
    assert last.context["item"] == second and last.context["editing"].verdict == "tie"
    assert 'value="tie" checked' in last.content.decode()


def test_items_left_are_counted_up_to_a_cap(client, monkeypatch):
    """The count shown after every label stops at a cap, so it costs the same in a huge project."""
    monkeypatch.setattr("annotate.selectors.LEFT_SHOWN_MAX", 3)
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    items = [PairItemFactory(project=project) for _ in range(5)]
    client.force_login(member.user)
    url = reverse("annotate:annotate", args=[project.pk])
    assert '<b id="left-count">3+</b> left for you' in client.get(url).content.decode()
    for item in items[1:4]:  # the page leased items[0] to the member
        pair_label_submit(item=item, annotator=UserFactory(), verdict="A")
    assert '<b id="left-count">2</b> left for you' in client.get(url).content.decode()
