from __future__ import annotations

import logging

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_POST

from annotate.models import Membership, Project
from annotate.selectors import project_get_for_user
from prefdata.writers import EXPORT_FORMATS
from training.models import (
    DROP_REASONS,
    DROP_REASONS_WHY,
    DatasetSnapshot,
    SnapshotFileAltered,
    TrainingJob,
    dropped_text,
)
from training.services import (
    ExportPlan,
    SnapshotIdentical,
    formats_for_project,
    snapshot_create,
    snapshot_manifest,
    snapshot_path,
    snapshot_plan,
    sources_for_project,
)

log = logging.getLogger(__name__)


def _record_words(fmt: str) -> str:
    record = EXPORT_FORMATS[fmt].record
    return f"{record} records" if record else "rows of its own"


class SnapshotForm(forms.Form):
    """The options of an export, limited to those of the project's kind: a pairwise project gets the
    pair formats and the preference options, a steps project the step formats and the neutral-step rule."""

    format = forms.ChoiceField()
    source = forms.ChoiceField()
    neutral = forms.ChoiceField(choices=[("positive", "0 steps count as correct"),
                                         ("negative", "0 steps count as wrong")], required=False,
                                label="Stepwise: neutral steps")
    weighted = forms.BooleanField(required=False, label="Strength-weighted majority")
    name = forms.CharField(required=False, max_length=200,
                           help_text="Optional: made from the project, source, time and sha256.")
    allow_duplicate = forms.BooleanField(required=False, label="Create another copy of identical rows")

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        formats = formats_for_project(project=project)
        self.fields["format"].choices = [(f, f"{EXPORT_FORMATS[f].description} · {_record_words(f)}")
                                         for f in formats]
        self.fields["source"].choices = [(s, DatasetSnapshot.Source(s).label)
                                         for s in sources_for_project(project=project)]
        if project.task_kind == Project.TaskKind.STEPS:
            del self.fields["weighted"]
        else:
            del self.fields["neutral"]

    def options(self) -> dict:
        data = self.cleaned_data
        return {"fmt": data["format"], "source": data["source"], "weighted": data.get("weighted", False),
                "neutral": data.get("neutral") or "positive"}


def _plan_context(plan: ExportPlan | None) -> dict:
    if plan is None:
        return {"plan": None}
    reasons = [{"n": plan.dropped[key], "words": words, "why": DROP_REASONS_WHY[key]}
               for key, words in DROP_REASONS.items() if key in plan.dropped]
    return {"plan": plan, "plan_dropped": dropped_text(plan.dropped), "plan_reasons": reasons,
            "plan_record": _record_words(plan.fmt),
            "plan_unit": "solution" if plan.project.task_kind == Project.TaskKind.STEPS else "pair"}


@login_required
def datasets(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    form = SnapshotForm(request.POST or None, project=project)
    plan = None
    if request.method == "POST" and form.is_valid():
        try:
            if request.POST.get("action") == "preview":
                plan = snapshot_plan(project=project, **form.options())
            else:
                snapshot = snapshot_create(project=project, name=form.cleaned_data["name"], user=request.user,
                                           allow_duplicate=form.cleaned_data["allow_duplicate"], **form.options())
        except SnapshotIdentical as exc:
            form.add_error(None, f"Identical to {exc.existing.name} (sha {exc.existing.sha256[:12]}): "
                                 f"tick “Create another copy” below to export the same rows again.")
            plan = snapshot_plan(project=project, **form.options())
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            if request.POST.get("action") != "preview":
                dropped = f" ({snapshot.dropped_text} dropped)" if snapshot.dropped else ""
                messages.success(request, f"Exported {snapshot.rows} rows{dropped} as {snapshot.name}.")
                return redirect("training:datasets", project_id=project.pk)
    snapshots = (DatasetSnapshot.objects.filter(project=project).defer("manifest").select_related("created_by"))
    jobs = TrainingJob.objects.filter(snapshot__project=project).select_related("base_endpoint", "result_endpoint")
    active = any(j.status in (TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING) for j in jobs)
    context = {"project": project, "form": form, "snapshots": snapshots, "jobs": jobs, "active": active,
               "steps": project.task_kind == Project.TaskKind.STEPS, **_plan_context(plan)}
    return render(request, "training/datasets.html#jobs" if request.htmx else "training/datasets.html", context)


@login_required
@require_POST
def snapshot_preview(request: HttpRequest, project_id: int) -> HttpResponse:
    """htmx: what a snapshot of the form's options would hold (rows, the first lines, what is dropped and
    why, an identical snapshot), written nowhere."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    form = SnapshotForm(request.POST, project=project)
    plan, errors = None, []
    if form.is_valid():
        try:
            plan = snapshot_plan(project=project, **form.options())
        except ValidationError as exc:
            errors = exc.messages
    else:
        errors = [f"{field}: {' '.join(messages_)}" for field, messages_ in form.errors.items()]
    context = {"project": project, "form": form, "preview_errors": errors, **_plan_context(plan)}
    return render(request, "training/datasets.html#preview", context)


def _snapshot_get(request: HttpRequest, project_id: int, snapshot_id: int) -> DatasetSnapshot:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    return get_object_or_404(DatasetSnapshot, pk=snapshot_id, project=project)


@login_required
def snapshot_download(request: HttpRequest, project_id: int, snapshot_id: int) -> HttpResponse:
    """The snapshot's file, once its bytes are checked against the sha256 it was made with: an altered or
    missing file is refused (409, saying so), never served as the snapshot."""
    snapshot = _snapshot_get(request, project_id, snapshot_id)
    try:
        snapshot.file_verify()
    except SnapshotFileAltered as exc:
        log.error("snapshot %s refused at download: %s", snapshot.pk, exc)
        return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")
    return FileResponse(snapshot_path(snapshot=snapshot).open("rb"), as_attachment=True,
                        filename=f"{snapshot.file_stem}.jsonl", content_type="application/jsonl")


@login_required
def snapshot_manifest_download(request: HttpRequest, project_id: int, snapshot_id: int) -> JsonResponse:
    """The snapshot's manifest as a JSON file: options, rows, what was dropped and why, sha256, the source
    project, its label counts, who made it and when, each row's lineage."""
    snapshot = _snapshot_get(request, project_id, snapshot_id)
    response = JsonResponse(snapshot_manifest(snapshot=snapshot), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=f"{snapshot.file_stem}.manifest.json")
    return response
