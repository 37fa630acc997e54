from django.urls import path

from annotate import views, views_import, views_setup

app_name = "annotate"
urlpatterns = [
    path("", views_setup.project_list, name="project_list"),
    path("projects/new/", views_setup.project_new, name="project_new"),
    path("projects/new/preview/", views_setup.guidelines_preview, name="guidelines_preview"),
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
    path("projects/<int:project_id>/members/", views_setup.project_members, name="project_members"),
    path("projects/<int:project_id>/members/<int:user_id>/role/", views_setup.member_role, name="member_role"),
    path("projects/<int:project_id>/members/<int:user_id>/remove/", views_setup.member_remove,
         name="member_remove"),
    path("projects/<int:project_id>/annotate/", views.annotate_next, name="annotate"),
    path("projects/<int:project_id>/annotate/last/", views.annotate_last, name="annotate_last"),
    path("projects/<int:project_id>/annotate/<int:item_id>/", views.annotate_submit, name="annotate_submit"),
    path("projects/<int:project_id>/annotate/<int:item_id>/skip/", views.annotate_skip, name="annotate_skip"),
    path("projects/<int:project_id>/steps/<int:item_id>/", views.steps_submit, name="steps_submit"),
    path("projects/<int:project_id>/solutions/<int:item_id>/split/", views.solution_split, name="solution_split"),
    path("projects/<int:project_id>/import/", views_import.import_page, name="import"),
    path("projects/<int:project_id>/quality/", views.quality, name="quality"),
    path("projects/<int:project_id>/review/", views.review, name="review"),
    path("projects/<int:project_id>/review/<int:item_id>/", views.review, name="adjudicate"),
    path("projects/<int:project_id>/jobs/<slug:slug>/<int:job_id>/cancel/", views.job_action, {"action": "cancel"},
         name="job_cancel"),
    path("projects/<int:project_id>/jobs/<slug:slug>/<int:job_id>/retry/", views.job_action, {"action": "retry"},
         name="job_retry"),
]
