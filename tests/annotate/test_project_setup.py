"""Project setup: the New project page, members (pages and API), progress on the project list, the favicon."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from annotate.models import ItemSlot, Membership, PairLabel, Project
from annotate.roles import researcher_grant
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def researcher(client):
    user = UserFactory(username="rita")
    researcher_grant(user=user)
    client.force_login(user)
    return user


def _new(**fields) -> dict:
    return {"task_kind": "pairwise", "name": "Helpfulness v2", "guidelines": "# Pick\n\nThe *better* one.",
            "criteria": "helpfulness, harmlessness, helpfulness", "overlap": "3", "gold_rate": "0.1",
            "lease_minutes": "20", "step_mode": "first_error", **fields}


# --- The New project page ----------------------------------------------------------------------------------

def test_a_researcher_creates_a_project_and_becomes_its_researcher(client, researcher):
    assert "New project" in client.get(reverse("annotate:project_list")).content.decode()
    response = client.post(reverse("annotate:project_new"), _new())
    project = Project.objects.get(name="Helpfulness v2")
    assert response.status_code == 302 and response["Location"] == reverse("annotate:project_members",
                                                                             args=[project.pk])
    assert project.criteria == ["helpfulness", "harmlessness"]
    assert (project.overlap, project.gold_rate, project.lease_minutes) == (3, 0.1, 20)
    assert project.step_mode == Project.StepMode.RATE_ALL  # a pairwise project has no step mode
    assert Membership.objects.get(project=project).user == researcher
    assert Membership.objects.get(project=project).role == Membership.Role.RESEARCHER


def test_a_steps_project_keeps_its_step_mode(client, researcher):
    client.post(reverse("annotate:project_new"), _new(task_kind="steps"))
    assert Project.objects.get().step_mode == Project.StepMode.FIRST_ERROR


def test_errors_are_shown_by_field_and_nothing_is_created(client, researcher):
    ProjectFactory(name="Taken")
    response = client.post(reverse("annotate:project_new"),
                           _new(name="Taken", overlap="0", gold_rate="1.5", lease_minutes="x"))
    assert response.status_code == 422
    form = response.context["form"]
    assert set(form.errors) == {"overlap", "gold_rate", "lease_minutes"}
    response = client.post(reverse("annotate:project_new"), _new(name="Taken"))
    assert response.status_code == 422
    assert response.context["form"].errors["name"] == ["a project with this name already exists"]
    assert 'aria-invalid="true"' in response.content.decode()
    response = client.post(reverse("annotate:project_new"), _new(criteria=",".join(f"c{i}" for i in range(25))))
    assert "at most 20 criteria" in response.context["form"].errors["criteria"][0]
    assert Project.objects.count() == 1


def test_annotators_cannot_create_projects(client):
    client.force_login(UserFactory())
    assert "New project" not in client.get(reverse("annotate:project_list")).content.decode()
    assert client.get(reverse("annotate:project_new")).status_code == 403
    assert client.post(reverse("annotate:project_new"), _new()).status_code == 403
    assert client.post(reverse("annotate:guidelines_preview"), {"guidelines": "x"}).status_code == 403
    assert not Project.objects.exists()


def test_the_guidelines_preview_is_sanitized_markdown(client, researcher):
    response = client.post(reverse("annotate:guidelines_preview"),
                           {"guidelines": "**bold** <script>alert(1)</script> [x](javascript:alert(1))"},
                           HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and "<strong>bold</strong>" in html
    assert "<script>" not in html and 'href="javascript' not in html and "<html" not in html
    assert client.get(reverse("annotate:guidelines_preview")).status_code == 405


def test_the_page_has_csrf_no_inline_script_and_the_tags_script(client, researcher):
    html = client.get(reverse("annotate:project_new")).content.decode()
    assert "csrfmiddlewaretoken" in html and "/static/js/tags.js" in html and "data-tags" in html
    assert "<script>" not in html and " style=" not in html


# --- Members: the page --------------------------------------------------------------------------------------

@pytest.fixture
def project(researcher):
    return MembershipFactory(user=researcher, researcher=True, project__name="Setup").project


def test_a_researcher_adds_an_account_by_username_or_email(client, project):
    UserFactory(username="anna", email="anna@example.org")
    UserFactory(username="ben")
    url = reverse("annotate:project_members", args=[project.pk])
    assert client.post(url, {"action": "invite", "user": "ANNA@example.org", "role": "annotator"}).status_code == 302
    assert client.post(url, {"action": "invite", "user": "ben", "role": "researcher"}).status_code == 302
    roles = dict(Membership.objects.filter(project=project).values_list("user__username", "role"))
    assert roles == {"rita": "researcher", "anna": "annotator", "ben": "researcher"}
    response = client.post(url, {"action": "invite", "user": "anna", "role": "annotator"})
    assert response.status_code == 422 and "already a member" in response.context["invite_form"].errors["user"][0]
    response = client.post(url, {"action": "invite", "user": "nobody", "role": "annotator"})
    assert response.status_code == 422 and "no account" in response.context["invite_form"].errors["user"][0]


def test_an_annotator_account_is_created_with_its_password_shown_once(client, project):
    url = reverse("annotate:project_members", args=[project.pk])
    response = client.post(url, {"action": "create", "username": "newbie", "email": "", "password": "",
                                 "role": "annotator"})
    assert response.status_code == 201 and "no-store" in response["Cache-Control"]
    password = response.context["created"]["password"]
    assert len(password) >= 16 and password in response.content.decode()
    user = User.objects.get(username="newbie")
    assert user.check_password(password) and not user.is_staff and not user.user_permissions.exists()
    assert Membership.objects.get(project=project, user=user).role == Membership.Role.ANNOTATOR
    assert password not in client.get(url).content.decode()  # never again
    response = client.post(url, {"action": "create", "username": "Newbie", "password": "", "role": "annotator"})
    assert response.status_code == 422 and "already exists" in response.context["account_form"].errors["username"][0]
    response = client.post(url, {"action": "create", "username": "weak", "password": "12345", "role": "annotator"})
    assert response.status_code == 422 and response.context["account_form"].errors["password"]
    assert not User.objects.filter(username="weak").exists()
    response = client.post(url, {"action": "create", "username": "given", "password": "a-Long-given-pass-7",
                                 "role": "annotator"})
    assert response.status_code == 201 and User.objects.get(username="given").check_password("a-Long-given-pass-7")


def test_roles_change_and_members_leave_but_never_the_last_researcher(client, project, researcher):
    anna = MembershipFactory(project=project, user__username="anna").user
    ItemSlot.objects.filter(item=PairItemFactory(project=project)).update(annotator=anna)
    me = researcher.pk
    role_url = reverse("annotate:member_role", args=[project.pk, me])
    response = client.post(role_url, {f"m{me}-role": "annotator"}, follow=True)
    assert "last researcher" in response.content.decode()
    assert Membership.objects.get(project=project, user=researcher).role == "researcher"
    assert client.post(reverse("annotate:member_remove", args=[project.pk, me])).status_code == 302
    assert Membership.objects.filter(project=project, user=researcher).exists()
    client.post(reverse("annotate:member_role", args=[project.pk, anna.pk]), {f"m{anna.pk}-role": "researcher"})
    assert Membership.objects.get(project=project, user=anna).role == "researcher"
    client.post(reverse("annotate:member_role", args=[project.pk, anna.pk]), {f"m{anna.pk}-role": "annotator"})
    response = client.post(reverse("annotate:member_remove", args=[project.pk, anna.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Removed anna" in response.content.decode()
    assert not Membership.objects.filter(project=project, user=anna).exists()
    assert not ItemSlot.objects.filter(annotator=anna).exists()  # its lease went back to the queue


def test_a_researcher_who_steps_down_goes_to_the_project_page(client, project, researcher):
    other = MembershipFactory(project=project, researcher=True).user
    response = client.post(reverse("annotate:member_role", args=[project.pk, researcher.pk]),
                           {f"m{researcher.pk}-role": "annotator"})
    assert response["Location"] == reverse("annotate:project_detail", args=[project.pk])
    assert client.get(reverse("annotate:project_members", args=[project.pk])).status_code == 403
    assert Membership.objects.get(project=project, user=other).role == "researcher"


def test_members_pages_are_for_the_projects_researchers_only(client, project):
    annotator = MembershipFactory(project=project).user
    stranger = UserFactory()
    researcher_grant(user=stranger)  # the permission is no role in someone else's project
    urls = [reverse("annotate:project_members", args=[project.pk]),
            reverse("annotate:member_role", args=[project.pk, annotator.pk]),
            reverse("annotate:member_remove", args=[project.pk, annotator.pk])]
    for user, code in ((annotator, 403), (stranger, 404)):
        client.force_login(user)
        assert client.get(urls[0]).status_code == code
        for url in urls:
            assert client.post(url, {"action": "invite", "user": user.username, "role": "researcher",
                                     f"m{annotator.pk}-role": "researcher"}).status_code == code, (user, url)
    assert Membership.objects.get(project=project, user=annotator).role == "annotator"
    assert not Membership.objects.filter(project=project, user=stranger).exists()


def test_a_member_of_another_project_is_a_404(client, project):
    elsewhere = MembershipFactory().user
    assert client.post(reverse("annotate:member_remove", args=[project.pk, elsewhere.pk])).status_code == 404
    assert Membership.objects.filter(user=elsewhere).exists()


def test_the_project_page_links_to_members_for_researchers_only(client, project):
    url = reverse("annotate:project_detail", args=[project.pk])
    members = reverse("annotate:project_members", args=[project.pk])
    assert members in client.get(url).content.decode()
    client.force_login(MembershipFactory(project=project).user)
    assert members not in client.get(url).content.decode()


# --- Members: the API ---------------------------------------------------------------------------------------

def test_the_api_creates_a_project_and_manages_its_members(client, researcher):
    response = client.post(reverse("api_project_list"), {"name": "Via API", "task_kind": "steps",
                                                         "step_mode": "first_error", "criteria": ["depth"]},
                           content_type="application/json")
    assert response.status_code == 201, response.json()
    project_id = response.json()["id"]
    assert response.json()["step_mode"] == "first_error"
    members = reverse("api_members", args=[project_id])
    assert client.get(members).json() == [{"user_id": researcher.pk, "username": "rita", "email": "",
                                           "role": "researcher"}]
    anna = UserFactory(username="anna")
    response = client.post(members, {"user": "anna"}, content_type="application/json")
    assert response.status_code == 201 and response.json()["role"] == "annotator"
    response = client.post(reverse("api_member_account_create", args=[project_id]), {"username": "carl"},
                           content_type="application/json")
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    assert User.objects.get(username="carl").check_password(response.json()["password"])
    detail = reverse("api_member_detail", args=[project_id, anna.pk])
    response = client.patch(detail, {"role": "researcher"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["role"] == "researcher"
    assert client.delete(detail).status_code == 204
    assert sorted(m["username"] for m in client.get(members).json()) == ["carl", "rita"]
    response = client.patch(reverse("api_project_detail", args=[project_id]), {"lease_minutes": 5, "overlap": 2},
                            content_type="application/json")
    assert response.status_code == 200 and (response.json()["lease_minutes"], response.json()["overlap"]) == (5, 2)


def test_the_api_refuses_bad_member_changes_as_json(client, project, researcher):
    me = reverse("api_member_detail", args=[project.pk, researcher.pk])
    for response in (client.patch(me, {"role": "annotator"}, content_type="application/json"), client.delete(me)):
        assert response.status_code == 409 and "last researcher" in response.json()["detail"]
    response = client.patch(me, {"role": "owner"}, content_type="application/json")
    assert response.status_code == 400 and "role" in response.json()
    members = reverse("api_members", args=[project.pk])
    response = client.post(members, {"user": "ghost"}, content_type="application/json")
    assert response.status_code == 404 and "no account" in response.json()["detail"]
    response = client.post(members, {"user": "RITA"}, content_type="application/json")
    assert response.status_code == 409 and "already a member" in response.json()["detail"]
    accounts = reverse("api_member_account_create", args=[project.pk])
    response = client.post(accounts, {"username": "x y!"}, content_type="application/json")
    assert response.status_code == 400 and "username" in response.json()
    response = client.post(accounts, {"username": "Rita"}, content_type="application/json")
    assert response.status_code == 409 and "already exists" in response.json()["detail"]
    assert client.get(reverse("api_member_detail", args=[project.pk, 10**6])).status_code == 404


def test_the_api_keeps_members_to_the_projects_researchers(client, project):
    annotator = MembershipFactory(project=project).user
    stranger = UserFactory()
    for user, code in ((annotator, 403), (stranger, 404)):
        client.force_login(user)
        assert client.get(reverse("api_members", args=[project.pk])).status_code == code
        assert client.post(reverse("api_members", args=[project.pk]), {"user": user.username, "role": "researcher"},
                           content_type="application/json").status_code == code
        assert client.post(reverse("api_member_account_create", args=[project.pk]), {"username": f"z{code}"},
                           content_type="application/json").status_code == code
        detail = reverse("api_member_detail", args=[project.pk, annotator.pk])
        assert client.patch(detail, {"role": "researcher"}, content_type="application/json").status_code == code
        assert client.delete(detail).status_code == code
        assert client.patch(reverse("api_project_detail", args=[project.pk]), {"overlap": 5},
                            content_type="application/json").status_code == code
    assert Membership.objects.get(project=project, user=annotator).role == "annotator"
    assert not User.objects.filter(username__in=["z403", "z404"]).exists()
    assert Project.objects.get(pk=project.pk).overlap == 1


# --- Progress on the project list ---------------------------------------------------------------------------

def _project_with_labels(name: str, researcher, annotator, *, items: int, labeled: int) -> Project:
    project = ProjectFactory(name=name, overlap=2)
    MembershipFactory(project=project, user=researcher, researcher=True)
    MembershipFactory(project=project, user=annotator)
    pairs = [PairItemFactory(project=project) for _ in range(items)]
    PairItemFactory(project=project, gold=True)  # gold items need no labels
    for item in pairs[:labeled]:
        PairLabel.objects.create(item=item, annotator=annotator, verdict="A")
        ItemSlot.objects.filter(item=item, number=0).update(done=True, annotator=annotator)
    return project


def test_researchers_see_labels_done_of_needed_and_annotators_what_is_left(client, researcher,
                                                                          django_assert_max_num_queries):
    annotator = UserFactory(username="anna")
    _project_with_labels("Alpha", researcher, annotator, items=4, labeled=3)
    with django_assert_max_num_queries(12):
        html = client.get(reverse("annotate:project_list")).content.decode()
    assert "<b>3</b> of 8 labels" in html and "4 open items" in html
    assert '<progress class="progress" value="3" max="8"' in html
    client.force_login(annotator)
    html = client.get(reverse("annotate:project_list")).content.decode()
    assert "<b>1</b> left" in html and "of 8 labels" not in html


def test_the_project_list_takes_as_many_queries_for_many_projects(client, researcher, django_assert_num_queries):
    annotator = UserFactory(username="anna")
    _project_with_labels("Alpha", researcher, annotator, items=2, labeled=1)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        client.get(reverse("annotate:project_list"))
    for n in range(4):
        _project_with_labels(f"More {n}", researcher, annotator, items=3, labeled=n % 3)
    with django_assert_num_queries(len(one)):
        html = client.get(reverse("annotate:project_list")).content.decode()
    assert html.count("<progress") == 5
    client.force_login(annotator)
    with CaptureQueriesContext(connection) as annotating:
        html = client.get(reverse("annotate:project_list")).content.decode()
    assert len(annotating) <= len(one) + 1 and html.count(" left</span>") == 5


# --- The favicon --------------------------------------------------------------------------------------------

def test_the_favicon_is_linked_and_favicon_ico_redirects_to_it(client, researcher):
    html = client.get(reverse("annotate:project_list")).content.decode()
    assert '<link rel="icon" href="/static/favicon.svg"' in html
    client.logout()
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/favicon.svg"
