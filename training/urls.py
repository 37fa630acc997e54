from django.urls import path

from training import views

app_name = "training"
urlpatterns = [
    path("projects/<int:project_id>/datasets/", views.datasets, name="datasets"),
    path("projects/<int:project_id>/datasets/<int:snapshot_id>/download/", views.snapshot_download,
         name="snapshot_download"),
]
