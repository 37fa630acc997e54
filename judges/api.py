from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from annotate.models import Membership
from annotate.selectors import project_get_for_user
from judges.leaderboard import SOURCES, project_leaderboard
from judges.models import AIJudgment, Judge
from judges.reports import judge_report
from judges.services import judge_run_create


@extend_schema(parameters=[OpenApiParameter("source", enum=list(SOURCES), default="human")], responses=dict)
@api_view(["GET"])
def leaderboard(request: Request, project_id: int) -> Response:
    """Researchers: Bradley-Terry ratings of the models behind the completions, with 95% bootstrap intervals."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    source = request.query_params.get("source", "human")
    if source not in SOURCES:
        return Response({"source": f"must be one of {list(SOURCES)}"}, status=400)
    return Response({"source": source, "models": project_leaderboard(project=project, source=source)})


@extend_schema(responses=dict)
@api_view(["GET"])
def judge_reports(request: Request, project_id: int) -> Response:
    """Researchers: each judge's agreement with people, position bias, self-consistency, calibration, cost."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    judge_ids = AIJudgment.objects.filter(item__project=project).values_list("judge_id", flat=True).distinct()
    out = []
    for judge in Judge.objects.filter(pk__in=judge_ids):
        report = judge_report(judge=judge, project=project)
        report.pop("calibration_svg")
        out.append({"judge": judge.name, "version": judge.template_version, **report})
    return Response(out)


@extend_schema(request=None, responses=dict)
@api_view(["POST"])
def judge_run_start(request: Request, project_id: int, judge_id: int) -> Response:
    """Researchers: queue a run of a judge over the project's pairs."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    judge = Judge.objects.filter(pk=judge_id).first()
    if judge is None:
        return Response({"detail": "No such judge."}, status=404)
    run = judge_run_create(judge=judge, project=project)
    return Response({"id": run.pk, "status": run.status}, status=202)
