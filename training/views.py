from __future__ import annotations

import json
import logging

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_POST

from annotate.models import Membership, Project
from annotate.selectors import project_get_for_user
from prefdata.diff import REASON_KINDS, STATUSES
from prefdata.targets import TARGETS
from prefdata.writers import EXPORT_FORMATS
from training.diffs import snapshot_diff
from training.filters import FILTER_HELP
from training.models import (
    DROP_REASONS,
    DROP_REASONS_WHY,
    DatasetSnapshot,
    SnapshotFileAltered,
    SnapshotJob,
    TrainingJob,
    dropped_text,
    file_sha256,
)
from training.selectors import export_filter_choices
from training.services import (
    SNAPSHOT_JOB_ITEMS,
    ExportPlan,
    SnapshotIdentical,
    formats_for_project,
    snapshot_create,
    snapshot_items_count,
    snapshot_job_create,
    snapshot_manifest,
    snapshot_options_parse,
    snapshot_path,
    snapshot_plan,
    sources_for_project,
    synthetic_warnings,
)

log = logging.getLogger(__name__)
DIFF_PAGE_LIMIT = 50  # rows listed per status on the page (the API lists more)


def _record_words(fmt: str) -> str:
    record = EXPORT_FORMATS[fmt].record
    return f"{record} records" if record else "rows of its own"


FILTER_FIELDS = ("projects", "annotators", "since", "until", "min_agreement", "min_strength", "judges",
                 "constitution_versions", "synthesis_jobs", "max_synthetic_share", "tags")
LAYOUT_FIELDS = ("target", "file_format", "test_share", "seed", "marked_split")


class SnapshotForm(forms.Form):
    """The options of an export, limited to those of the project's kind: a pairwise project gets the
    pair formats, the preference options and the filters, a steps project the step formats and the
    neutral-step rule; both get the layout (target, file format, split)."""

    format = forms.ChoiceField()
    source = forms.ChoiceField()
    neutral = forms.ChoiceField(choices=[("positive", "0 steps count as correct"),
                                         ("negative", "0 steps count as wrong")], required=False,
                                label="Stepwise: neutral steps")
    weighted = forms.BooleanField(required=False, label="Strength-weighted majority")
    both_bad = forms.BooleanField(required=False, label="Unpaired: both-bad pairs as two bad replies")
    name = forms.CharField(required=False, max_length=200,
                           help_text="Optional: made from the project, source, time and sha256.")
    allow_duplicate = forms.BooleanField(required=False, label="Create another copy of identical rows")
    # Filters (pairwise projects).
    projects = forms.MultipleChoiceField(required=False, label="Also from projects", help_text=FILTER_HELP["projects"])
    annotators = forms.MultipleChoiceField(required=False, help_text=FILTER_HELP["annotators"])
    since = forms.DateField(required=False, label="Labels from", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="Labels up to", widget=forms.DateInput(attrs={"type": "date"}))
    min_agreement = forms.FloatField(required=False, min_value=0, max_value=1, label="Minimum agreement",
                                     widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "e.g. 0.75"}),
                                     help_text=FILTER_HELP["min_agreement"])
    min_strength = forms.FloatField(required=False, min_value=1, max_value=4, label="Minimum strength",
                                    widget=forms.NumberInput(attrs={"step": "0.5", "placeholder": "1 to 4"}),
                                    help_text=FILTER_HELP["min_strength"])
    judges = forms.MultipleChoiceField(required=False, label="Judges and versions", help_text=FILTER_HELP["judges"])
    constitution_versions = forms.MultipleChoiceField(required=False, help_text=FILTER_HELP["constitution_versions"])
    synthesis_jobs = forms.MultipleChoiceField(required=False, help_text=FILTER_HELP["synthesis_jobs"])
    max_synthetic_share = forms.FloatField(required=False, min_value=0, max_value=1, label="Synthetic share at most",
                                           widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "e.g. 0.3"}),
                                           help_text=FILTER_HELP["max_synthetic_share"])
    tags = forms.MultipleChoiceField(required=False, label="Problem tags", help_text=FILTER_HELP["tags"])
    # Layout.
    target = forms.ChoiceField(choices=[(name, t.description.split(":")[0]) for name, t in TARGETS.items()],
                               initial="trl", required=False, help_text="The trainer the folder is laid out for.")
    file_format = forms.ChoiceField(choices=[("jsonl", "JSON Lines"), ("parquet", "Parquet")], initial="jsonl",
                                    required=False)
    test_share = forms.FloatField(required=False, min_value=0, max_value=0.9, label="Test split",
                                  widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "e.g. 0.1"}),
                                  help_text="Share of prompts held out; by a hash of each prompt, none in both.")
    seed = forms.IntegerField(required=False, initial=0, help_text="The same seed gives the same split.")
    marked_split = forms.BooleanField(required=False, label="Prompt-only: split by the problems' own marks")

    def __init__(self, *args, project: Project, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        formats = formats_for_project(project=project)
        self.fields["format"].choices = [(f, f"{EXPORT_FORMATS[f].description} · {_record_words(f)}")
                                         for f in formats]
        self.fields["source"].choices = [(s, DatasetSnapshot.Source(s).label)
                                         for s in sources_for_project(project=project)]
        if project.task_kind == Project.TaskKind.STEPS:
            for name in ("weighted", "both_bad", "marked_split", *FILTER_FIELDS):
                del self.fields[name]
        else:
            del self.fields["neutral"]
            for name, choices in export_filter_choices(project=project, user=user).items():
                self.fields[name].choices = choices
            for name in ("projects", "annotators", "judges", "constitution_versions", "synthesis_jobs", "tags"):
                if not self.fields[name].choices:
                    del self.fields[name]

    def _group(self, names: tuple[str, ...]) -> list:
        return [self[name] for name in names if name in self.fields]

    def main_fields(self) -> list:
        return [self[name] for name in self.fields if name not in (*FILTER_FIELDS, *LAYOUT_FIELDS, "allow_duplicate")]

    def filter_fields(self) -> list:
        return self._group(FILTER_FIELDS)

    def layout_fields(self) -> list:
        return self._group(LAYOUT_FIELDS)

    def data_for_options(self) -> dict:
        """The options as snapshot_options_parse reads them (the API's shape)."""
        data = self.cleaned_data
        filters = {name: data[name] for name in FILTER_FIELDS
                   if name in self.fields and data.get(name) not in (None, "", [])}
        layout: dict = {"target": data.get("target") or "trl", "file_format": data.get("file_format") or "jsonl"}
        if data.get("marked_split"):
            layout["split"] = "marked"
        elif data.get("test_share"):
            layout["split"] = {"train": round(1 - data["test_share"], 6), "test": data["test_share"]}
            layout["seed"] = data.get("seed") or 0
        return {"format": data["format"], "source": data["source"], "weighted": data.get("weighted", False),
                "neutral": data.get("neutral") or "positive", "both_bad": data.get("both_bad", False),
                "filters": filters, "layout": layout}


def _plan_context(plan: ExportPlan | None) -> dict:
    if plan is None:
        return {"plan": None}
    reasons = [{"n": plan.dropped[key], "words": words, "why": DROP_REASONS_WHY[key]}
               for key, words in DROP_REASONS.items() if key in plan.dropped]
    return {"plan": plan, "plan_dropped": dropped_text(plan.dropped), "plan_reasons": reasons,
            "plan_warnings": synthetic_warnings(plan.sources) if len(plan.rows) else [],
            "plan_record": _record_words(plan.fmt),
            "plan_unit": "solution" if plan.project.task_kind == Project.TaskKind.STEPS else "pair"}


@login_required
def datasets(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    form = SnapshotForm(request.POST or None, project=project, user=request.user)
    plan = None
    if request.method == "POST" and form.is_valid():
        try:
            options = snapshot_options_parse(project=project, data=form.data_for_options(), user=request.user)
            if request.POST.get("action") == "preview":
                plan = snapshot_plan(project=project, user=request.user, **options)
            elif snapshot_items_count(project=project, filters=options["filters"]) > SNAPSHOT_JOB_ITEMS:
                job = snapshot_job_create(project=project, data=form.data_for_options(), user=request.user,
                                          name=form.cleaned_data["name"],
                                          allow_duplicate=form.cleaned_data["allow_duplicate"])
                messages.success(request, f"A worker is making the snapshot (job #{job.pk}): its progress is below.")
                return redirect("training:datasets", project_id=project.pk)
            else:
                snapshot = snapshot_create(project=project, name=form.cleaned_data["name"], user=request.user,
                                           allow_duplicate=form.cleaned_data["allow_duplicate"], **options)
        except SnapshotIdentical as exc:
            form.add_error(None, f"Identical to {exc.existing.name} (sha {exc.existing.sha256[:12]}): "
                                 f"tick “Create another copy” below to export the same rows again.")
            plan = snapshot_plan(project=project, user=request.user, **options)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            if request.POST.get("action") != "preview":
                dropped = f" ({snapshot.dropped_text} dropped)" if snapshot.dropped else ""
                messages.success(request, f"Exported {snapshot.rows} rows{dropped} as {snapshot.name}.")
                return redirect("training:datasets", project_id=project.pk)
    snapshots = (DatasetSnapshot.objects.filter(project=project).defer("manifest").select_related("created_by"))
    jobs = TrainingJob.objects.filter(snapshot__project=project).select_related("base_endpoint", "result_endpoint")
    snapshot_jobs = SnapshotJob.objects.filter(project=project).select_related("snapshot")[:10]
    active = any(j.is_active for j in [*jobs, *snapshot_jobs])
    context = {"project": project, "form": form, "snapshots": snapshots, "jobs": jobs, "snapshot_jobs": snapshot_jobs,
               "active": active, "steps": project.task_kind == Project.TaskKind.STEPS, **_plan_context(plan)}
    return render(request, "training/datasets.html#jobs" if request.htmx else "training/datasets.html", context)


@login_required
@require_POST
def snapshot_preview(request: HttpRequest, project_id: int) -> HttpResponse:
    """htmx: what a snapshot of the form's options would hold (rows, the first lines, what is dropped and
    why, who and what made the rows, an identical snapshot), written nowhere."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    form = SnapshotForm(request.POST, project=project, user=request.user)
    plan, errors = None, []
    if form.is_valid():
        try:
            options = snapshot_options_parse(project=project, data=form.data_for_options(), user=request.user)
            plan = snapshot_plan(project=project, user=request.user, **options)
        except ValidationError as exc:
            errors = [f"{field}: {' '.join(text)}" if field != "__all__" else " ".join(text)
                      for field, text in exc.message_dict.items()] if hasattr(exc, "error_dict") else exc.messages
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


@login_required
def snapshot_lineage_download(request: HttpRequest, project_id: int, snapshot_id: int) -> HttpResponse:
    """Each row's lineage as JSON Lines, in row order: the file beside a large snapshot (checked against the
    sha256 its manifest records: an altered one is refused, 409), or the manifest's own list."""
    snapshot = _snapshot_get(request, project_id, snapshot_id)
    filename = f"{snapshot.file_stem}.lineage.jsonl"
    lineage_file = snapshot.manifest.get("lineage_file")
    if lineage_file:
        path = settings.MEDIA_ROOT / lineage_file
        try:
            altered = file_sha256(path) != snapshot.manifest.get("lineage_sha256")
        except OSError:
            altered = True
        if altered:
            log.error("snapshot %s lineage refused at download", snapshot.pk)
            return HttpResponse(f"The lineage file of snapshot {snapshot.name!r} is missing or was altered after "
                                f"it was made: it is not served.", status=409, content_type="text/plain; charset=utf-8")
        return FileResponse(path.open("rb"), as_attachment=True, filename=filename, content_type="application/jsonl")
    body = "".join(json.dumps(entry) + "\n" for entry in snapshot.manifest.get("lineage") or [])
    response = HttpResponse(body, content_type="application/jsonl")
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
    return response


@login_required
def snapshot_layout_file(request: HttpRequest, project_id: int, snapshot_id: int, name: str) -> HttpResponse:
    """One file of the snapshot's layout folder (a split's file, its README, OpenRLHF's flags), once checked
    against the sha256 its manifest records."""
    snapshot = _snapshot_get(request, project_id, snapshot_id)
    files, folder = snapshot.manifest.get("files") or {}, snapshot.manifest.get("folder")
    if name not in files or not folder:
        raise Http404("No such file in this snapshot.")
    path = settings.MEDIA_ROOT / folder / name
    try:
        altered = file_sha256(path) != files[name]["sha256"]
    except OSError:
        altered = True
    if altered:
        return HttpResponse(f"{name} of snapshot {snapshot.name!r} is missing or was altered: it is not served.",
                            status=409, content_type="text/plain; charset=utf-8")
    return FileResponse(path.open("rb"), as_attachment=True, filename=f"{snapshot.file_stem}.{name}")


@login_required
def snapshot_diff_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """What changed between two snapshots of the project (``?a=<id>&b=<id>``): rows added, removed, flipped
    and changed, each with why (adjudications, new labels, judge versions), the API's diff on a page."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    snapshots = list(DatasetSnapshot.objects.filter(project=project).defer("manifest"))
    ids = {str(s.pk): s for s in snapshots}
    a, b = ids.get(request.GET.get("a", "")), ids.get(request.GET.get("b", ""))
    if a is None and b is None and len(snapshots) >= 2:
        a, b = snapshots[1], snapshots[0]  # the newest against the one before
    diff, error = None, ""
    if a is not None and b is not None:
        try:
            diff = snapshot_diff(a=DatasetSnapshot.objects.get(pk=a.pk), b=DatasetSnapshot.objects.get(pk=b.pk),
                                 limit=DIFF_PAGE_LIMIT)
        except SnapshotFileAltered as exc:
            error = str(exc)
    elif request.GET:
        error = "Choose two snapshots of this project to compare."
    sections = [(status, diff[status]) for status in STATUSES if status in diff] if diff else []
    for change in diff["snapshot_changes"] if diff else []:
        change["a_text"], change["b_text"] = (json.dumps(change[side], ensure_ascii=False) for side in ("a", "b"))
    for _, entries in sections:
        for entry in entries:
            entry["row_text"] = json.dumps(entry["row"], ensure_ascii=False)
    return render(request, "training/diff.html", {"project": project, "snapshots": snapshots, "a": a, "b": b,
                                                  "diff": diff, "sections": sections, "error": error,
                                                  "reason_kinds": REASON_KINDS})
