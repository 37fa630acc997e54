from django.urls import path

import annotate.api_errors  # noqa: F401 (registers the <id:...> path converter)
from training import api, api_diff, views

app_name = "training"
urlpatterns = [
    path("projects/<int:project_id>/datasets/", views.datasets, name="datasets"),
    path("projects/<int:project_id>/datasets/preview/", views.snapshot_preview, name="snapshot_preview"),
    path("projects/<int:project_id>/datasets/<int:snapshot_id>/download/", views.snapshot_download,
         name="snapshot_download"),
    path("projects/<int:project_id>/datasets/<int:snapshot_id>/manifest/", views.snapshot_manifest_download,
         name="snapshot_manifest"),
    # The API (JSON errors under /api/, as annotate.api_urls).
    path("api/projects/<id:project_id>/snapshots/", api.snapshots, name="api_snapshots"),
    path("api/projects/<id:project_id>/snapshots/<id:snapshot_id>/manifest/", api.snapshot_manifest_api,
         name="api_snapshot_manifest"),
    path("api/projects/<id:project_id>/snapshots/<id:snapshot_id>/diff/<id:other_id>/", api_diff.snapshot_diff_api,
         name="api_snapshot_diff"),
]
