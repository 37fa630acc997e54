from django.urls import path

from synth import views

app_name = "synth"
urlpatterns = [
    path("projects/<int:project_id>/synthesis/", views.jobs, name="jobs"),
    path("projects/<int:project_id>/synthesis/<int:job_id>/", views.job_detail, name="job_detail"),
    path("projects/<int:project_id>/problems/", views.problems, name="problems"),
    path("endpoints/", views.endpoints, name="endpoints"),
]
