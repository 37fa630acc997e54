"""Pages that fit the project's kind: a steps project speaks of solutions and steps, pages through all its
solutions and shows no pairwise-only link; a pairwise project shows no step-only one."""

import re

import pytest
from django.urls import reverse

from annotate.models import Project, Prompt, StepItem
from annotate.roles import researcher_grant
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def solutions(project, n):
    prompts = Prompt.objects.bulk_create(
        [Prompt(project=project, messages=[{"role": "user", "content": f"Problem {i}"}]) for i in range(n)])
    StepItem.objects.bulk_create([StepItem(project=project, prompt=p, steps=["a", "b"]) for p in prompts])


def rows(page: str) -> list[str]:
    """The solution ids listed on the page."""
    return re.findall(r'/solutions/(\d+)/split/', page)


@pytest.fixture
def steps_researcher():
    return MembershipFactory(researcher=True, project__task_kind=Project.TaskKind.STEPS)


def test_a_steps_project_pages_through_its_120_solutions(client, steps_researcher):
    project = steps_researcher.project
    solutions(project, 120)
    ids = [str(pk) for pk in StepItem.objects.filter(project=project).order_by("id").values_list("id", flat=True)]
    client.force_login(steps_researcher.user)
    url = reverse("annotate:project_detail", args=[project.pk])
    first = client.get(url).content.decode()
    assert rows(first) == ids[:50]
    assert "1–50 of 120" in first and '<span class="badge">120</span>' in first
    assert 'href="?page=2#solutions"' in first and 'href="?page=3#solutions"' in first
    assert 'href="?page=4#solutions"' not in first
    third = client.get(url, {"page": 3}).content.decode()
    assert rows(third) == ids[100:]
    assert "101–120 of 120" in third and 'aria-current="page">3<' in third and 'rel="next"' not in third
    assert rows(client.get(url, {"page": 2}).content.decode()) == ids[50:100]
    # A page that is not one shows the last or the first, never an error.
    assert rows(client.get(url, {"page": 99}).content.decode()) == ids[100:]
    assert rows(client.get(url, {"page": "x"}).content.decode()) == ids[:50]


def test_fifty_solutions_need_no_pager(client, steps_researcher):
    solutions(steps_researcher.project, 50)
    client.force_login(steps_researcher.user)
    page = client.get(reverse("annotate:project_detail", args=[steps_researcher.project.pk])).content.decode()
    assert len(rows(page)) == 50 and 'class="pager"' not in page


def test_a_steps_project_says_solutions_and_hides_pairwise_links(client, steps_researcher):
    project = steps_researcher.project
    solutions(project, 3)
    client.force_login(steps_researcher.user)
    page = client.get(reverse("annotate:project_detail", args=[project.pk])).content.decode()
    assert "Import solutions" in page and "Review step disagreements" in page
    assert "</b>solutions</div>" in page and "</b>problems</div>" in page
    for pairwise_only in ("Import pairs", "Generate completions", "Leaderboard", "pairs",
                          reverse("synth:jobs", args=[project.pk]), reverse("judges:leaderboard", args=[project.pk])):
        assert pairwise_only not in page, pairwise_only
    # The generation page, reached anyway, says it does not apply and offers no form.
    researcher_grant(user=steps_researcher.user)
    jobs = client.get(reverse("synth:jobs", args=[project.pk])).content.decode()
    assert "does not apply to this steps project" in jobs and "Generate pairs</button>" not in jobs


def test_a_pairwise_project_hides_step_links(client):
    member = MembershipFactory(researcher=True)
    client.force_login(member.user)
    page = client.get(reverse("annotate:project_detail", args=[member.project.pk])).content.decode()
    assert "Import pairs" in page and "Generate completions" in page and "Leaderboard" in page
    for step_only in ("Import solutions", "Review step disagreements", "Solutions", "solutions", "Step agreement"):
        assert step_only not in page, step_only


def test_annotators_of_a_steps_project_see_no_solution_list(client, steps_researcher):
    solutions(steps_researcher.project, 60)
    annotator = MembershipFactory(project=steps_researcher.project)
    client.force_login(annotator.user)
    page = client.get(reverse("annotate:project_detail", args=[steps_researcher.project.pk])).content.decode()
    assert rows(page) == [] and "Researcher" not in page and "Start rating steps" in page


@pytest.mark.parametrize("kind", [Project.TaskKind.PAIRWISE, Project.TaskKind.STEPS])
def test_the_project_page_shows_its_guidelines_as_sanitized_markdown(client, kind):
    member = MembershipFactory(project__task_kind=kind,
                               project__guidelines="**Ties** only when equal.\n\n<script>alert(1)</script>")
    client.force_login(member.user)
    page = client.get(reverse("annotate:project_detail", args=[member.project.pk])).content.decode()
    assert "<strong>Ties</strong> only when equal." in page and "**Ties**" not in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_leaderboard_of_a_steps_project_says_it_does_not_apply(client):
    member = MembershipFactory(researcher=True, project__task_kind=Project.TaskKind.STEPS)
    client.force_login(member.user)
    page = client.get(reverse("judges:leaderboard", args=[member.project.pk])).content.decode()
    assert "This is a steps project" in page and "No battle yet" not in page
