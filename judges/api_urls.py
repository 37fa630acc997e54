from django.urls import path

import annotate.api_errors  # noqa: F401 (registers the <id:...> path converter)
from judges import api

urlpatterns = [
    path("projects/<id:project_id>/leaderboard/", api.leaderboard, name="api_leaderboard"),
    path("projects/<id:project_id>/judges/", api.judges, name="api_judges"),
    path("projects/<id:project_id>/judges/reports/", api.judge_reports, name="api_judge_reports"),
    path("projects/<id:project_id>/judges/preview/", api.judge_preview_api, name="api_judge_preview"),
    path("projects/<id:project_id>/judges/<id:judge_id>/", api.judge_detail, name="api_judge_detail"),
    path("projects/<id:project_id>/judges/<id:judge_id>/test/", api.judge_test_api, name="api_judge_test"),
    path("projects/<id:project_id>/judges/<id:judge_id>/estimate/", api.judge_run_estimate_api,
         name="api_judge_estimate"),
    path("projects/<id:project_id>/judges/<id:judge_id>/runs/", api.judge_run_start, name="api_judge_run_start"),
]
