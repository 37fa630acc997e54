from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from annotate.admin import JobAdmin
from training.jobs import training_job_check, training_job_start
from training.ml.registry import METHODS
from training.models import SNAPSHOT_CONTENT_FIELDS, DatasetSnapshot, TrainingJob


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    """Snapshots are immutable: made by the export service, never edited here (every field read-only, even
    for a user with the change permission; ``DatasetSnapshot.save`` refuses a change of content too)."""

    list_display = ["name", "project", "source", "rows", "sha256", "created_at"]
    readonly_fields = ["project", "name", *(f for f in SNAPSHOT_CONTENT_FIELDS if f != "project"), "created_by"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class TrainingJobForm(forms.ModelForm):
    """Refuses a snapshot of the wrong kind for the method and hyper-parameters the method does not have."""

    class Meta:
        model = TrainingJob
        fields = ["method", "base_endpoint", "snapshot", "hyperparameters"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "hyperparameters" in self.fields:
            self.fields["hyperparameters"].help_text = (
                "Only what differs from the defaults. " + " ".join(
                    f"{m.label} ({m.consumes} snapshots): {m.help()}." for m in METHODS.values()))

    def clean(self):
        data = super().clean()
        if data.get("method") and data.get("snapshot") is not None and not self.errors.get("hyperparameters"):
            try:
                data["hyperparameters"] = training_job_check(method=data["method"], snapshot=data["snapshot"],
                                                             hyperparameters=data.get("hyperparameters"))
            except ValidationError as exc:
                for field, messages_ in exc.message_dict.items():
                    self.add_error(field if field in self.fields else None, messages_)
        return data


@admin.register(TrainingJob)
class TrainingJobAdmin(JobAdmin):
    """Adding a job here starts it: it is queued on the training queue when saved. A failed or cancelled
    job can be retried (it resumes from its last checkpoint when its configuration is unchanged)."""

    list_display = ["id", "method", "base_endpoint", "snapshot", "status", "progress", "total", "final_loss",
                    "result_endpoint"]
    list_filter = ["status", "method"]
    form = TrainingJobForm
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
