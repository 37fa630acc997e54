from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
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
        fields = ["method", "base_endpoint", "snapshot", "hyperparameters", "accelerate_config", "num_processes",
                  "win_rate_judge", "win_rate_prompts"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for optional in ("num_processes", "win_rate_prompts"):
            if optional in self.fields:
                self.fields[optional].required = False
        if "hyperparameters" in self.fields:
            self.fields["hyperparameters"].help_text = (
                "Only what differs from the defaults. " + " ".join(
                    f"{m.label} ({m.consumes} snapshots): {m.help()}." for m in METHODS.values()))

    def clean_num_processes(self):
        return self.cleaned_data.get("num_processes") or 1  # left empty: one process

    def clean_win_rate_prompts(self):
        return self.cleaned_data.get("win_rate_prompts") or TrainingJob._meta.get_field("win_rate_prompts").default

    def clean(self):
        data = super().clean()
        if data.get("method") and data.get("snapshot") is not None and not self.errors.get("hyperparameters"):
            try:
                data["hyperparameters"] = training_job_check(
                    method=data["method"], snapshot=data["snapshot"], hyperparameters=data.get("hyperparameters"),
                    accelerate_config=data.get("accelerate_config") or "", num_processes=data.get("num_processes") or 1,
                    win_rate_judge=data.get("win_rate_judge"), win_rate_prompts=data.get("win_rate_prompts") or 50)
            except ValidationError as exc:
                for field, messages_ in exc.message_dict.items():
                    self.add_error(field if field in self.fields else None, messages_)
        return data


@admin.register(TrainingJob)
class TrainingJobAdmin(JobAdmin):
    """Adding a job here starts it: it is queued on the training queue when saved. A failed or cancelled
    job can be retried (it resumes from its last checkpoint when its configuration is unchanged)."""

    list_display = ["id", "method", "base_endpoint", "snapshot", "status", "progress", "total", "final_loss",
                    "result_endpoint", "page_link"]
    list_filter = ["status", "method"]
    list_select_related = ["base_endpoint", "snapshot", "result_endpoint"]
    form = TrainingJobForm
    readonly_fields = ["page_link", "evaluation", "metrics", "log_tail", "artifact_path", "result_endpoint"]
    exclude = ["log"]

    @admin.display(description="Page")
    def page_link(self, obj):
        """The job's page: its curves while it runs, its evaluation and endpoint once done."""
        if obj.pk is None:
            return "—"
        url = reverse("training:job", args=[obj.snapshot.project_id, obj.pk])
        return format_html('<a href="{}">Curves, log and evaluation</a>', url)

    @admin.display(description="Log (last lines)")
    def log_tail(self, obj):
        return format_html('<pre style="max-height:30rem;overflow:auto">{}</pre>', obj.log[-20000:])

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            training_job_start(job=obj)
            messages.info(request, f"Training job #{obj.pk} queued on the training queue.")
