from django.urls import path

from judges import views

app_name = "judges"
urlpatterns = [
    path("projects/<int:project_id>/judges/", views.runs, name="runs"),
    path("projects/<int:project_id>/leaderboard/", views.leaderboard, name="leaderboard"),
    path("projects/<int:project_id>/judges/runs/<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
]
