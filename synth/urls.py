from django.urls import path

from synth import views

app_name = "synth"
urlpatterns = [
    path("projects/<int:project_id>/synthesis/", views.jobs, name="jobs"),
    path("endpoints/", views.endpoints, name="endpoints"),
]
