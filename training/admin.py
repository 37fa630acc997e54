from django.contrib import admin, messages
from django.utils.html import format_html

from annotate.admin import JobAdmin
from training.models import DatasetSnapshot, TrainingJob
from training.services import training_job_start


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    """Snapshots are immutable: made by the export service, never edited here."""

    list_display = ["name", "project", "source", "rows", "sha256", "created_at"]
    readonly_fields = ["project", "name", "format", "source", "file", "manifest", "sha256", "rows", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(TrainingJob)
class TrainingJobAdmin(JobAdmin):
    """Adding a job here starts it: it is queued on the training queue when saved. A failed or cancelled
    job can be retried (it resumes from its last checkpoint when its configuration is unchanged)."""

    list_display = ["id", "method", "base_endpoint", "snapshot", "status", "progress", "total", "final_loss",
                    "result_endpoint"]
    list_filter = ["status", "method"]
    readonly_fields = ["metrics", "log_tail", "artifact_path", "result_endpoint"]
    exclude = ["log"]

    @admin.display(description="Log (last lines)")
    def log_tail(self, obj):
        return format_html('<pre style="max-height:30rem;overflow:auto">{}</pre>', obj.log[-20000:])

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            training_job_start(job=obj)
            messages.info(request, f"Training job #{obj.pk} queued on the training queue.")
