from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotate.models import Membership, Project
from annotate.roles import job_start_permission
from annotate.selectors import project_get_for_user
from judges.leaderboard import SOURCES, project_leaderboard
from judges.models import AIJudgment, Judge, JudgeRun
from judges.reports import judge_report
from judges.services import MODE_TASK_KINDS, judge_run_create
from synth.selectors import endpoints_usable


class JudgeRunForm(forms.Form):
    judge = forms.ModelChoiceField(queryset=Judge.objects.none())

    def __init__(self, *args, project: Project, user, **kwargs):
        super().__init__(*args, **kwargs)
        usable = endpoints_usable(project=project, user=user)
        modes = [mode for mode, kind in MODE_TASK_KINDS.items() if kind == project.task_kind]
        self.fields["judge"].queryset = (Judge.objects.filter(endpoint__in=usable, mode__in=modes)
                                         .select_related("endpoint"))


@login_required
@require_http_methods(["GET", "POST"])
def runs(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
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
               "can_start": request.user.has_perm(job_start_permission(JudgeRun))}
    return render(request, "judges/runs.html#runs" if request.htmx else "judges/runs.html", context)


@login_required
def leaderboard(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    source = request.GET.get("source", "human")
    if source not in SOURCES:
        source = "human"
    table = project_leaderboard(project=project, source=source)
    return render(request, "judges/leaderboard.html", {"project": project, "table": table, "source": source,
                                                       "sources": SOURCES})
