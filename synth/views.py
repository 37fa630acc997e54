from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from annotate.models import Membership, Project
from annotate.roles import job_start_permission
from annotate.selectors import project_get_for_user
from synth.models import ModelEndpoint, SynthesisJob
from synth.selectors import endpoints_usable
from synth.services import synthesis_job_create


class SynthesisForm(forms.Form):
    endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.none())
    max_new_tokens = forms.IntegerField(min_value=1, max_value=4096, initial=64)
    temperature = forms.FloatField(min_value=0, max_value=2, initial=0.8)

    def __init__(self, *args, project: Project, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = endpoints_usable(project=project, user=user)


@login_required
def jobs(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    form = SynthesisForm(request.POST or None, project=project, user=request.user)
    if request.method == "POST" and form.is_valid():
        job = synthesis_job_create(project=project, endpoint=form.cleaned_data["endpoint"],
                                   max_new_tokens=form.cleaned_data["max_new_tokens"],
                                   temperature=form.cleaned_data["temperature"], user=request.user)
        messages.success(request, f"Queued job #{job.pk}: two completions for each of {job.total} prompts.")
        return redirect("synth:jobs", project_id=project.pk)
    job_list = SynthesisJob.objects.filter(project=project).select_related("endpoint")[:50]
    active = any(j.status in (SynthesisJob.Status.QUEUED, SynthesisJob.Status.RUNNING) for j in job_list)
    context = {"project": project, "form": form, "jobs": job_list, "active": active,
               "can_start": request.user.has_perm(job_start_permission(SynthesisJob))}
    return render(request, "synth/jobs.html#jobs" if request.htmx else "synth/jobs.html", context)
