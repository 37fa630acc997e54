from django.urls import path

from judges import api

urlpatterns = [
    path("projects/<int:project_id>/leaderboard/", api.leaderboard, name="api_leaderboard"),
    path("projects/<int:project_id>/judges/reports/", api.judge_reports, name="api_judge_reports"),
    path("projects/<int:project_id>/judges/<int:judge_id>/runs/", api.judge_run_start, name="api_judge_run_start"),
]
