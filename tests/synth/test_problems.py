"""The problem bank: import of GSM8K/MATH- and MBPP/HumanEval-like files (JSON Lines, Parquet), all or
nothing with the file, line and field of a bad record; the management command; the page and the API with
their filters, paging and permissions; model text escaped; the prompt-only rows for snapshots."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotate.models import Membership
from synth.models import Problem
from synth.problems import problems_for_export, problems_import
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db

GSM8K = {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7 apples.\n#### 7"}
MATH = {"problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?", "solution": "It is $\\boxed{\\frac{3}{4}}$.",
        "level": "Level 1"}
MBPP = {"text": "Write a function add(a, b).", "test_list": ["assert add(1, 2) == 3"], "task_id": 7,
        "test_setup_code": "import math"}
HUMANEVAL = {"prompt": "def inc(x):\n    \"\"\"x + 1\"\"\"\n",
             "test": "def check(candidate):\n    assert candidate(1) == 2\n", "entry_point": "inc",
             "task_id": "HumanEval/0"}


def jsonl(tmp_path, rows, name="problems.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_each_shape_is_read_with_its_answer_tests_and_metadata(tmp_path):
    project = ProjectFactory()
    summary = problems_import(project=project, path=jsonl(tmp_path, [GSM8K, MATH, MBPP, HUMANEVAL]), tags=["demo"])
    assert (summary.count, summary.math, summary.code) == (4, 2, 2)
    gsm, math, mbpp, humaneval = Problem.objects.order_by("id")
    assert gsm.answer == "7" and gsm.metadata["solution"] == "3 + 4 = 7 apples." and gsm.kind == "math"
    assert math.answer == "\\frac{3}{4}" and math.metadata["level"] == "Level 1"
    assert mbpp.tests == ["assert add(1, 2) == 3"] and mbpp.metadata == {"task_id": 7, "setup": "import math"}
    assert humaneval.entry_point == "inc" and "def check" in humaneval.tests and humaneval.kind == "code"
    assert all(p.tags == ["demo"] and p.split == "train" and p.source == "problems.jsonl" for p in (gsm, humaneval))


def test_parquet_is_read_too(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"question": ["1 + 1?", "2 + 2?"], "answer": ["2", "#### 4"],
                             "split": ["train", "test"]}), path)
    problems_import(project=ProjectFactory(), path=path)
    assert list(Problem.objects.order_by("id").values_list("answer", "split")) == [("2", "train"), ("4", "test")]


@pytest.mark.parametrize(("row", "field"), [
    ({"answer": "4"}, "question"),
    ({"question": "2 + 2?"}, "answer"),
    ({"question": "2 + 2?", "answer": ["4"]}, "answer"),
    ({"prompt": "def f():", "test": "def check(candidate):\n    pass"}, "entry_point"),
    ({"prompt": "f", "tests": [1, 2]}, "tests"),
    ({"question": "2 + 2?", "answer": "4", "split": "dev"}, "split"),
    ({"question": "2 + 2?", "answer": "4", "tags": ["a b"]}, "tags"),
])
def test_a_bad_record_stops_the_import_naming_file_line_and_field(tmp_path, row, field):
    project = ProjectFactory()
    path = jsonl(tmp_path, [GSM8K, row, MBPP], name="bad.jsonl")
    with pytest.raises(ValidationError) as caught:
        problems_import(project=project, path=path)
    message = caught.value.message_dict["file"][0]
    assert message.startswith(f"bad.jsonl, line 2, field '{field}'")
    assert not Problem.objects.exists()  # all or nothing


def test_the_command_imports_with_tags_and_split(tmp_path):
    project = ProjectFactory(name="bank")
    call_command("import_problems", str(jsonl(tmp_path, [GSM8K, MBPP])), "--project", "bank", "--tags", "a,b",
                 "--split", "test")
    assert [(p.tags, p.split) for p in Problem.objects.filter(project=project)] == [(["a", "b"], "test")] * 2
    with pytest.raises(CommandError, match="line 1, field 'question'"):
        call_command("import_problems", str(jsonl(tmp_path, [{"answer": "1"}], "x.jsonl")), "--project", "bank")
    with pytest.raises(CommandError, match="No project"):
        call_command("import_problems", str(jsonl(tmp_path, [GSM8K])), "--project", "nope")


def test_prompt_only_rows_for_snapshots(tmp_path):
    project = ProjectFactory()
    problems_import(project=project, path=jsonl(tmp_path, [GSM8K, MBPP]), tags=["x"])
    problems_import(project=project, path=jsonl(tmp_path, [HUMANEVAL]), split="test")
    rows = list(problems_for_export(project=project, tags=["x"]))
    assert [r["answer"] for r in rows] == ["7", None]
    assert rows[0]["prompt"] == [{"role": "user", "content": GSM8K["question"]}] and rows[0]["tests"] is None
    assert rows[1]["tests"] == MBPP["test_list"] and rows[1]["tags"] == ["x"] and rows[1]["split"] == "train"
    test_rows = list(problems_for_export(project=project, split="test"))
    assert len(test_rows) == 1 and test_rows[0]["entry_point"] == "inc"


# -- page and API ---------------------------------------------------------------------------------------------


@pytest.fixture
def researcher(client):
    membership = MembershipFactory(role=Membership.Role.RESEARCHER)
    client.force_login(membership.user)
    return membership


def bank(project):
    Problem.objects.create(project=project, question="<script>alert(1)</script> What is 1 + 1?", answer="2",
                           tags=["easy"], tag_index=",easy,")
    Problem.objects.create(project=project, question="What is 7 * 6?", answer="42", split="test")
    Problem.objects.create(project=project, question="Write add.", tests=["assert add(1, 1) == 2"], tags=["easy"],
                           tag_index=",easy,")


def test_the_page_filters_pages_and_escapes(client, researcher):
    bank(researcher.project)
    url = reverse("synth:problems", args=[researcher.project.pk])
    page = client.get(url).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "What is 7 * 6?" in page and "Write add." in page
    page = client.get(url, {"tag": "easy", "kind": "math"}).content.decode()
    assert "What is 1 + 1?" in page and "Write add." not in page and "What is 7 * 6?" not in page
    page = client.get(url, {"split": "test"}).content.decode()
    assert "What is 7 * 6?" in page and "What is 1 + 1?" not in page
    page = client.get(url, {"q": "add"}).content.decode()
    assert "Write add." in page and "What is 7" not in page
    for k in range(60):
        Problem.objects.create(project=researcher.project, question=f"Extra {k}", answer="1")
    page = client.get(url, {"page": 2}).content.decode()
    assert "Extra 59" in page and "Extra 0<" not in page and "of 63" in page


def test_the_page_imports_an_upload_and_names_a_bad_line(client, researcher):
    url = reverse("synth:problems", args=[researcher.project.pk])
    upload = SimpleUploadedFile("g.jsonl", (json.dumps(GSM8K) + "\n").encode())
    assert client.post(url, {"file": upload, "tags": "gsm8k"}).status_code == 302
    assert Problem.objects.get(project=researcher.project).tags == ["gsm8k"]
    upload = SimpleUploadedFile("g.jsonl", (json.dumps(GSM8K) + "\n" + json.dumps({"answer": 1}) + "\n").encode())
    response = client.post(url, {"file": upload})
    assert response.status_code == 200 and "g.jsonl, line 2, field" in response.content.decode()
    assert Problem.objects.count() == 1


def test_strangers_and_annotators_see_no_problem(client):
    project = ProjectFactory()
    bank(project)
    annotator = MembershipFactory(project=project)
    client.force_login(annotator.user)
    assert client.get(reverse("synth:problems", args=[project.pk])).status_code == 403
    assert client.get(f"/api/projects/{project.pk}/problems/").status_code == 403
    stranger = MembershipFactory()
    client.force_login(stranger.user)
    assert client.get(reverse("synth:problems", args=[project.pk])).status_code == 404
    assert client.get(f"/api/projects/{project.pk}/problems/").status_code == 404


def test_the_api_lists_with_filters_and_creates_by_upload(client, researcher):
    bank(researcher.project)
    url = f"/api/projects/{researcher.project.pk}/problems/"
    data = client.get(url, {"tag": "easy"}).json()
    assert data["count"] == 2 and {r["kind"] for r in data["results"]} == {"math", "code"}
    assert client.get(url, {"kind": "code"}).json()["results"][0]["tests"] == ["assert add(1, 1) == 2"]
    assert client.get(url, {"split": "dev"}).status_code == 400
    upload = SimpleUploadedFile("h.jsonl", (json.dumps(HUMANEVAL) + "\n").encode())
    response = client.post(url, {"file": upload, "tags": "he", "split": "test"})
    assert response.status_code == 201 and response.json() == {"count": 1, "math": 0, "code": 1}
    assert Problem.objects.get(entry_point="inc").tags == ["he"]
    bad = SimpleUploadedFile("h.jsonl", (json.dumps({"prompt": "x", "test": "def check(c): pass"}) + "\n").encode())
    response = client.post(url, {"file": bad})
    assert response.status_code == 400 and "entry_point" in json.dumps(response.json())


def test_the_page_says_which_protections_code_verification_has(client, researcher, monkeypatch):
    url = reverse("synth:problems", args=[researcher.project.pk])
    fake = {"mode": "refused", "protections": ["wall-clock timeout that kills the run's process group"],
            "missing": ["no network (own network namespace)"]}
    monkeypatch.setattr("synth.views.sandbox_status", lambda: fake)
    page = client.get(url).content.decode()
    assert "<b>refused</b>: bubblewrap is missing" in page and "Missing: no network (own network namespace)." in page
    monkeypatch.setattr("synth.views.sandbox_status", lambda: {**fake, "mode": "sandbox", "missing": []})
    page = client.get(url).content.decode()
    assert "sandboxed (bubblewrap)" in page and "Missing:" not in page
