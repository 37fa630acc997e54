"""The annotation API: the same actions as the pages, scoped the same way."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from annotate.models import PairItem, PairLabel, Project, Verdict
from annotate.selectors import (
    pair_item_get_for_annotator,
    pair_item_next_for_annotator,
    project_get_for_user,
    project_list_for_user,
    project_stats,
)
from annotate.services import pair_label_submit
from annotate.views import presentation_order


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "guidelines", "task_kind", "overlap", "created_at"]


class PairItemSerializer(serializers.ModelSerializer):
    messages = serializers.JSONField(source="prompt.messages")
    response_a = serializers.CharField(source="completion_a.text")
    response_b = serializers.CharField(source="completion_b.text")

    class Meta:
        model = PairItem
        fields = ["id", "project", "messages", "response_a", "response_b"]


class PairLabelInSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    strength = serializers.ChoiceField(choices=PairLabel.Strength.choices, required=False, allow_null=True)
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")
    time_spent_ms = serializers.IntegerField(required=False, allow_null=True, min_value=0)


class PairLabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = PairLabel
        fields = ["id", "item", "verdict", "strength", "rationale", "shown_order", "time_spent_ms", "created_at"]


@api_view(["GET"])
def project_list(request: Request) -> Response:
    return Response(ProjectSerializer(project_list_for_user(user=request.user), many=True).data)


@api_view(["GET"])
def project_detail(request: Request, project_id: int) -> Response:
    project = project_get_for_user(user=request.user, project_id=project_id)
    return Response({**ProjectSerializer(project).data, "stats": project_stats(project=project, user=request.user)})


@api_view(["GET"])
def next_item(request: Request, project_id: int) -> Response:
    """The next pair to label, with the side order to show it in (``AB``: A left)."""
    project = project_get_for_user(user=request.user, project_id=project_id)
    item = pair_item_next_for_annotator(project=project, user=request.user)
    if item is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    order = presentation_order(user_id=request.user.pk, item_id=item.pk)
    return Response({**PairItemSerializer(item).data, "shown_order": order})


@api_view(["POST"])
def label_submit(request: Request, project_id: int, item_id: int) -> Response:
    """Label an item. The verdict names the stored responses A and B, not screen sides."""
    project = project_get_for_user(user=request.user, project_id=project_id)
    item = pair_item_get_for_annotator(user=request.user, item_id=item_id)
    if item.project_id != project.pk:
        return Response({"detail": "No such item."}, status=status.HTTP_404_NOT_FOUND)
    data = PairLabelInSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        label = pair_label_submit(item=item, annotator=request.user,
                                  shown_order=presentation_order(user_id=request.user.pk, item_id=item.pk),
                                  **data.validated_data)
    except ValidationError as exc:
        return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
    return Response(PairLabelSerializer(label).data, status=status.HTTP_201_CREATED)
