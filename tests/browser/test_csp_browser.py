"""The Content-Security-Policy: its header on every page, and every page working under it in Chromium."""

import os
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import ImportJob, Project
from annotate.services import pair_label_submit, step_item_create, step_label_submit
from judges.models import AIJudgment, Judge, JudgeRun
from synth.models import ModelEndpoint, SynthesisJob
from tests.browser.conftest import csp_watch, login
from tests.factories import MembershipFactory, PairItemFactory, ProjectFactory, PromptFactory
from training.models import DatasetSnapshot, TrainingJob

pytestmark = [pytest.mark.browser]

SHOTS = os.environ.get("SCREENSHOTS_DIR")  # set to keep screenshots of the pages for a look


def site():
    """A pairwise and a steps project with something on every page: disagreements, labels, judgments,
    jobs of each kind (with progress bars), and a researcher who is staff (the admin)."""
    pairs = ProjectFactory(name="Pairs", overlap=2, criteria=["helpfulness"])
    researcher = MembershipFactory(project=pairs, researcher=True, user__is_staff=True,
                                   user__is_superuser=True).user
    first, second = MembershipFactory(project=pairs).user, MembershipFactory(project=pairs).user
    items = [PairItemFactory(project=pairs) for _ in range(4)]
    for i, item in enumerate(items[:3]):
        item.completion_a.model_name, item.completion_b.model_name = ("big", "small") if i % 2 else ("small", "big")
        item.completion_a.save()
        item.completion_b.save()
        pair_label_submit(item=item, annotator=first, verdict="A", strength=2)
        pair_label_submit(item=item, annotator=second, verdict="B" if i else "A", strength=3)
    endpoint = ModelEndpoint.objects.create(name="demo-model", path="unused")
    judge = Judge.objects.create(name="judge", endpoint=endpoint)
    for item, verdict, p in zip(items[:3], ["A", "B", "A"], [0.9, 0.2, 0.7], strict=True):
        AIJudgment.objects.create(judge=judge, item=item, template_version=judge.template_version, verdict=verdict,
                                  probability=p, verdict_ab=verdict, verdict_ba=verdict)
    now = timezone.now()
    running = {"status": "running", "started_at": now - timedelta(minutes=3), "heartbeat_at": now,
               "lease_until": now + timedelta(seconds=60), "lease_token": "t"}
    snapshot = DatasetSnapshot.objects.create(project=pairs, name="prefs-v1", file="x.jsonl", sha256="0" * 64,
                                              rows=10)
    ImportJob.objects.create(project=pairs, file_name="hh-rlhf.jsonl.gz", path="x", format="hh-rlhf",
                             progress=1200, total=10_000, **running)
    ImportJob.objects.create(project=pairs, file_name="broken.jsonl", path="x", status="failed",
                             error="broken.jsonl, line 7, field 'response_b': missing")
    SynthesisJob.objects.create(project=pairs, endpoint=endpoint, progress=8, total=20, **running)
    JudgeRun.objects.create(judge=judge, project=pairs, progress=30, total=64, **running)
    TrainingJob.objects.create(base_endpoint=endpoint, snapshot=snapshot, progress=4, total=10, **running)

    steps = ProjectFactory(name="Steps", task_kind=Project.TaskKind.STEPS, overlap=2)
    MembershipFactory(project=steps, user=researcher, researcher=True)
    MembershipFactory(project=steps, user=first)
    MembershipFactory(project=steps, user=second)
    solutions = [step_item_create(prompt=PromptFactory(project=steps), steps=["Let x = 2.", "So 2x = 5.", "x = 2.5"])
                 for _ in range(3)]
    step_label_submit(item=solutions[0], annotator=first, ratings=[1, -1, -1], finish_reason="found_error")
    step_label_submit(item=solutions[0], annotator=second, ratings=[1, 1, 1], finish_reason="solution")
    return {"researcher": researcher, "pairs": pairs, "steps": steps, "solution": solutions[2], "judge": judge}


def pages(s):
    p, st = s["pairs"].pk, s["steps"].pk
    return [
        ("project list", "/"), ("project", f"/projects/{p}/"), ("steps project", f"/projects/{st}/"),
        ("labeling pairwise", f"/projects/{p}/annotate/"), ("labeling steps", f"/projects/{st}/annotate/"),
        ("import", f"/projects/{p}/import/"), ("quality", f"/projects/{p}/quality/"),
        ("steps quality", f"/projects/{st}/quality/"), ("review", f"/projects/{p}/review/?all=1"),
        ("steps review", f"/projects/{st}/review/"), ("split", f"/projects/{st}/solutions/{s['solution'].pk}/split/"),
        ("judges", f"/projects/{p}/judges/"), ("leaderboard", f"/projects/{p}/leaderboard/"),
        ("datasets", f"/projects/{p}/datasets/"), ("synthesis", f"/projects/{p}/synthesis/"),
        ("new project", "/projects/new/"), ("members", f"/projects/{p}/members/"),
        ("steps import", f"/projects/{st}/import/"), ("steps datasets", f"/projects/{st}/datasets/"),
        ("new judge", f"/projects/{p}/judges/new/"), ("judge", f"/projects/{p}/judges/{s['judge'].pk}/edit/"),
        ("judge verdicts", f"/projects/{p}/judges/{s['judge'].pk}/items/"), ("endpoints", "/endpoints/"),
        ("admin", "/admin/"), ("admin list", "/admin/annotate/pairitem/"),
        ("admin form", f"/admin/annotate/project/{p}/change/"), ("api docs", "/api/docs/"),
    ]


def policy_of(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.django_db
def test_every_page_sends_the_policy(client):
    s = site()
    client.force_login(s["researcher"])
    anonymous = [("login", "/accounts/login/")]
    for name, path in [*pages(s), *anonymous]:
        if (name, path) == anonymous[0]:
            client.logout()
        response = client.get(path)
        assert response.status_code == 200, name
        policy = policy_of(response)
        assert "'unsafe-inline'" not in response["Content-Security-Policy"], name
        assert "'unsafe-eval'" not in response["Content-Security-Policy"], name
        assert policy["default-src"] == ["'self'"] and policy["style-src"] == ["'self'"], name
        assert policy["img-src"] == (["'self'", "data:"] if name == "api docs" else ["'self'"]), name
        assert policy["object-src"] == ["'none'"], name
        assert policy["base-uri"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"], name
        assert policy["form-action"] == ["'self'"], name
        html = response.content.decode()
        if name == "api docs":
            # Swagger UI's inline start script runs under this response's nonce, and nothing else does;
            # its stylesheet's icons are data: images. Only here (settings.CONTENT_SECURITY_POLICY_PATHS).
            assert policy["script-src"][0] == "'self'" and len(policy["script-src"]) == 2
            nonce = re.fullmatch(r"'nonce-(.+)'", policy["script-src"][1]).group(1)
            inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)
            assert inline == [f' nonce="{nonce}"'], inline
        else:
            assert policy["script-src"] == ["'self'"], name
            if not path.startswith("/admin/"):  # ours: no inline script, style or event handler at all
                assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), name
                assert not re.search(r"<style|\sstyle=|\son[a-z]+=|hx-on", html), name


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_works_under_the_policy_in_chromium(browser, live_server, width):
    s = site()
    context = browser.new_context(viewport={"width": width, "height": 900})
    violations = csp_watch(context)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/csp-login-{width}.png", full_page=True)
    login(page, live_server, s["researcher"].username)
    for name, path in pages(s):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, name
        page.wait_for_load_state("networkidle")
        if name == "api docs":
            # Swagger UI started (its inline script ran), loaded the schema and lists the operations.
            page.locator(".swagger-ui .info .title", has_text="Preference data API").wait_for()
            page.locator(".swagger-ui .opblock").first.wait_for()
            # and it calls the API (its request interceptor is in the inline script too).
            operation = page.locator(".opblock-get", has=page.locator("[data-path='/api/projects/']")).first
            operation.locator(".opblock-summary").click()
            operation.get_by_role("button", name="Try it out").click()
            operation.get_by_role("button", name="Execute").click()
            operation.locator(".live-responses-table .response-col_status", has_text="200").wait_for()
        if name == "admin form":
            page.locator("#project_form").wait_for()
        if SHOTS:
            page.screenshot(path=f"{SHOTS}/csp-{name.replace(' ', '-')}-{width}.png", full_page=True)
        assert violations == [], name
    # The watch sees a violation when there is one: an inline script added to the page is refused.
    page.goto(f"{live_server.url}/")
    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.ran = 1";
                            document.body.append(s); }""")
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.ran") is None
    assert any("script-src" in v for v in violations), violations
    context.close()
