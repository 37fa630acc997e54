from django.urls import path

import annotate.api_errors  # noqa: F401 (registers the <id:...> path converter)
from training import api, api_diff, api_jobs, views, views_jobs

app_name = "training"
urlpatterns = [
    path("projects/<int:project_id>/datasets/", views.datasets, name="datasets"),
    path("projects/<int:project_id>/datasets/preview/", views.snapshot_preview, name="snapshot_preview"),
    path("projects/<int:project_id>/datasets/<int:snapshot_id>/download/", views.snapshot_download,
         name="snapshot_download"),
    path("projects/<int:project_id>/datasets/<int:snapshot_id>/manifest/", views.snapshot_manifest_download,
         name="snapshot_manifest"),
    path("projects/<int:project_id>/training/<int:job_id>/", views_jobs.job_page, name="job"),
    path("projects/<int:project_id>/training/<int:job_id>/cancel/", views_jobs.job_action, {"action": "cancel"},
         name="job_cancel"),
    path("projects/<int:project_id>/training/<int:job_id>/retry/", views_jobs.job_action, {"action": "retry"},
         name="job_retry"),
    # The API (JSON errors under /api/, as annotate.api_urls).
    path("api/projects/<id:project_id>/training-jobs/", api_jobs.training_jobs, name="api_training_jobs"),
    path("api/projects/<id:project_id>/training-jobs/<id:job_id>/", api_jobs.training_job_detail,
         name="api_training_job"),
    path("api/projects/<id:project_id>/training-jobs/<id:job_id>/cancel/", api_jobs.training_job_cancel_api,
         name="api_training_job_cancel"),
    path("api/projects/<id:project_id>/training-jobs/<id:job_id>/retry/", api_jobs.training_job_retry_api,
         name="api_training_job_retry"),
    path("projects/<int:project_id>/datasets/<int:snapshot_id>/lineage/", views.snapshot_lineage_download,
         name="snapshot_lineage"),
    path("projects/<int:project_id>/datasets/<int:snapshot_id>/files/<str:name>", views.snapshot_layout_file,
         name="snapshot_layout_file"),
    path("projects/<int:project_id>/datasets/compare/", views.snapshot_diff_page, name="snapshot_diff"),
    path("api/projects/<id:project_id>/snapshots/", api.snapshots, name="api_snapshots"),
    path("api/projects/<id:project_id>/snapshot-jobs/<id:job_id>/", api.snapshot_job_api, name="api_snapshot_job"),
    path("api/projects/<id:project_id>/snapshots/<id:snapshot_id>/manifest/", api.snapshot_manifest_api,
         name="api_snapshot_manifest"),
    path("api/projects/<id:project_id>/snapshots/<id:snapshot_id>/diff/<id:other_id>/", api_diff.snapshot_diff_api,
         name="api_snapshot_diff"),
]
