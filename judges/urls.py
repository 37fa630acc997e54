from django.urls import path

from judges import views

app_name = "judges"
urlpatterns = [
    path("projects/<int:project_id>/judges/", views.runs, name="runs"),
    path("projects/<int:project_id>/leaderboard/", views.leaderboard, name="leaderboard"),
]
