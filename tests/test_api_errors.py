"""The API's errors: a 4xx with a JSON message for what a client gets wrong, never a 500 and never a wrong value
stored; and a schema that says what the views do. On PostgreSQL the label and next requests with a token
also go through the SQL hot path (``annotate.hotpath``): each check runs with a token and a session."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token

from annotate import services
from annotate.labels import TIME_SPENT_MAX_MS
from annotate.models import ItemSlot, Membership, PairLabel, Project, StepLabel
from annotate.services import project_create, project_update, step_item_create
from judges.models import Judge, JudgeRun
from synth.models import ModelEndpoint
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db
JSON = "application/json"


def token_client(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


def session_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture(params=["token", "session"])
def make_client(request):
    return token_client if request.param == "token" else session_client


def researcher(**project) -> tuple[Project, object]:
    membership = MembershipFactory(researcher=True, project=ProjectFactory(**project))
    user = membership.user
    try:  # who may create projects (annotate.roles), where that exists
        from annotate.roles import researcher_grant
    except ImportError:
        pass
    else:
        researcher_grant(user=user)
    return membership.project, user


def error(response, status: int, field: str | None = None) -> dict:
    """The answer is a JSON error of that status, with a message (and the field's own messages)."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith(JSON), response["Content-Type"]
    data = response.json()
    assert isinstance(data["detail"], str) and data["detail"]
    if field is not None:
        assert field in data, data
    return data


# --- projects ----------------------------------------------------------------------------------------------------

def test_a_project_is_created_with_every_setting_the_schema_lists():
    _, user = researcher()
    response = session_client(user).post(reverse("api_project_list"), {
        "name": "New", "criteria": ["helpfulness", "honesty"], "gold_rate": 0.25, "lease_minutes": 10,
        "prioritize_disagreements": True, "overlap": 3}, content_type=JSON)
    assert response.status_code == 201, response.content
    project = Project.objects.get(pk=response.json()["id"])
    assert (project.criteria, project.gold_rate, project.lease_minutes, project.prioritize_disagreements,
            project.overlap) == (["helpfulness", "honesty"], 0.25, 10, True, 3)
    assert project.memberships.get().role == Membership.Role.RESEARCHER


@pytest.mark.parametrize("body, field", [
    ({"overlap": 0}, "overlap"),
    ({"overlap": 101}, "overlap"),
    ({"gold_rate": 2}, "gold_rate"),
    ({"gold_rate": -0.1}, "gold_rate"),
    ({"lease_minutes": 0}, "lease_minutes"),
    ({"criteria": 5}, "criteria"),
    ({"criteria": {"helpfulness": 1}}, "criteria"),
    ({"criteria": ["a", "a"]}, "criteria"),
    ({"criteria": ["  "]}, "criteria"),
    ({"criteria": [3]}, "criteria"),
    ({"criteria": None}, "criteria"),
    ({"name": 0}, "name"),
    ({"overlap": "2"}, "overlap"),  # JSON says what it means: a string is not a number
    ({"prioritize_disagreements": "yes"}, "prioritize_disagreements"),
    ({"task_kind": "ranking"}, "task_kind"),
])
def test_settings_out_of_bounds_are_refused_on_create_and_on_change(body, field):
    project, user = researcher()
    client = session_client(user)
    error(client.post(reverse("api_project_list"), {"name": "Other", **body}, content_type=JSON), 400, field)
    assert not Project.objects.filter(name="Other").exists()
    before = Project.objects.values().get(pk=project.pk)
    error(client.patch(reverse("api_project_detail", args=[project.pk]), body, content_type=JSON), 400, field)
    assert Project.objects.values().get(pk=project.pk) == before


def test_the_services_check_the_settings_too():
    project = project_create(name="Bounds")
    for fields in ({"overlap": 0}, {"overlap": services.OVERLAP_MAX + 1}, {"gold_rate": float("nan")},
                   {"lease_minutes": 0}, {"criteria": 5}, {"criteria": ["x", "x"]}):
        with pytest.raises(ValidationError) as excinfo:
            project_update(project=project, **fields)
        assert set(excinfo.value.message_dict) == set(fields)
    with pytest.raises(ValidationError):
        project_create(name="Zero", overlap=0)
    PairItemFactory(project=project)
    project_update(project=project, overlap=services.OVERLAP_MAX)  # the largest k makes k slots per item
    assert ItemSlot.objects.filter(project=project).count() == services.OVERLAP_MAX


def test_criteria_from_a_form_are_stored_not_dropped():
    project, user = researcher()
    client = session_client(user)
    url = reverse("api_project_detail", args=[project.pk])
    response = client.patch(url, "criteria=helpfulness&criteria=honesty",
                            content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.content
    project.refresh_from_db()
    assert project.criteria == ["helpfulness", "honesty"]
    error(client.patch(url, "criteria=", content_type="application/x-www-form-urlencoded"), 400, "criteria")
    assert client.patch(url, "criteria=null", content_type="application/x-www-form-urlencoded").status_code == 200
    response = client.post(reverse("api_project_list"), {"name": "Multipart", "criteria": ["a", "b"]})  # multipart
    assert response.status_code == 201 and Project.objects.get(name="Multipart").criteria == ["a", "b"]


def test_the_task_kind_is_fixed_once_the_project_has_items():
    project, user = researcher()
    client = session_client(user)
    url = reverse("api_project_detail", args=[project.pk])
    assert client.patch(url, {"task_kind": "steps"}, content_type=JSON).status_code == 200
    assert client.patch(url, {"task_kind": "pairwise"}, content_type=JSON).status_code == 200
    PairItemFactory(project=project)
    error(client.patch(url, {"task_kind": "steps"}, content_type=JSON), 400, "task_kind")
    assert client.patch(url, {"task_kind": "pairwise", "guidelines": "g"}, content_type=JSON).status_code == 200
    project.refresh_from_db()
    assert project.task_kind == "pairwise"


# --- labels ------------------------------------------------------------------------------------------------------

def test_a_project_whose_stored_criteria_are_not_names_does_not_break_labels(make_client):
    item = PairItemFactory(project=ProjectFactory(criteria=["safety"]))
    Project.objects.filter(pk=item.project_id).update(criteria=5)  # as the API let it be stored before
    client = make_client(MembershipFactory(project=item.project).user)
    url = reverse("api_label_submit", args=[item.project_id, item.pk])
    error(client.post(url, {"verdict": "A", "criteria": {"safety": "A"}}, content_type=JSON), 400, "criteria")
    assert client.post(url, {"verdict": "A"}, content_type=JSON).status_code == 201
    Project.objects.filter(pk=item.project_id).update(criteria={"safety": 1})
    error(client.post(url, {"verdict": "B", "criteria": {"safety": "A"}}, content_type=JSON), 400, "criteria")


@pytest.mark.parametrize("body, field", [
    ({"verdict": "A", "rationale": 0}, "rationale"),
    ({"verdict": "A", "strength": "2"}, "strength"),
    ({"verdict": "A", "strength": True}, "strength"),
    ({"verdict": "A", "time_spent_ms": 7.0}, "time_spent_ms"),
    ({"verdict": "A", "time_spent_ms": 2**32 + 5}, "time_spent_ms"),
    ({"verdict": "A", "criteria": None}, "criteria"),
    ({"verdict": "A", "criteria": []}, "criteria"),
    ({"verdict": "A", "criteria": {"safety": {}}}, "criteria"),
    ({"verdict": ["A"]}, "verdict"),
])
def test_a_label_of_the_wrong_type_is_refused_not_stored_converted(make_client, body, field):
    item = PairItemFactory(project=ProjectFactory(criteria=["safety"]))
    client = make_client(MembershipFactory(project=item.project).user)
    error(client.post(reverse("api_label_submit", args=[item.project_id, item.pk]), body, content_type=JSON),
          400, field)
    assert not PairLabel.objects.exists()


def test_a_form_still_sends_text_and_its_criteria_are_read():
    item = PairItemFactory(project=ProjectFactory(criteria=["safety", "style"]))
    user = MembershipFactory(project=item.project).user
    client = session_client(user)
    url = reverse("api_label_submit", args=[item.project_id, item.pk])
    response = client.post(url, {"verdict": "A", "strength": "2", "criteria": json.dumps({"safety": "B"})})
    assert response.status_code == 201, response.content
    label = PairLabel.objects.get()
    assert (label.strength, label.criteria) == (2, {"safety": "B"})
    response = client.post(url, "verdict=B&criteria.style=tie", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 201, response.content
    label.refresh_from_db()
    assert (label.verdict, label.criteria) == ("B", {"style": "tie"})
    error(client.post(url, {"verdict": "A", "criteria": "safety=B"}), 400, "criteria")
    label.refresh_from_db()
    assert label.verdict == "B"


def test_a_step_label_s_time_has_the_same_maximum_as_a_pair_label_s(make_client):
    project = ProjectFactory(task_kind=Project.TaskKind.STEPS)
    item = step_item_create(prompt=PromptFactory(project=project), steps=["1 + 1 = 2.", "So 2."])
    client = make_client(MembershipFactory(project=project).user)
    url = reverse("api_step_label_submit", args=[project.pk, item.pk])
    for spent in (2**32 + 5, TIME_SPENT_MAX_MS + 1, 10**30):
        error(client.post(url, {"ratings": [1, 1], "time_spent_ms": spent}, content_type=JSON), 400, "time_spent_ms")
    assert not StepLabel.objects.exists()
    response = client.post(url, {"ratings": [1, 1], "time_spent_ms": TIME_SPENT_MAX_MS}, content_type=JSON)
    assert response.status_code == 201
    assert StepLabel.objects.get().time_spent_ms == TIME_SPENT_MAX_MS


def test_a_body_nested_too_deeply_is_a_400(make_client):
    item = PairItemFactory()
    project, user = researcher()
    MembershipFactory(project=item.project, user=user)
    client = make_client(user)
    deep = '{"verdict": "A", "criteria": ' + "[" * 100_000 + "]" * 100_000 + "}"
    error(client.post(reverse("api_label_submit", args=[item.project_id, item.pk]), deep, content_type=JSON), 400)
    deep = '{"name": "Deep", "criteria": ' + "[" * 100_000 + "]" * 100_000 + "}"
    error(client.post(reverse("api_project_list"), deep, content_type=JSON), 400)
    assert not PairLabel.objects.exists()


def test_a_body_over_the_limit_is_a_json_413(make_client, settings):
    item = PairItemFactory()
    client = make_client(MembershipFactory(project=item.project).user)
    big = json.dumps({"verdict": "A", "rationale": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    url = reverse("api_label_submit", args=[item.project_id, item.pk])
    error(client.post(url, big, content_type=JSON), 413)
    error(client.post(url, {"verdict": "A", "rationale": "x" * (10 * 2**20)}), 413)  # multipart
    error(client.post(url, "verdict=A&rationale=" + "x" * (10 * 2**20),
                      content_type="application/x-www-form-urlencoded"), 413)
    settings.DEBUG = True  # not Django's debug page either
    error(client.post(url, big, content_type=JSON), 413)
    assert not PairLabel.objects.exists()


# --- paths, tokens, roles ------------------------------------------------------------------------------------------

def test_ids_beyond_64_bits_and_non_integer_ids_are_json_404s(make_client):
    item = PairItemFactory()
    client = make_client(MembershipFactory(project=item.project).user)
    for project_id in (2**63, 2**64 + 1, 10**40):
        error(client.get(f"/api/projects/{project_id}/"), 404)
        error(client.post(f"/api/projects/{project_id}/items/{item.pk}/label/", {"verdict": "A"},
                          content_type=JSON), 404)
    error(client.post(f"/api/projects/{item.project_id}/items/{2**63}/label/", {"verdict": "A"},
                      content_type=JSON), 404)
    error(client.get(f"/api/projects/{2**63 - 1}/"), 404)
    error(client.get("/api/projects/abc/"), 404)
    error(client.get("/api/projects/1.5/next/"), 404)
    error(client.get("/api/no-such-thing/"), 404)
    page = client.get("/no-such-page/")  # pages keep Django's own 404
    assert page.status_code == 404 and not page["Content-Type"].startswith(JSON)


def test_a_token_no_token_can_have_is_a_401_not_a_database_error():
    item = PairItemFactory()
    for key in ("abc\x00def", "x" * 41, "\x00"):
        client = Client(HTTP_AUTHORIZATION=f"Token {key}")
        error(client.get(reverse("api_next_item", args=[item.project_id])), 401)
        error(client.post(reverse("api_label_submit", args=[item.project_id, item.pk]), {"verdict": "A"},
                          content_type=JSON), 401)
        error(client.get(reverse("api_project_list")), 401)


def test_a_member_without_the_role_gets_403_and_a_stranger_404(make_client):
    project, _ = researcher()
    member = make_client(MembershipFactory(project=project).user)
    stranger = make_client(UserFactory())
    for name in ("api_quality", "api_disputes", "api_jobs", "api_imports", "api_leaderboard", "api_judge_reports"):
        url = reverse(name, args=[project.pk])
        data = error(member.get(url), 403)
        assert "researcher" in data["detail"]
        error(stranger.get(url), 404)
    error(member.patch(reverse("api_project_detail", args=[project.pk]), {"overlap": 2},
                                    content_type=JSON), 403)


def test_a_bug_is_a_json_500_under_api(monkeypatch, client):
    _, user = researcher()
    client.force_login(user)
    client.raise_request_exception = False

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("annotate.api.project_list_for_user", broken)
    error(client.get(reverse("api_project_list")), 500)


# --- judges --------------------------------------------------------------------------------------------------------

def test_a_judge_run_whose_mode_does_not_fit_the_project_is_refused(make_client):
    steps, user = researcher(task_kind=Project.TaskKind.STEPS)
    endpoint = ModelEndpoint.objects.create(name="e", path="unused")
    pairwise = Judge.objects.create(name="pairs", endpoint=endpoint, mode=Judge.Mode.PAIRWISE)
    client = make_client(user)
    data = error(client.post(reverse("api_judge_run_start", args=[steps.pk, pairwise.pk])), 400, "judge")
    assert "pairwise" in data["detail"] and "steps" in data["detail"]
    assert not JudgeRun.objects.exists()
    error(client.post(reverse("api_judge_run_start", args=[steps.pk, pairwise.pk + 100])), 404)
    step_judge = Judge.objects.create(name="steps", endpoint=endpoint, mode=Judge.Mode.STEPS)
    response = client.post(reverse("api_judge_run_start", args=[steps.pk, step_judge.pk]))
    assert response.status_code == 202 and set(response.json()) == {"id", "status"}


# --- the schema ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


def _ref(schema: dict, ref: str) -> dict:
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def test_the_schema_says_what_the_views_answer(schema):
    paths = schema["paths"]
    create = paths["/api/projects/"]["post"]["responses"]
    assert "200" not in create and _ref(schema, create["201"]["content"][JSON]["schema"]["$ref"])["type"] == "object"
    assert paths["/api/projects/"]["get"]["responses"]["200"]["content"][JSON]["schema"]["type"] == "array"
    run = paths["/api/projects/{project_id}/judges/{judge_id}/runs/"]["post"]["responses"]
    assert "202" in run and "200" not in run
    reports = paths["/api/projects/{project_id}/judges/reports/"]["get"]["responses"]["200"]
    assert reports["content"][JSON]["schema"]["type"] == "array"
    next_item = _ref(schema, paths["/api/projects/{project_id}/next/"]["get"]["responses"]["200"]["content"][JSON]
                     ["schema"]["$ref"])
    shapes = {ref["$ref"].rsplit("/", 1)[1] for ref in next_item["oneOf"]}
    assert shapes == {"NextItem", "StepNextItem"}
    upload = paths["/api/projects/{project_id}/imports/"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert _ref(schema, upload["schema"]["$ref"])["properties"]["file"]["format"] == "binary"
    project = _ref(schema, "ProjectRequest")["properties"]
    assert (project["overlap"]["minimum"], project["overlap"]["maximum"]) == (1, services.OVERLAP_MAX)
    assert (project["gold_rate"]["minimum"], project["gold_rate"]["maximum"]) == (0, 1)
    assert project["lease_minutes"]["minimum"] == 1
    assert project["criteria"]["type"] == "array" and project["criteria"]["items"]["type"] == "string"
    assert paths["/api/projects/{project_id}/"]["get"]["parameters"][0]["schema"]["maximum"] == 2**63 - 1


def test_every_operation_declares_its_errors(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = set(operation["responses"])
            assert "404" in responses, (method, path)
            if {} not in operation.get("security", [{}]):
                assert {"401", "403"} <= responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413"} <= responses, (method, path)
            for code in responses - {"200", "201", "202", "204"}:
                body = operation["responses"][code]["content"][JSON]["schema"]
                assert "detail" in _ref(schema, body["$ref"])["required"], (method, path, code)


def test_the_hot_path_is_what_answers_on_postgresql():
    """The checks above ran through the hot path with a token (a label stored in two queries)."""
    if connection.vendor != "postgresql":
        pytest.skip("the SQL hot path is PostgreSQL's")
    from django.test.utils import CaptureQueriesContext

    item = PairItemFactory()
    client = token_client(MembershipFactory(project=item.project).user)
    with CaptureQueriesContext(connection) as queries:
        assert client.post(reverse("api_label_submit", args=[item.project_id, item.pk]), {"verdict": "A"},
                           content_type=JSON).status_code == 201
    assert len(queries) == 2


# --- imports -------------------------------------------------------------------------------------------------------

def test_an_import_in_a_format_of_the_other_kind_is_refused_at_once(settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotate.models import ImportJob
    from prefdata.readers import formats_for

    settings.MEDIA_ROOT = tmp_path
    steps, user = researcher(task_kind=Project.TaskKind.STEPS)
    client = session_client(user)
    url = reverse("api_imports", args=[steps.pk])
    pair_format = next(name for name in formats_for("pairs") if name != "auto")
    data = error(client.post(url, {"file": SimpleUploadedFile("a.jsonl", b"{}\n"), "format": pair_format}), 400,
                 "format")
    assert pair_format in data["detail"] and "steps" in data["detail"]
    assert not ImportJob.objects.exists()
    step_format = next(name for name in formats_for("steps") if name != "auto")
    response = client.post(url, {"file": SimpleUploadedFile("a.jsonl", b"{}\n"), "format": step_format})
    assert response.status_code == 202, response.content


def test_the_import_operations_document_their_own_answers(schema):
    operations = schema["paths"]["/api/projects/{project_id}/imports/"]
    assert "202" not in operations["get"]["responses"]
    assert operations["get"]["responses"]["200"]["content"][JSON]["schema"]["type"] == "array"
    # POST queues a job (202, the job) or, with preview=true, reads the first rows and queues nothing (200)
    post = operations["post"]["responses"]
    assert post["202"]["content"][JSON]["schema"]["$ref"].endswith("/ImportJob")
    assert post["200"]["content"][JSON]["schema"] != post["202"]["content"][JSON]["schema"]
