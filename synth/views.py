from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotate.models import Membership, Project
from annotate.roles import job_start_permission, permission_require
from annotate.selectors import project_get_for_user
from synth.models import ModelEndpoint, SynthesisJob
from synth.selectors import endpoint_get_for_user, endpoints_for_user, endpoints_usable
from synth.services import endpoint_check, endpoint_supports_text, synthesis_job_create


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


@login_required
@require_http_methods(["GET", "POST"])
def endpoints(request: HttpRequest) -> HttpResponse:
    """Researchers: the model endpoints, what each server supports, and a check of a connection."""
    endpoint_list = list(endpoints_for_user(user=request.user))
    if request.method == "POST":
        chosen = request.POST.get("endpoint", "")
        if not chosen.isdigit():
            raise Http404("No such endpoint.")
        endpoint = endpoint_get_for_user(user=request.user, endpoint_id=int(chosen))
        permission_require(user=request.user, permission="synth.change_modelendpoint", doing="check endpoints")
        try:
            endpoint_check(endpoint=endpoint)
        except ValidationError as exc:
            messages.error(request, f"{endpoint.name}: {' '.join(exc.messages)}")
        else:
            messages.success(request, f"{endpoint.name}: {endpoint_supports_text(endpoint=endpoint)}.")
        return redirect("synth:endpoints")
    rows = [(endpoint, endpoint_supports_text(endpoint=endpoint)) for endpoint in endpoint_list]
    return render(request, "synth/endpoints.html", {
        "rows": rows, "can_check": request.user.has_perm("synth.change_modelendpoint")})
