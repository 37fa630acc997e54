"""The API of a diff between two snapshots of a project: which rows were added, removed, flipped or changed,
and why (new labels, a changed label, an adjudication and who made it, another judge version, the source)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from annotate.models import Membership
from annotate.selectors import project_get_for_user
from prefdata.diff import REASON_KINDS, STATUSES
from training.diffs import DIFF_LIMIT, snapshot_diff
from training.models import DatasetSnapshot, SnapshotFileAltered

LIMIT_MAX = 1000


class DiffQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=0, max_value=LIMIT_MAX, default=DIFF_LIMIT,
                                     help_text="Rows listed per status (the counts are always complete).")


_SIDE = inline_serializer("SnapshotDiffSide", fields={
    "id": serializers.IntegerField(), "name": serializers.CharField(), "sha256": serializers.CharField(),
    "rows": serializers.IntegerField(), "created_at": serializers.DateTimeField()})

_ENTRY = inline_serializer("SnapshotDiffRow", fields={
    "status": serializers.CharField(help_text="added, removed, flipped or changed."),
    "row": serializers.DictField(help_text="The row as written (in b; in a for a removed row)."),
    "row_a": serializers.IntegerField(allow_null=True, help_text="Its line in a's file, from 0 (null: none)."),
    "row_b": serializers.IntegerField(allow_null=True, help_text="Its line in b's file, from 0 (null: none)."),
    "item": serializers.IntegerField(allow_null=True), "prompt": serializers.IntegerField(allow_null=True),
    "reasons": serializers.ListField(child=serializers.DictField(), help_text=(
        "Why, each with a kind and its details (who adjudicated and when, the labels and their annotators, "
        "the judge's versions): " + "; ".join(f"{k}: {v}" for k, v in REASON_KINDS.items()) + "."))},
    many=True)


class SnapshotDiffSerializer(serializers.Serializer):
    a = _SIDE
    b = _SIDE
    snapshot_changes = serializers.ListField(child=inline_serializer("SnapshotDiffChange", fields={
        "field": serializers.CharField(), "a": serializers.JSONField(allow_null=True),
        "b": serializers.JSONField(allow_null=True)}), help_text="Manifest fields that differ (format, options...).")
    counts = serializers.DictField(child=serializers.IntegerField(),
                                   help_text="Rows by status: " + ", ".join(STATUSES) + ".")
    reasons = serializers.DictField(child=serializers.IntegerField(), help_text="Rows by reason kind.")
    truncated = serializers.BooleanField(help_text="Some rows are counted but not listed (see limit).")
    added = _ENTRY
    removed = _ENTRY
    flipped = _ENTRY
    changed = _ENTRY


@extend_schema(
    parameters=[DiffQuerySerializer],
    responses={200: SnapshotDiffSerializer, 409: OpenApiResponse(
        description="A snapshot's file is missing or no longer has its sha256: nothing is compared.")})
@api_view(["GET"])
def snapshot_diff_api(request: Request, project_id: int, snapshot_id: int, other_id: int) -> Response:
    """Researchers: what changed from snapshot ``snapshot_id`` (a) to ``other_id`` (b) of the project: rows
    added, removed, flipped (chosen and rejected swapped) and changed, each with why, from the lineage."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    query = DiffQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    a = get_object_or_404(DatasetSnapshot, pk=snapshot_id, project=project)
    b = get_object_or_404(DatasetSnapshot, pk=other_id, project=project)
    try:
        data = snapshot_diff(a=a, b=b, limit=query.validated_data["limit"])
    except SnapshotFileAltered as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return Response(data)
