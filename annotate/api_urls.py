from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import annotate.api_errors  # noqa: F401 (registers the <id:...> path converter)
from annotate import api, auth_api

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
    path("token/", auth_api.obtain_token, name="api_token"),
    path("projects/", api.project_list, name="api_project_list"),
    path("projects/<id:project_id>/", api.project_detail, name="api_project_detail"),
    path("projects/<id:project_id>/members/", api.members, name="api_members"),
    path("projects/<id:project_id>/members/accounts/", api.member_account_create, name="api_member_account_create"),
    path("projects/<id:project_id>/members/<id:user_id>/", api.member_detail, name="api_member_detail"),
    path("projects/<id:project_id>/next/", api.next_item, name="api_next_item"),
    path("projects/<id:project_id>/labels/mine/", api.my_labels, name="api_my_labels"),
    path("projects/<id:project_id>/items/<id:item_id>/label/", api.label_submit, name="api_label_submit"),
    path("projects/<id:project_id>/items/<id:item_id>/skip/", api.pair_skip, name="api_item_skip"),
    path("projects/<id:project_id>/solutions/<id:item_id>/label/", api.step_label_submit_api,
         name="api_step_label_submit"),
    path("projects/<id:project_id>/solutions/<id:item_id>/skip/", api.step_skip_api, name="api_step_skip"),
    path("projects/<id:project_id>/imports/", api.imports, name="api_imports"),
    path("projects/<id:project_id>/quality/", api.quality, name="api_quality"),
    path("projects/<id:project_id>/disputes/", api.disputes, name="api_disputes"),
    path("projects/<id:project_id>/items/<id:item_id>/adjudicate/", api.adjudicate, name="api_adjudicate"),
    path("projects/<id:project_id>/imports/<id:job_id>/", api.import_detail, name="api_import_detail"),
    path("projects/<id:project_id>/jobs/", api.jobs, name="api_jobs"),
    path("projects/<id:project_id>/jobs/<slug:slug>/<id:job_id>/", api.job_detail, name="api_job_detail"),
    path("projects/<id:project_id>/jobs/<slug:slug>/<id:job_id>/cancel/", api.job_cancel_api,
         name="api_job_cancel"),
    path("projects/<id:project_id>/jobs/<slug:slug>/<id:job_id>/retry/", api.job_retry_api, name="api_job_retry"),
]
