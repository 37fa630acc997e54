"""The SQL hot path (annotate.hotpath) against the reference path (DRF views over the services).

The same script of requests runs in two identical projects: one through the hot path (a token on
PostgreSQL), one through DRF (a session), and everything observable must match: what each request
answers, the labels stored and the state of every slot.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.client import MULTIPART_CONTENT
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotate.models import ItemSlot, PairLabel, Project
from annotate.services import pair_items_prioritize, step_item_create
from annotate.views import presentation_order
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, PromptFactory, UserFactory
from tests.threads import run_together

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'",
                       reason="the SQL hot path is PostgreSQL's; on SQLite the API always takes the services"),
]


def token_client(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


class World:
    """A project with 6 items, a gold item and 3 annotators, driven through one of the two paths."""

    def __init__(self, *, fast: bool) -> None:
        self.fast = fast
        self.project = ProjectFactory(overlap=2, lease_minutes=30, criteria=["helpfulness", "harmlessness"])
        self.items = [PairItemFactory(project=self.project) for _ in range(6)]
        self.items.append(PairItemFactory(project=self.project, gold=True))
        self.index = {item.pk: i for i, item in enumerate(self.items)}
        self.users = [MembershipFactory(project=self.project).user for _ in range(3)]
        self.clients = []
        for user in self.users:
            if fast:
                self.clients.append(token_client(user))
            else:
                client = Client()
                client.force_login(user)
                self.clients.append(client)
        self.current: dict[int, int] = {}
        self.queries: list[int] = []

    def _run(self, call):
        with CaptureQueriesContext(connection) as queries:
            response = call()
        self.queries.append(len(queries))
        return response

    def next(self, u: int) -> tuple:
        url = reverse("api_next_item", args=[self.project.pk])
        response = self._run(lambda: self.clients[u].get(url))
        if response.status_code != 200:
            return (response.status_code,)
        data = response.json()
        item = self.items[self.index[data["id"]]]
        assert data == {"id": item.pk, "project": self.project.pk, "messages": item.prompt.messages,
                        "response_a": item.completion_a.text, "response_b": item.completion_b.text,
                        "shown_order": presentation_order(user_id=self.users[u].pk, item_id=item.pk)}
        self.current[u] = self.index[data["id"]]
        return 200, self.current[u]

    def label(self, u: int, body: dict, *, item: int | None = None, **kwargs) -> tuple:
        index = self.current[u] if item is None else item
        item_id = self.items[index].pk
        url = reverse("api_label_submit", args=[self.project.pk, item_id])
        response = self._run(lambda: self.clients[u].post(url, body, **{"content_type": "application/json",
                                                                        **kwargs}))
        data = response.json() if response.content else None
        if response.status_code == 201:
            label = PairLabel.objects.get(pk=data.pop("id"))
            assert data.pop("item") == item_id
            assert data.pop("shown_order") == label.shown_order == presentation_order(
                user_id=self.users[u].pk, item_id=item_id)
            assert data.pop("created_at") and data.pop("updated_at")
        return response.status_code, data

    def skip(self, u: int) -> int:
        url = reverse("api_item_skip", args=[self.project.pk, self.items[self.current[u]].pk])
        return self.clients[u].post(url).status_code

    def expire(self, u: int) -> None:
        ItemSlot.objects.filter(project=self.project, annotator=self.users[u], done=False).update(
            leased_until=timezone.now() - timedelta(seconds=1))

    def state(self) -> tuple:
        users = {user.pk: i for i, user in enumerate(self.users)}
        slots = sorted((self.index[s.item_id], s.number, s.done, users.get(s.annotator_id))
                       for s in ItemSlot.objects.filter(project=self.project))
        labels = sorted((self.index[label.item_id], users[label.annotator_id], label.verdict, label.strength,
                         label.rationale, label.criteria, label.time_spent_ms)
                        for label in PairLabel.objects.filter(item__project=self.project))
        return slots, labels


def script(w: World) -> list:
    out = [w.next(0), w.next(0), w.next(1)]  # a reload serves the held lease again; k=2: 1 gets item 0 too
    out.append(w.label(0, {"verdict": "A", "strength": 3, "rationale": "  clearer  ", "time_spent_ms": 1200,
                           "criteria": {"helpfulness": "A"}}))
    out.append(w.label(0, {"verdict": "tie", "strength": 2}))  # an edit; a tie has no strength
    out.append(w.label(1, {"verdict": "B", "strength": 1}))
    pair_items_prioritize(project=w.project, priorities={w.items[4].pk: 5})
    out += [w.next(0), w.next(2)]  # both slots of the disputed item first
    w.expire(0)
    out += [w.next(1), w.label(1, {"verdict": "B"})]  # 0's abandoned slot comes back, to 1
    out.append(w.label(0, {"verdict": "A"}, item=4))  # 0 answers after losing the lease: an extra label
    out.append(w.label(2, {"verdict": "both_bad"}))
    out += [w.next(1), w.skip(1), w.next(1), w.label(1, {"verdict": "A", "strength": 4})]
    # Input the hot path leaves to the serializer: the same answers either way.
    out.append(w.label(2, {"verdict": "C"}, item=2))
    out.append(w.label(2, {"verdict": "A", "strength": "2", "time_spent_ms": 7.0}, item=2))  # JSON: not coerced
    out.append(w.label(2, {"verdict": "A", "rationale": 0, "criteria": None}, item=2))
    out.append(w.label(2, '{"verdict": "A", "criteria": ' + "[" * 50_000 + "]" * 50_000 + "}", item=2))
    out.append(w.label(2, {"verdict": "A", "criteria": {"honesty": "A"}}, item=3))
    out.append(w.label(2, {"verdict": "A", "criteria": {"help": "A"}}, item=3))  # a prefix of one is not one
    out.append(w.label(2, {"verdict": "A", "rationale": "x" * 5001}, item=3))
    out.append(w.label(2, {"verdict": "A", "time_spent_ms": -1}, item=3))
    out.append(w.label(2, {"verdict": "A", "time_spent_ms": 2**31}, item=3))
    out.append(w.label(2, {"verdict": "B", "rationale": "form"}, item=3, content_type=MULTIPART_CONTENT))
    # Gold at rate 1: served before the queue, labels fill no slot, then back to the queue.
    Project.objects.filter(pk=w.project.pk).update(gold_rate=1.0)
    out += [w.next(0), w.label(0, {"verdict": "B"}), w.next(0)]
    Project.objects.filter(pk=w.project.pk).update(gold_rate=0)
    for _ in range(6):  # everyone labels until nothing is left
        for u in range(3):
            result = w.next(u)
            out.append(result)
            if result[0] == 200:
                out.append(w.label(u, {"verdict": "A", "strength": 2, "time_spent_ms": 10}))
    return out


def test_the_hot_path_answers_and_stores_exactly_what_the_services_do():
    fast, slow = World(fast=True), World(fast=False)
    fast_out, slow_out = script(fast), script(slow)
    assert fast_out == slow_out
    assert fast.state() == slow.state()
    slots, labels = fast.state()
    assert all(done for _, _, done, _ in slots)  # the script labels everything
    assert len(labels) == 6 * 2 + 1 + 1  # k=2 for each of 6 items, the late extra label, one gold label
    # The hot path served most requests in two queries each; DRF took several times more.
    assert fast.queries.count(2) > 40
    assert min(slow.queries) > 2


@pytest.mark.parametrize("size", [3, 60])
def test_next_and_label_are_two_queries_each_whatever_the_size(django_assert_num_queries, size):
    project = ProjectFactory(overlap=1)
    items = [PairItemFactory(project=project) for _ in range(size)]
    for item in items[: size // 2]:  # other people's work in progress
        other = token_client(MembershipFactory(project=project).user)
        assert other.get(reverse("api_next_item", args=[project.pk])).json()["id"] == item.pk
    client = token_client(MembershipFactory(project=project).user)
    with django_assert_num_queries(2):  # who is asking; lease (held, gold or a free slot) and read
        item_id = client.get(reverse("api_next_item", args=[project.pk])).json()["id"]
    assert item_id == items[size // 2].pk
    with django_assert_num_queries(2):  # who is asking; store the label and close the slot
        response = client.post(reverse("api_label_submit", args=[project.pk, item_id]), {"verdict": "B"},
                               content_type="application/json")
    assert response.status_code == 201
    assert ItemSlot.objects.get(item_id=item_id).done


def test_tokens_and_membership_are_checked_as_drf_does():
    project = ProjectFactory(overlap=1)
    item = PairItemFactory(project=project)
    other_item = PairItemFactory()
    member = MembershipFactory(project=project).user
    next_url = reverse("api_next_item", args=[project.pk])
    assert Client(HTTP_AUTHORIZATION="Token not-a-key").get(next_url).status_code == 401
    assert token_client(UserFactory()).get(next_url).status_code == 404  # a stranger: no such project
    admin = UserFactory(is_superuser=True)
    assert token_client(admin).get(next_url).json()["id"] == item.pk  # superusers see every project
    client = token_client(member)
    foreign = reverse("api_label_submit", args=[project.pk, other_item.pk])  # an item of another project
    assert client.post(foreign, {"verdict": "A"}, content_type="application/json").status_code == 404
    assert not PairLabel.objects.exists()
    member.is_active = False
    member.save()
    assert client.get(next_url).status_code == 401


def test_a_browser_gets_drf_browsable_api():
    project = ProjectFactory(overlap=1)
    PairItemFactory(project=project)
    client = token_client(MembershipFactory(project=project).user)
    response = client.get(reverse("api_next_item", args=[project.pk]), HTTP_ACCEPT="text/html")
    assert response["Content-Type"].startswith("text/html")


def test_step_projects_are_served_by_the_full_view_with_a_token():
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    item = step_item_create(prompt=PromptFactory(project=project), steps=["2 + 2 = 4.", "So 4."])
    client = token_client(MembershipFactory(project=project).user)
    data = client.get(reverse("api_next_item", args=[project.pk])).json()
    assert (data["id"], data["steps"]) == (item.pk, item.steps)


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_never_get_the_same_slot():
    project = ProjectFactory(overlap=1)
    for _ in range(40):
        PairItemFactory(project=project)
    clients = [token_client(MembershipFactory(project=project).user) for _ in range(8)]
    url = reverse("api_next_item", args=[project.pk])
    got = []

    def ask(client):
        for _ in range(3):
            got.append(client.get(url).json()["id"])
            client.post(reverse("api_label_submit", args=[project.pk, got[-1]]), {"verdict": "A"},
                        content_type="application/json")

    assert run_together(ask, clients) == []
    assert len(got) == 24 and len(set(got)) == 24, "two annotators got the same slot"
    assert PairLabel.objects.count() == 24
    assert ItemSlot.objects.filter(done=True).count() == 24
