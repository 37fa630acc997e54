"""The API of dataset snapshots: list, preview (a dry run), create, and the manifest of one."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import content_disposition_header
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from annotate.api_fields import StrictBooleanField, StrictCharField, StrictChoiceField
from annotate.models import Membership
from annotate.selectors import project_get_for_user
from prefdata.writers import EXPORT_FORMATS
from training.filters import FILTER_HELP
from training.models import DatasetSnapshot, SnapshotJob, dropped_text
from training.services import (
    SNAPSHOT_JOB_ITEMS,
    ExportPlan,
    SnapshotIdentical,
    snapshot_create,
    snapshot_items_count,
    snapshot_job_create,
    snapshot_manifest,
    snapshot_options_parse,
    snapshot_plan,
)


class SnapshotInSerializer(serializers.Serializer):
    format = StrictChoiceField(choices=DatasetSnapshot.Format.choices, required=False,
                               help_text="One of the project's kind: preference for pairs; stepwise, prm800k or "
                                         "outcome for steps. Default: the kind's first.")
    source = StrictChoiceField(choices=DatasetSnapshot.Source.choices, default=DatasetSnapshot.Source.HUMAN)
    neutral = StrictChoiceField(choices=[("positive", "positive"), ("negative", "negative")], default="positive",
                                help_text="stepwise: what a 0 (reasonable, no progress) step becomes.")
    weighted = StrictBooleanField(default=False, help_text="preference: strength-weighted majority.")
    name = StrictCharField(required=False, allow_blank=True, max_length=200, default="",
                           help_text="Default: made from the project, source, time and sha256.")
    both_bad = StrictBooleanField(default=False, help_text="unpaired: a both-bad pair gives both replies false.")
    filters = serializers.DictField(required=False, default=dict, help_text=(
        "Optional, each narrowing the export: " + "; ".join(f"{k}: {v}" for k, v in FILTER_HELP.items()) + "."))
    layout = serializers.DictField(required=False, default=dict, help_text=(
        'Optional: {"target": "trl" | "openrlhf" | "verl", "file_format": "jsonl" | "parquet", '
        '"split": {"train": 0.9, "test": 0.1}, "seed": 0}: a load_dataset-ready folder beside the file, split by a '
        "hash of each prompt (no prompt, or known paraphrase group, in two splits)."))
    background = StrictBooleanField(default=False, help_text=(
        f"Make it with a worker (202 and the job to follow); always so past {SNAPSHOT_JOB_ITEMS:,} items."))
    dry_run = StrictBooleanField(default=False, help_text="Only say what the snapshot would hold (200).")
    allow_duplicate = StrictBooleanField(
        default=False, help_text="Create it even when a snapshot of the project has the very same rows (else 409).")


class SnapshotSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", allow_null=True, read_only=True, default=None)
    record = serializers.SerializerMethodField(help_text="The record kind of its rows (null: rows of its own).")
    dropped_text = serializers.CharField(read_only=True, help_text='e.g. "2 ties, 1 gold" ("" if none).')

    class Meta:
        model = DatasetSnapshot
        fields = ["id", "name", "format", "record", "source", "options", "rows", "dropped", "dropped_text",
                  "sha256", "created_by", "created_at"]

    def get_record(self, snapshot: DatasetSnapshot) -> str | None:
        spec = EXPORT_FORMATS.get(snapshot.format)
        return spec.record if spec else None


_EXISTING = inline_serializer("SnapshotIdentity", fields={
    "id": serializers.IntegerField(), "name": serializers.CharField(), "sha256": serializers.CharField()})


class SnapshotPlanSerializer(serializers.Serializer):
    format = serializers.CharField()
    record = serializers.CharField(allow_null=True)
    source = serializers.CharField()
    options = serializers.DictField()
    rows = serializers.IntegerField(help_text="Rows the file would hold.")
    dropped = serializers.DictField(child=serializers.IntegerField(),
                                    help_text="Left out by the export rules, by reason: tie, both_bad, no_majority, "
                                              "no_rated_step, no_outcome, stale, gold.")
    dropped_text = serializers.CharField()
    unlabeled = serializers.IntegerField(help_text="Items nobody labeled yet (from this source).")
    label_counts = serializers.DictField(child=serializers.IntegerField())
    sha256 = serializers.CharField()
    identical_to = inline_serializer("SnapshotIdenticalTo", fields={
        "id": serializers.IntegerField(), "name": serializers.CharField(), "sha256": serializers.CharField()},
        allow_null=True, help_text="A snapshot of the project with these very rows, if any.")
    preview = serializers.ListField(child=serializers.DictField(), help_text="The first rows, as written.")


def _identity(snapshot: DatasetSnapshot | None) -> dict | None:
    return None if snapshot is None else {"id": snapshot.pk, "name": snapshot.name, "sha256": snapshot.sha256}


def _plan_data(plan: ExportPlan) -> dict:
    return {"format": plan.fmt, "record": EXPORT_FORMATS[plan.fmt].record, "source": plan.source,
            "options": plan.options, "rows": len(plan.rows), "dropped": plan.dropped,
            "dropped_text": dropped_text(plan.dropped), "unlabeled": plan.unlabeled,
            "label_counts": plan.label_counts, "sha256": plan.sha256, "identical_to": _identity(plan.identical),
            "sources": plan.sources, "preview": plan.preview}


def _job_data(job: SnapshotJob) -> dict:
    return {"job": {"id": job.pk, "status": job.status, "progress": job.progress, "total": job.total,
                    "error": job.error, "snapshot": _identity(job.snapshot) if job.snapshot_id else None,
                    "url": reverse("training:api_snapshot_job", args=[job.project_id, job.pk])}}


@extend_schema(responses={200: OpenApiResponse(inline_serializer("SnapshotJobState",
                                                                 fields={"job": serializers.DictField()}),
                                               description="The job: status, progress (rows) of total, error, "
                                                           "and the snapshot once made.")})
@api_view(["GET"])
def snapshot_job_api(request: Request, project_id: int, job_id: int) -> Response:
    """Researchers: a snapshot being made by a worker, to follow until it is done."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    job = get_object_or_404(SnapshotJob.objects.select_related("snapshot"), pk=job_id, project=project)
    return Response(_job_data(job))


@extend_schema(methods=["GET"], responses=SnapshotSerializer(many=True))
@extend_schema(methods=["POST"], request=SnapshotInSerializer, responses={
    200: OpenApiResponse(SnapshotPlanSerializer, description="dry_run: what the snapshot would hold."),
    201: SnapshotSerializer,
    202: OpenApiResponse(inline_serializer("SnapshotJobQueued", fields={"job": inline_serializer(
        "SnapshotJob", fields={"id": serializers.IntegerField(), "status": serializers.CharField(),
                               "progress": serializers.IntegerField(), "total": serializers.IntegerField(),
                               "error": serializers.CharField(), "snapshot": inline_serializer(
                                   "SnapshotMade", fields={"id": serializers.IntegerField(),
                                                           "name": serializers.CharField(),
                                                           "sha256": serializers.CharField()}, allow_null=True),
                               "url": serializers.CharField()})}),
        description="background (or a project past the size a request makes): a worker makes it; follow url."),
    409: OpenApiResponse(inline_serializer("SnapshotConflict", fields={
        "detail": serializers.CharField(), "existing": _EXISTING}),
        description="A snapshot of the project has the very same rows (sha256); allow_duplicate creates it.")})
@api_view(["GET", "POST"])
def snapshots(request: Request, project_id: int) -> Response:
    """Researchers: the project's dataset snapshots; POST previews one (``dry_run``) or creates it. The
    options must fit the project's kind (400 naming the field); what the export rules drop is counted."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    if request.method == "GET":
        rows = DatasetSnapshot.objects.filter(project=project).defer("manifest").select_related("created_by")
        return Response(SnapshotSerializer(rows, many=True).data)
    data = SnapshotInSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    given = data.validated_data
    raw = {key: given.get(key) for key in ("format", "source", "weighted", "neutral", "both_bad", "filters", "layout")}
    options = snapshot_options_parse(project=project, data=raw, user=request.user)
    if given["dry_run"]:
        return Response(_plan_data(snapshot_plan(project=project, user=request.user, **options)))
    if given["background"] or snapshot_items_count(project=project, filters=options["filters"]) > SNAPSHOT_JOB_ITEMS:
        job = snapshot_job_create(project=project, data=raw, name=given["name"],
                                  allow_duplicate=given["allow_duplicate"], user=request.user)
        return Response(_job_data(job), status=status.HTTP_202_ACCEPTED)
    try:
        snapshot = snapshot_create(project=project, name=given["name"], allow_duplicate=given["allow_duplicate"],
                                   user=request.user, **options)
    except SnapshotIdentical as exc:
        return Response({"detail": str(exc), "existing": _identity(exc.existing)}, status=status.HTTP_409_CONFLICT)
    return Response(SnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)


@extend_schema(responses={200: OpenApiResponse(
    {"type": "object", "additionalProperties": {}},
    description="The manifest: options, rows, dropped reasons, sha256, project, label counts, created by and at, "
                "each row's lineage.")})
@api_view(["GET"])
def snapshot_manifest_api(request: Request, project_id: int, snapshot_id: int) -> Response:
    """Researchers: a snapshot's manifest, as a file to keep beside its rows."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    snapshot = get_object_or_404(DatasetSnapshot, pk=snapshot_id, project=project)
    return Response(snapshot_manifest(snapshot=snapshot), headers={"Content-Disposition": content_disposition_header(
        as_attachment=True, filename=f"{snapshot.file_stem}.manifest.json")})
