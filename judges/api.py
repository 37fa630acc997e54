from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from annotate.models import Membership
from annotate.selectors import project_get_for_user
from judges.leaderboard import SOURCES, project_leaderboard


@extend_schema(parameters=[OpenApiParameter("source", enum=list(SOURCES), default="human")], responses=dict)
@api_view(["GET"])
def leaderboard(request: Request, project_id: int) -> Response:
    """Researchers: Bradley-Terry ratings of the models behind the completions, with 95% bootstrap intervals."""
    project = project_get_for_user(user=request.user, project_id=project_id, role=Membership.Role.RESEARCHER)
    source = request.query_params.get("source", "human")
    if source not in SOURCES:
        return Response({"source": f"must be one of {list(SOURCES)}"}, status=400)
    return Response({"source": source, "models": project_leaderboard(project=project, source=source)})
