from django.urls import path

from judges import views

app_name = "judges"
urlpatterns = [
    path("projects/<int:project_id>/judges/", views.runs, name="runs"),
    path("projects/<int:project_id>/judges/estimate/", views.run_estimate, name="run_estimate"),
    path("projects/<int:project_id>/judges/new/", views.judge_edit, name="judge_new"),
    path("projects/<int:project_id>/judges/<int:judge_id>/edit/", views.judge_edit, name="judge_edit"),
    path("projects/<int:project_id>/judges/<int:judge_id>/items/", views.judge_items, name="judge_items"),
    path("projects/<int:project_id>/judges/template/", views.judge_template, name="judge_template"),
    path("projects/<int:project_id>/judges/preview/", views.judge_preview_view, name="judge_preview"),
    path("projects/<int:project_id>/judges/test/", views.judge_test_view, name="judge_test"),
    path("projects/<int:project_id>/leaderboard/", views.leaderboard, name="leaderboard"),
]
