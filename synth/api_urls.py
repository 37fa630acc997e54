from django.urls import path

import annotate.api_errors  # noqa: F401 (registers the <id:...> path converter)
from synth import api

urlpatterns = [
    path("endpoints/", api.endpoints, name="api_endpoints"),
    path("endpoints/<id:endpoint_id>/", api.endpoint_detail, name="api_endpoint_detail"),
    path("endpoints/<id:endpoint_id>/check/", api.endpoint_check_api, name="api_endpoint_check"),
    path("projects/<id:project_id>/problems/", api.problems, name="api_problems"),
    path("projects/<id:project_id>/synthesis/", api.synthesis_jobs, name="api_synthesis_jobs"),
    path("projects/<id:project_id>/synthesis/<id:job_id>/", api.synthesis_job_detail, name="api_synthesis_job"),
]
