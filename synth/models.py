"""Model endpoints and the jobs that generate synthetic data with them."""

from __future__ import annotations

from django.db import models

from annotate.jobs import JobStatus


class ModelEndpoint(models.Model):
    class Kind(models.TextChoices):
        TRANSFORMERS = "transformers", "Local transformers model (path or hub id)"
        GGUF = "gguf", "GGUF file (converted once to safetensors)"
        OPENAI = "openai", "OpenAI-compatible HTTP server"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TRANSFORMERS)
    # transformers: a local directory or a hub id (loaded offline from the local cache);
    # gguf: the path of the .gguf file; openai: the model name sent to the server.
    path = models.CharField(max_length=500, blank=True)
    base_url = models.URLField(blank=True, help_text="OpenAI-compatible servers only, e.g. http://127.0.0.1:8000/v1")
    dtype = models.CharField(max_length=20, default="float32")
    device = models.CharField(max_length=20, default="cpu")
    # Lineage: the training job that produced this model, if any ("training.TrainingJob").
    created_by_job_id = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(kind="openai") | ~models.Q(base_url=""), name="endpoint_openai_needs_base_url"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class SynthesisJob(models.Model):
    class Kind(models.TextChoices):
        PAIRS = "pairs", "Sample two completions per prompt and build pairs"

    Status = JobStatus

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="synthesis_jobs")
    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="synthesis_jobs")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.PAIRS)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"


class Generation(models.Model):
    """Which endpoint, job and sampling produced a completion."""

    completion = models.OneToOneField("annotate.Completion", on_delete=models.CASCADE, related_name="generation")
    endpoint = models.ForeignKey(ModelEndpoint, null=True, on_delete=models.SET_NULL, related_name="generations")
    job = models.ForeignKey(SynthesisJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="generations")
    sampling = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"completion {self.completion_id} by {self.endpoint_id}"
