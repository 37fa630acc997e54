from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from annotate.models import Membership, Project
from annotate.selectors import project_get_for_user
from training.models import DatasetSnapshot, TrainingJob
from training.services import snapshot_create, snapshot_path


class SnapshotForm(forms.Form):
    format = forms.ChoiceField(choices=DatasetSnapshot.Format.choices)
    source = forms.ChoiceField(choices=DatasetSnapshot.Source.choices)
    neutral = forms.ChoiceField(choices=[("positive", "0 steps count as correct"),
                                         ("negative", "0 steps count as wrong")], required=False,
                                label="Stepwise: neutral steps")
    weighted = forms.BooleanField(required=False, label="Preference: strength-weighted majority")
    name = forms.CharField(required=False, max_length=200)

    def __init__(self, *args, steps: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        formats = ("stepwise", "prm800k", "outcome") if steps else ("preference",)
        self.fields["format"].choices = [c for c in DatasetSnapshot.Format.choices if c[0] in formats]


@login_required
def datasets(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    form = SnapshotForm(request.POST or None, steps=project.task_kind == Project.TaskKind.STEPS)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            snapshot = snapshot_create(project=project, source=data["source"], name=data["name"], fmt=data["format"],
                                       neutral=data["neutral"] or "positive", weighted=data["weighted"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Exported {snapshot.rows} rows as {snapshot.name}.")
            return redirect("training:datasets", project_id=project.pk)
    snapshots = DatasetSnapshot.objects.filter(project=project)
    jobs = TrainingJob.objects.filter(snapshot__project=project).select_related("base_endpoint", "result_endpoint")
    active = any(j.status in (TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING) for j in jobs)
    context = {"project": project, "form": form, "snapshots": snapshots, "jobs": jobs, "active": active}
    return render(request, "training/datasets.html#jobs" if request.htmx else "training/datasets.html", context)


@login_required
def snapshot_download(request: HttpRequest, project_id: int, snapshot_id: int) -> FileResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    snapshot = get_object_or_404(DatasetSnapshot, pk=snapshot_id, project=project)
    return FileResponse(snapshot_path(snapshot=snapshot).open("rb"), as_attachment=True,
                        filename=f"{snapshot.name}.jsonl", content_type="application/jsonl")
