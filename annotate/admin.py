from django.contrib import admin

from annotate.job_lifecycle import job_cancel, job_retry
from annotate.models import Completion, ImportJob, Membership, PairItem, PairLabel, Project, Prompt

JOB_FIELDS = ("status", "progress", "total", "error", "created_at", "started_at", "finished_at", "heartbeat_at",
              "lease_until", "attempt", "worker")


class JobAdmin(admin.ModelAdmin):
    """What every job's admin shares: the lifecycle's fields are read-only, and jobs can be cancelled
    and retried (as from their pages and the API)."""

    actions = ["cancel_jobs", "retry_jobs"]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *(f for f in JOB_FIELDS if f not in self.readonly_fields)]

    @admin.action(description="Cancel the selected jobs (queued or running)")
    def cancel_jobs(self, request, queryset):
        cancelled = sum(job_cancel(job=job).status == job.Status.CANCELLED for job in queryset if job.can_cancel)
        self.message_user(request, f"Cancelled {cancelled} job(s).")

    @admin.action(description="Retry the selected jobs (failed or cancelled): they resume where they can")
    def retry_jobs(self, request, queryset):
        retried = sum(job_retry(job=job).status == job.Status.QUEUED for job in queryset if job.can_retry)
        self.message_user(request, f"Queued {retried} job(s) again.")


@admin.register(ImportJob)
class ImportJobAdmin(JobAdmin):
    list_display = ["id", "project", "file_name", "format", "status", "progress", "items", "attempt", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["project", "created_by", "file_name", "path", "format", "items"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "task_kind", "overlap", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "source", "__str__"]
    list_filter = ["project"]
    list_select_related = ["project"]


@admin.register(Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt_id", "model_name", "__str__"]
    raw_id_fields = ["prompt"]


@admin.register(PairItem)
class PairItemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "prompt_id", "completion_a_id", "completion_b_id"]
    list_filter = ["project"]
    raw_id_fields = ["prompt", "completion_a", "completion_b"]


@admin.register(PairLabel)
class PairLabelAdmin(admin.ModelAdmin):
    list_display = ["id", "item_id", "annotator", "verdict", "strength", "shown_order", "time_spent_ms"]
    list_filter = ["verdict", "item__project"]
    raw_id_fields = ["item"]
