"""The API of model endpoints: what each serves and supports, and a check of its connection."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from annotate.roles import permission_require
from synth.models import ModelEndpoint
from synth.selectors import endpoint_get_for_user, endpoints_for_user
from synth.services import endpoint_check, endpoint_supports_text


class EndpointSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="path", help_text="The model id sent to the server (or a local path).")
    has_api_key = serializers.BooleanField(help_text="A key is stored (it is never shown).")
    supports = serializers.SerializerMethodField(help_text="What the server was found to support, in words.")
    capabilities = serializers.JSONField(help_text='What the server supports: {"models", "n", "logprobs", '
                                                   '"top_logprobs", "checked_at"}.')

    class Meta:
        model = ModelEndpoint
        fields = ["id", "name", "kind", "model", "base_url", "has_api_key", "capabilities", "supports",
                  "max_concurrency", "requests_per_minute", "cost_per_million_input", "cost_per_million_output",
                  "max_cost_per_run"]

    def get_supports(self, endpoint: ModelEndpoint) -> str:
        return endpoint_supports_text(endpoint=endpoint)


@extend_schema(responses=EndpointSerializer(many=True))
@api_view(["GET"])
def endpoints(request: Request) -> Response:
    """Researchers: the model endpoints you may use, with what each server supports."""
    return Response(EndpointSerializer(endpoints_for_user(user=request.user), many=True).data)


@extend_schema(responses=EndpointSerializer)
@api_view(["GET"])
def endpoint_detail(request: Request, endpoint_id: int) -> Response:
    return Response(EndpointSerializer(endpoint_get_for_user(user=request.user, endpoint_id=endpoint_id)).data)


@extend_schema(request=None, responses=EndpointSerializer)
@api_view(["POST"])
def endpoint_check_api(request: Request, endpoint_id: int) -> Response:
    """Researchers who may change endpoints: check an HTTP endpoint's connection (its models, one tiny
    request, log-probabilities, several samples a request) and keep what it supports; 400 naming the field
    at fault when it does not work as configured."""
    endpoint = endpoint_get_for_user(user=request.user, endpoint_id=endpoint_id)
    permission_require(user=request.user, permission="synth.change_modelendpoint", doing="check endpoints")
    return Response(EndpointSerializer(endpoint_check(endpoint=endpoint)).data)
