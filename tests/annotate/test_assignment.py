"""Assignment: k labels per item, leases, skips, gold, priority, concurrency and query counts."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.models import ItemSkip, ItemSlot, PairLabel
from annotate.services import (
    item_lease_next,
    item_skip,
    pair_items_prioritize,
    pair_label_submit,
    project_update,
    slots_ensure,
)
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, UserFactory
from tests.threads import run_together

pytestmark = pytest.mark.django_db


def test_each_item_gets_k_labels_from_different_annotators():
    project = ProjectFactory(overlap=2)
    items = [PairItemFactory(project=project) for _ in range(3)]
    users = [UserFactory() for _ in range(3)]
    served = {u.pk: [] for u in users}
    for _ in range(3):
        for user in users:
            item = item_lease_next(project=project, user=user)
            if item is not None:
                served[user.pk].append(item.pk)
                pair_label_submit(item=item, annotator=user, verdict="A")
    for ids in served.values():
        assert len(ids) == len(set(ids)), "an annotator got the same item twice"
    counts = {item.pk: PairLabel.objects.filter(item=item).count() for item in items}
    assert counts == {item.pk: 2 for item in items}
    assert not ItemSlot.objects.filter(project=project, done=False).exists()
    assert all(item_lease_next(project=project, user=u) is None for u in users)


def test_a_held_lease_is_served_again_and_expired_leases_come_back():
    project = ProjectFactory(overlap=1, lease_minutes=30)
    first, second = PairItemFactory(project=project), PairItemFactory(project=project)
    alice, bob = UserFactory(), UserFactory()
    assert item_lease_next(project=project, user=alice) == first
    assert item_lease_next(project=project, user=alice) == first  # reload: same item
    assert item_lease_next(project=project, user=bob) == second  # first is leased to alice
    ItemSlot.objects.filter(item=first).update(leased_until=timezone.now() - timedelta(seconds=1))
    carol = UserFactory()
    assert item_lease_next(project=project, user=carol) == first  # alice abandoned it


def test_a_late_label_still_counts_and_nothing_is_lost():
    project = ProjectFactory(overlap=1)
    item = PairItemFactory(project=project)
    alice, bob = UserFactory(), UserFactory()
    item_lease_next(project=project, user=alice)
    ItemSlot.objects.filter(item=item).update(leased_until=timezone.now() - timedelta(minutes=1))
    assert item_lease_next(project=project, user=bob) == item
    pair_label_submit(item=item, annotator=bob, verdict="B")
    pair_label_submit(item=item, annotator=alice, verdict="A")  # alice answers after her lease ran out
    assert PairLabel.objects.filter(item=item).count() == 2
    assert ItemSlot.objects.get(item=item).done


def test_skip_frees_the_slot_and_is_not_served_again():
    project = ProjectFactory(overlap=1)
    first, second = PairItemFactory(project=project), PairItemFactory(project=project)
    alice, bob = UserFactory(), UserFactory()
    assert item_lease_next(project=project, user=alice) == first
    item_skip(item=first, user=alice)
    assert ItemSkip.objects.filter(item=first, annotator=alice).exists()
    assert item_lease_next(project=project, user=alice) == second
    assert item_lease_next(project=project, user=bob) == first  # the freed slot


def test_priority_serves_disputed_items_first():
    project = ProjectFactory(overlap=1)
    items = [PairItemFactory(project=project) for _ in range(4)]
    pair_items_prioritize(project=project, priorities={items[2].pk: 2, items[3].pk: 1})
    served = []
    for _ in range(4):
        user = UserFactory()
        served.append(item_lease_next(project=project, user=user))
    assert served == [items[2], items[3], items[0], items[1]]


def test_gold_items_are_served_at_the_gold_rate_to_everyone():
    project = ProjectFactory(overlap=2, gold_rate=1.0)
    gold = PairItemFactory(project=project, gold=True)
    normal = PairItemFactory(project=project)
    for _ in range(2):
        user = UserFactory()
        assert item_lease_next(project=project, user=user) == gold
        pair_label_submit(item=gold, annotator=user, verdict="A")
        assert item_lease_next(project=project, user=user) == normal  # gold done: back to the queue
    assert not ItemSlot.objects.filter(item=gold).exists()
    assert ItemSlot.objects.filter(item=normal).count() == 2


def test_raising_k_adds_slots():
    project = ProjectFactory(overlap=1)
    items = [PairItemFactory(project=project) for _ in range(3)]
    project_update(project=project, overlap=3)
    assert ItemSlot.objects.filter(project=project).count() == 9
    assert slots_ensure(project=project) == 0
    assert sorted(ItemSlot.objects.filter(item=items[0]).values_list("number", flat=True)) == [0, 1, 2]


@pytest.mark.parametrize("size", [5, 80])
def test_next_and_submit_take_a_fixed_number_of_queries(client, django_assert_num_queries, size):
    """The same count whatever the project size (session, user and project lookups included)."""
    project = ProjectFactory(overlap=1)
    member = MembershipFactory(project=project)
    for _ in range(size):
        PairItemFactory(project=project)
    for _ in range(size // 2):  # other people's work in progress
        other = UserFactory()
        pair_label_submit(item=item_lease_next(project=project, user=other), annotator=other, verdict="B")
    client.force_login(member.user)
    url = reverse("api_next_item", args=[project.pk])
    client.get(reverse("api_project_list"))  # the session is loaded once per test client
    with django_assert_num_queries(8):  # session, user, project, held lease?, savepoint, claim, lease, release
        item_id = client.get(url).json()["id"]
    with django_assert_num_queries(4):  # session, user, project, held lease
        assert client.get(url).json()["id"] == item_id
    submit = reverse("api_label_submit", args=[project.pk, item_id])
    # session, user, item with project, savepoint, update, savepoint, insert, release x2, close the slot
    with django_assert_num_queries(10):
        assert client.post(submit, {"verdict": "A"}, content_type="application/json").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_concurrent_annotators_never_get_the_same_slot():
    """PostgreSQL: SKIP LOCKED hands each request a different slot. SQLite: the lease transaction
    starts IMMEDIATE, so writers take turns and each sees the slots the others took."""
    project = ProjectFactory(overlap=1)
    for _ in range(40):
        PairItemFactory(project=project)
    users = [UserFactory() for _ in range(8)]
    got = {}

    def annotate(user):
        item = item_lease_next(project=project, user=user)
        got[user.pk] = item.pk if item else None

    assert run_together(annotate, users) == []
    assert None not in got.values()
    assert len(set(got.values())) == len(users), f"two annotators got the same slot: {got}"
