from __future__ import annotations

import random

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotate.models import Membership, PairItem, Project, StepItem
from annotate.roles import job_start_permission
from annotate.selectors import project_get_for_user
from judges.forms import JudgeForm, PairChoiceForm
from judges.leaderboard import SOURCES, project_leaderboard
from judges.models import MODE_TEMPLATES, AIJudgment, Judge, JudgeRun
from judges.reports import ITEM_FILTERS, judge_item_verdicts, judge_report
from judges.selectors import judges_for_project
from judges.services import (
    JudgeTestError,
    judge_preview,
    judge_run_create,
    judge_run_estimate,
    judge_save,
    judge_test,
)


class JudgeRunForm(forms.Form):
    judge = forms.ModelChoiceField(queryset=Judge.objects.none())

    def __init__(self, *args, project: Project, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["judge"].queryset = judges_for_project(project=project, user=user).select_related("endpoint")


def _researcher_project(request: HttpRequest, project_id: int) -> Project:
    return project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)


def _judge_in_project(request: HttpRequest, project: Project, judge_id: int) -> Judge:
    """A judge the researcher may use on the project (its endpoint open to them there); else 404."""
    judge = judges_for_project(project=project, user=request.user).filter(pk=judge_id).first()
    if judge is None:
        raise Http404("No such judge.")
    return judge


@login_required
@require_http_methods(["GET", "POST"])
def runs(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _researcher_project(request, project_id)
    form = JudgeRunForm(request.POST or None, project=project, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            run = judge_run_create(judge=form.cleaned_data["judge"], project=project, user=request.user)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Queued judge run #{run.pk}.")
            return redirect("judges:runs", project_id=project.pk)
    run_list = JudgeRun.objects.filter(project=project).select_related("judge")[:50]
    active = any(r.status in (JudgeRun.Status.QUEUED, JudgeRun.Status.RUNNING) for r in run_list)
    judge_ids = AIJudgment.objects.filter(item__project=project).values_list("judge_id", flat=True).distinct()
    reports = [(judge, judge_report(judge=judge, project=project))
               for judge in Judge.objects.filter(pk__in=judge_ids).select_related("endpoint")]
    context = {"project": project, "form": form, "runs": run_list, "active": active, "reports": reports,
               "judges": judges_for_project(project=project, user=request.user).select_related("endpoint"),
               "can_start": request.user.has_perm(job_start_permission(JudgeRun)),
               "can_add": request.user.has_perm("judges.add_judge"),
               "can_change": request.user.has_perm("judges.change_judge")}
    return render(request, "judges/runs.html#runs" if request.htmx else "judges/runs.html", context)


@login_required
@require_GET
def run_estimate(request: HttpRequest, project_id: int) -> HttpResponse:
    """The run form's estimate of the chosen judge's run (an htmx fragment)."""
    project = _researcher_project(request, project_id)
    judge_id = request.GET.get("judge", "")
    estimate = judge = None
    if judge_id.isdigit():
        judge = _judge_in_project(request, project, int(judge_id))
        estimate = judge_run_estimate(judge=judge, project=project)
    return render(request, "judges/runs.html#estimate", {"project": project, "judge": judge, "estimate": estimate})


@login_required
@require_http_methods(["GET", "POST"])
def judge_edit(request: HttpRequest, project_id: int, judge_id: int | None = None) -> HttpResponse:
    """Create or change a judge: its endpoint, mode and template (previewed on a pair of the project),
    constitution, debiasing, votes and sampling; each error on its field."""
    project = _researcher_project(request, project_id)
    judge = _judge_in_project(request, project, judge_id) if judge_id is not None else None
    permission = "judges.change_judge" if judge else "judges.add_judge"
    if not request.user.has_perm(permission):
        return render(request, "judges/judge_form.html", {"project": project, "judge": judge, "denied": True},
                      status=403)
    form = JudgeForm(request.POST or None, project=project, user=request.user, judge=judge)
    if request.method == "POST" and form.is_valid():
        built = form.judge_build()
        try:
            saved = judge_save(judge=built, user=request.user)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            version = f" (version {saved.template_version})" if judge else ""
            messages.success(request, f"Saved judge {saved.name}{version}.")
            return redirect("judges:runs", project_id=project.pk)
    pair = PairChoiceForm(initial={"item": _pair_pick(project, None)})
    return render(request, "judges/judge_form.html", {"project": project, "judge": judge, "form": form,
                                                      "pair": pair}, status=422 if form.errors else 200)


@login_required
@require_GET
def judge_template(request: HttpRequest, project_id: int) -> HttpResponse:
    """The template field for the mode chosen (an htmx fragment): the judge's own template of that mode, or
    the default one."""
    project = _researcher_project(request, project_id)
    judge_id = request.GET.get("judge", "")
    judge = _judge_in_project(request, project, int(judge_id)) if judge_id.isdigit() else Judge()
    mode = request.GET.get("mode", "")
    if mode not in MODE_TEMPLATES:
        raise Http404("No such mode.")
    spec = MODE_TEMPLATES[mode]
    return render(request, "judges/judge_form.html#template_field",
                  {"template_text": getattr(judge, spec.field), "template_help":
                   Judge._meta.get_field(spec.field).help_text})


def _pair_pick(project: Project, item_id: int | None) -> int | None:
    """The id of the project's pair (or solution) ``item_id``, or of one drawn at random; None if it has none."""
    items = (StepItem if project.task_kind == Project.TaskKind.STEPS else PairItem).objects.filter(project=project)
    if item_id is not None:
        return items.filter(pk=item_id).values_list("pk", flat=True).first()
    count = items.count()
    if not count:
        return None
    return items.order_by("id").values_list("pk", flat=True)[random.randrange(count)]  # noqa: S311 (not secret)


def _posted_judge(request: HttpRequest, project: Project) -> tuple[JudgeForm, Judge | None]:
    """The judge as the form now says, not saved, and the form (its errors)."""
    judge_id = request.POST.get("judge_id", "")
    stored = _judge_in_project(request, project, int(judge_id)) if judge_id.isdigit() else None
    form = JudgeForm(request.POST, project=project, user=request.user, judge=stored)
    form.is_valid()
    return form, form.judge_build()


def _posted_item(request: HttpRequest, project: Project) -> tuple[PairItem | StepItem | None, str]:
    raw = (request.POST.get("item") or "").strip()
    if raw and not raw.isdigit():
        return None, "A pair is given by its number."
    item_id = _pair_pick(project, int(raw) if raw else None)
    if item_id is None:
        return None, f"No pair {raw} in this project." if raw else "The project has no pair yet."
    model = StepItem if project.task_kind == Project.TaskKind.STEPS else PairItem
    related = ("prompt",) if model is StepItem else ("prompt", "completion_a", "completion_b", "project")
    return model.objects.select_related(*related).get(pk=item_id), ""


@login_required
@require_POST
def judge_preview_view(request: HttpRequest, project_id: int) -> HttpResponse:
    """The prompts the judge being edited sends for a pair of the project (an htmx fragment; text escaped)."""
    project = _researcher_project(request, project_id)
    form, judge = _posted_judge(request, project)
    item, item_error = _posted_item(request, project)
    errors = {f: e for f, e in form.errors.items() if f in ("template", "mode", "constitution", "debiasing")}
    prompts = []
    if item is not None and "template" not in errors and "mode" not in errors:
        prompts = judge_preview(judge=judge, item=item)
    return render(request, "judges/judge_form.html#preview",
                  {"project": project, "item": item, "item_error": item_error, "prompts": prompts, "errors": errors})


@login_required
@require_POST
def judge_test_view(request: HttpRequest, project_id: int) -> HttpResponse:
    """Run the judge being edited on one pair now and show what each order said (an htmx fragment): nothing
    is stored, so reports never count it."""
    project = _researcher_project(request, project_id)
    form, judge = _posted_judge(request, project)
    item, error = _posted_item(request, project)
    errors = {f: e for f, e in form.errors.items() if f != "name"}
    result = None
    if errors:
        error = "Fix the form first: " + "; ".join(f"{f.replace('_', ' ')}: {' '.join(e)}" for f, e in errors.items())
    elif item is not None:
        try:
            result = judge_test(judge=judge, item=item, user=request.user)
        except JudgeTestError as exc:
            error = str(exc)
        except ValidationError as exc:
            error = " ".join(m for ms in exc.message_dict.values() for m in ms)
    return render(request, "judges/judge_test.html#result",
                  {"project": project, "item": item, "result": result, "error": error, "judge": judge},
                  status=200)


@login_required
@require_GET
def judge_items(request: HttpRequest, project_id: int, judge_id: int) -> HttpResponse:
    """The judge's verdict on each pair next to the people's, a page at a time."""
    project = _researcher_project(request, project_id)
    judge = _judge_in_project(request, project, judge_id)
    show = request.GET.get("show", "all")
    if show not in ITEM_FILTERS:
        show = "all"
    page = judge_item_verdicts(judge=judge, project=project, page=request.GET.get("page", 1), show=show)
    return render(request, "judges/judge_items.html", {"project": project, "judge": judge, "page": page,
                                                       "show": show, "filters": ITEM_FILTERS})


@login_required
def leaderboard(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _researcher_project(request, project_id)
    source = request.GET.get("source", "human")
    if source not in SOURCES:
        source = "human"
    table = project_leaderboard(project=project, source=source)
    return render(request, "judges/leaderboard.html", {"project": project, "table": table, "source": source,
                                                       "sources": SOURCES})
