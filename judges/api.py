from django.db.models import Sum
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from annotate.models import Membership, Project
from annotate.selectors import project_get_for_user
from judges.leaderboard import SOURCES, project_leaderboard
from judges.models import UNPARSED_EXAMPLES, AIJudgment, Judge, JudgeRun
from judges.reports import judge_report
from judges.services import judge_run_create


@extend_schema(parameters=[OpenApiParameter("source", enum=list(SOURCES), default="human")],
               responses={200: OpenApiTypes.OBJECT})
@api_view(["GET"])
def leaderboard(request: Request, project_id: int) -> Response:
    """Researchers: Bradley-Terry ratings of the models behind the completions, with 95% bootstrap intervals."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    source = request.query_params.get("source", "human")
    if source not in SOURCES:
        raise ValidationError({"source": [f"must be one of {list(SOURCES)}"]})
    return Response({"source": source, "models": project_leaderboard(project=project, source=source)})


_UNPARSED_SCHEMA = {"type": "object", "properties": {
    "answers": {"type": "integer", "description": "Generated answers read by the judge's runs on the project."},
    "unparsed": {"type": "integer", "description": "Those no verdict, score or yes/no was found in (a tie each)."},
    "share": {"type": "number", "nullable": True},
    "examples": {"type": "array", "items": {"type": "string"}, "description": "A few, trimmed: model text."}},
    "required": ["answers", "unparsed", "share", "examples"]}


@extend_schema(responses={200: {"type": "array", "items": {
    "type": "object", "properties": {"judge": {"type": "string"}, "version": {"type": "integer"},
                                     "unparsed": _UNPARSED_SCHEMA},
    "required": ["judge", "version", "unparsed"], "additionalProperties": {}}}})
@api_view(["GET"])
def judge_reports(request: Request, project_id: int) -> Response:
    """Researchers: each judge's agreement with people, position bias, self-consistency, calibration, cost."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    judge_ids = AIJudgment.objects.filter(item__project=project).values_list("judge_id", flat=True).distinct()
    out = []
    for judge in Judge.objects.filter(pk__in=judge_ids):
        report = judge_report(judge=judge, project=project)
        report.pop("calibration_svg")
        out.append({"judge": judge.name, "version": judge.template_version, **report,
                    "unparsed": _unparsed_summary(judge=judge, project=project)})
    return Response(out)


def _unparsed_summary(*, judge: Judge, project: Project) -> dict:
    """Over the judge's runs on the project: generated answers read, those no verdict, score or yes/no was
    found in (each counted as a tie), and a few of them (model text) from the latest runs."""
    runs = JudgeRun.objects.filter(judge=judge, project=project)
    totals = runs.aggregate(answers=Sum("answers"), unparsed=Sum("unparsed"))
    answers, unparsed = totals["answers"] or 0, totals["unparsed"] or 0
    examples: list[str] = []
    for shown in runs.filter(unparsed__gt=0).order_by("-id").values_list("unparsed_examples", flat=True)[:5]:
        examples += shown[: UNPARSED_EXAMPLES - len(examples)]
    return {"answers": answers, "unparsed": unparsed,
            "share": round(unparsed / answers, 4) if answers else None, "examples": examples}


class JudgeRunStartedSerializer(serializers.ModelSerializer):
    class Meta:
        model = JudgeRun
        fields = ["id", "status"]


@extend_schema(request=None, responses={
    202: JudgeRunStartedSerializer,
    400: OpenApiResponse(description="The judge's mode does not fit the project's task kind (`judge`).")})
@api_view(["POST"])
def judge_run_start(request: Request, project_id: int, judge_id: int) -> Response:
    """Researchers: queue a run of a judge over the project's pairs."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    judge = Judge.objects.filter(pk=judge_id).first()
    if judge is None:
        raise NotFound("No such judge.")
    run = judge_run_create(judge=judge, project=project, user=request.user)
    return Response(JudgeRunStartedSerializer(run).data, status=202)
