from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, F, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from annotate.models import Membership
from annotate.selectors import project_get_for_user
from judges.leaderboard import SOURCES, project_leaderboard
from judges.models import AIJudgment, Judge, JudgeRun
from judges.services import judge_run_create


class JudgeRunForm(forms.Form):
    judge = forms.ModelChoiceField(queryset=Judge.objects.select_related("endpoint"))


@login_required
def runs(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    form = JudgeRunForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        run = judge_run_create(judge=form.cleaned_data["judge"], project=project)
        messages.success(request, f"Queued judge run #{run.pk}.")
        return redirect("judges:runs", project_id=project.pk)
    run_list = JudgeRun.objects.filter(project=project).select_related("judge")[:50]
    active = any(r.status in (JudgeRun.Status.QUEUED, JudgeRun.Status.RUNNING) for r in run_list)
    summary = (AIJudgment.objects.filter(item__project=project).values("judge__name")
               .annotate(n=Count("id"), a=Count("id", filter=Q(verdict="A")), b=Count("id", filter=Q(verdict="B")),
                         tie=Count("id", filter=Q(verdict="tie")),
                         first=Count("id", filter=Q(verdict_ab="A")),
                         flips=Count("id", filter=~Q(verdict_ba="") & ~Q(verdict_ab=F("verdict_ba"))))
               .order_by("judge__name"))
    context = {"project": project, "form": form, "runs": run_list, "active": active, "summary": summary}
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
