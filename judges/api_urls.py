from django.urls import path

from judges import api

urlpatterns = [path("projects/<int:project_id>/leaderboard/", api.leaderboard, name="api_leaderboard")]
