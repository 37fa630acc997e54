"""Immutable dataset snapshots and the training jobs that use them."""

from __future__ import annotations

from django.db import models

from annotate.jobs import Job
from training.ml.registry import method_choices


class DatasetSnapshot(models.Model):
    class Format(models.TextChoices):
        PREFERENCE = "preference", "Preference (prompt, chosen, rejected)"
        STEPWISE = "stepwise", "TRL stepwise supervision (prompt, completions, labels)"
        PRM800K = "prm800k", "PRM800K-like, every rating kept"
        OUTCOME = "outcome", "Outcome (prompt, completion, label)"

    class Source(models.TextChoices):
        HUMAN = "human", "Human labels"
        AI = "ai", "AI judgments"
        BOTH = "both", "Human labels, AI judgments where no human label"
        AUTO = "auto", "Automatic step labels (imported or computed)"

    project = models.ForeignKey("annotate.Project", on_delete=models.PROTECT, related_name="snapshots")
    name = models.CharField(max_length=200)
    format = models.CharField(max_length=20, choices=Format.choices, default=Format.PREFERENCE)
    options = models.JSONField(default=dict, blank=True, help_text='e.g. {"neutral": "positive"} for stepwise')
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.HUMAN)
    file = models.CharField(max_length=500, help_text="Path of the JSONL file, relative to MEDIA_ROOT.")
    manifest = models.JSONField(default=dict, help_text="Lineage: which items, labels and judgments made each row.")
    sha256 = models.CharField(max_length=64)
    rows = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="snapshot_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.rows} rows, {self.sha256[:8]})"


class TrainingJob(Job):
    task_name = "training.tasks.training_job_run_task"
    slug = "training"
    page_url_name = "training:datasets"
    spends = True
    project_path = "snapshot__project"

    # training.ml.registry: the script, the record kind it trains on and its config dataclass.
    method = models.CharField(max_length=20, choices=method_choices, default="dpo")
    base_endpoint = models.ForeignKey("synth.ModelEndpoint", on_delete=models.PROTECT, related_name="training_jobs")
    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT, related_name="training_jobs")
    hyperparameters = models.JSONField(
        default=dict, blank=True,
        help_text='Only what differs from the method\'s defaults, e.g. {"max_steps": 100, "beta": 0.2}.')
    metrics = models.JSONField(default=list, blank=True, help_text="One entry per logged step.")
    log = models.TextField(blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    result_endpoint = models.ForeignKey("synth.ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_method_display()} #{self.pk} on {self.base_endpoint} ({self.status})"

    @property
    def final_loss(self) -> float | None:
        losses = [m["loss"] for m in self.metrics if "loss" in m]
        return losses[-1] if losses else None
