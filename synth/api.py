"""The API of model endpoints (what each serves and supports, a check of its connection) and of synthesis
jobs of every kind."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from annotate.api_errors import ID_MAX
from annotate.models import Membership
from annotate.roles import job_start_permission, permission_require
from annotate.selectors import project_get_for_user
from synth.models import Constitution, ModelEndpoint, Problem, SynthesisJob
from synth.selectors import endpoint_get_for_user, endpoints_for_user, endpoints_usable, synthesis_jobs_for_project
from synth.services import endpoint_check, endpoint_supports_text, synthesis_job_create


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


class SynthesisJobSerializer(serializers.ModelSerializer):
    endpoint = serializers.CharField(source="endpoint.name", read_only=True)
    scorer = serializers.CharField(source="scorer.name", read_only=True, default=None, allow_null=True)
    params = serializers.JSONField(help_text="The job's parameters, defaults filled in (see the kind's form).")
    stats = serializers.JSONField(help_text='What it found: {"counts": {...}, "diversity": {"distinct_1", '
                                            '"distinct_2", "self_bleu"}, "best_of_n": [{"n", "mean_best", '
                                            '"kl_bound"}], "rows": {...}}.')

    class Meta:
        model = SynthesisJob
        fields = ["id", "kind", "status", "progress", "total", "error", "endpoint", "scorer", "constitution",
                  "constitution_version", "params", "cost", "estimated_cost", "prompt_tokens", "completion_tokens",
                  "seconds", "stats", "attempt", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class SynthesisJobCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=SynthesisJob.Kind.choices, default=SynthesisJob.Kind.PAIRS)
    endpoint = serializers.IntegerField(min_value=1, max_value=ID_MAX, help_text="The generating endpoint's id.")
    scorer = serializers.IntegerField(min_value=1, max_value=ID_MAX, required=False, allow_null=True,
                                      help_text="A reward-model endpoint's id (best-of-N, scored pair strategies).")
    constitution = serializers.IntegerField(min_value=1, max_value=ID_MAX, required=False, allow_null=True,
                                            help_text="The constitution's id (constitutional jobs).")
    params = serializers.DictField(required=False, default=dict,
                                   help_text="The kind's parameters; each left out takes its default.")
    confirm_cost = serializers.BooleanField(default=False, help_text="Start a paid run at its estimated cost "
                                                                     "(else a 400 says the estimate).")


@extend_schema(methods=["GET"], responses=SynthesisJobSerializer(many=True))
@extend_schema(methods=["POST"], request=SynthesisJobCreateSerializer, responses={201: SynthesisJobSerializer})
@api_view(["GET", "POST"])
def synthesis_jobs(request: Request, project_id: int) -> Response:
    """Researchers of the project: its synthesis jobs, newest first (GET), or a new one of any kind (POST; needs
    the researcher's permission to start jobs). Params are checked per kind: 400 naming the field."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    if request.method == "GET":
        return Response(SynthesisJobSerializer(synthesis_jobs_for_project(project=project)[:200], many=True).data)
    permission_require(user=request.user, permission=job_start_permission(SynthesisJob), doing="start generation")
    data = SynthesisJobCreateSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    usable = endpoints_usable(project=project, user=request.user)

    def endpoint_of(field: str) -> ModelEndpoint | None:
        pk = data.validated_data.get(field)
        if pk is None:
            return None
        found = usable.filter(pk=pk).first()
        if found is None:
            raise ValidationError({field: f"{field}: no endpoint {pk} you may use for this project"})
        return found

    constitution = None
    if data.validated_data.get("constitution") is not None:
        constitution = Constitution.objects.filter(pk=data.validated_data["constitution"]).first()
        if constitution is None:
            raise ValidationError({"constitution": "constitution: no such constitution"})
    job = synthesis_job_create(project=project, endpoint=endpoint_of("endpoint"), kind=data.validated_data["kind"],
                               scorer=endpoint_of("scorer"), constitution=constitution,
                               params=data.validated_data["params"],
                               confirm_cost=data.validated_data["confirm_cost"], user=request.user)
    return Response(SynthesisJobSerializer(job).data, status=201)


@extend_schema(responses=SynthesisJobSerializer)
@api_view(["GET"])
def synthesis_job_detail(request: Request, project_id: int, job_id: int) -> Response:
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    job = synthesis_jobs_for_project(project=project).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    return Response(SynthesisJobSerializer(job).data)


PROBLEMS_PAGE = 100


class ProblemSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True, help_text='"math" (an answer) or "code" (tests).')
    tests = serializers.JSONField(help_text="A list of assert lines, a HumanEval check function's source, or null.")
    tags = serializers.JSONField(help_text="A list of tags.")
    metadata = serializers.JSONField()

    class Meta:
        model = Problem
        fields = ["id", "kind", "question", "answer", "tests", "entry_point", "tags", "split", "source", "metadata",
                  "created_at"]
        read_only_fields = fields


class ProblemPageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Problems that match the filters.")
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    results = ProblemSerializer(many=True)


class ProblemUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="JSON Lines, a JSON array or Parquet (GSM8K/MATH or MBPP/HumanEval "
                                           "fields), imported all or nothing.")
    tags = serializers.CharField(required=False, allow_blank=True, default="",
                                 help_text="Tags added to every problem, comma-separated.")
    split = serializers.ChoiceField(choices=Problem.Split.choices, required=False, allow_blank=True, default="",
                                    help_text="The split of every problem (default: each record's own, else train).")


class ProblemImportSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    math = serializers.IntegerField()
    code = serializers.IntegerField()


@extend_schema(methods=["GET"], responses=ProblemPageSerializer, parameters=[
    OpenApiParameter("tag", str), OpenApiParameter("split", str, enum=Problem.Split.values),
    OpenApiParameter("kind", str, enum=["math", "code"]), OpenApiParameter("q", str),
    OpenApiParameter("page", int, description="From 1 (past the last page: the last page).")])
@extend_schema(methods=["POST"], request={"multipart/form-data": ProblemUploadSerializer},
               responses={201: ProblemImportSerializer})
@api_view(["GET", "POST"])
@parser_classes([MultiPartParser, FormParser])
def problems(request: Request, project_id: int) -> Response:
    """Researchers of the project: its problems, filtered by tag, split, kind ("math"/"code") and text, 100 a
    page (GET); or an import of a file (POST, multipart): all or nothing, 400 naming the file, line and field
    of the first bad record."""
    from django.core.paginator import Paginator

    from synth.problems import problems_filter, problems_upload, tags_parse

    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    if request.method == "GET":
        filters = {name: str(request.query_params.get(name, "")).strip()[:200]
                   for name in ("tag", "split", "kind", "q")}
        # Given, a filter must be one of its values (left out: any).
        if "split" in request.query_params and filters["split"] not in Problem.Split.values:
            raise ValidationError({"split": f"split: expected one of {', '.join(Problem.Split.values)}"})
        if "kind" in request.query_params and filters["kind"] not in ("math", "code"):
            raise ValidationError({"kind": "kind: expected math or code"})
        number = str(request.query_params.get("page", "1")).strip()
        if not number.isdigit() or not 1 <= int(number) <= 1_000_000:
            raise ValidationError({"page": "page: expected a whole number from 1"})
        page = Paginator(problems_filter(project=project, **filters), PROBLEMS_PAGE).get_page(int(number))
        return Response({"count": page.paginator.count, "page": page.number, "pages": page.paginator.num_pages,
                         "results": ProblemSerializer(page.object_list, many=True).data})
    data = ProblemUploadSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        tags = tags_parse(data.validated_data["tags"] or None)
    except ValueError as exc:
        raise ValidationError({"tags": str(exc)}) from None
    summary = problems_upload(project=project, upload=data.validated_data["file"], tags=tags,
                              split=data.validated_data["split"] or None)
    return Response({"count": summary.count, "math": summary.math, "code": summary.code}, status=201)
