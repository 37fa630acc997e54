"""Immutable dataset snapshots and the training jobs that use them."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from django.conf import settings
from django.db import models

from annotate.jobs import Job
from training.ml.registry import method_choices

# What an export leaves out and why, in the order shown ("9 rows (2 ties, 1 gold dropped)"): the keys the
# export functions count (training.services, training.step_exports) and their words.
DROP_REASONS: dict[str, str] = {
    "tie": "ties",
    "both_bad": "both bad",
    "no_majority": "no majority",
    "no_rated_step": "no rated first step",
    "no_outcome": "no verdict and a step unrated",
    "stale": "labels older than the steps",
    "low_agreement": "under the agreement asked for",
    "weak": "weaker than asked for",
    "synthetic_cap": "synthetic past the share allowed",
    "gold": "gold",
}

# Why each is left out, for the preview.
DROP_REASONS_WHY: dict[str, str] = {
    "tie": "a tie says nothing about which reply to prefer",
    "both_bad": "neither reply is one to prefer",
    "no_majority": "the labels are split evenly between verdicts; review the disagreement to decide it",
    "no_rated_step": "the first step has no majority rating, so no labeled prefix is left",
    "no_outcome": "no verdict on the answer, and an unrated step may hide the error",
    "stale": "the labels were given before the solution was split into other steps",
    "low_agreement": "fewer of the votes agree with the verdict than the minimum agreement set",
    "weak": "the agreeing votes are weaker on average than the minimum strength set (or ungraded)",
    "synthetic_cap": "a reply was generated, and the snapshot holds the share of such rows allowed already",
    "gold": "gold (honeypot) items check annotators and stay out of training data",
}


def dropped_text(dropped: dict[str, int]) -> str:
    """ "2 ties, 1 gold" for ``{"gold": 1, "tie": 2}``; "" when nothing was dropped."""
    return ", ".join(f"{dropped[key]} {words}" for key, words in DROP_REASONS.items() if dropped.get(key))


# What a snapshot is made of: fixed once it is stored (DatasetSnapshot.save refuses a change). The name may
# change; ``created_by`` is cleared by the database when the user is deleted.
SNAPSHOT_CONTENT_FIELDS = ("project", "format", "options", "source", "file", "manifest", "sha256", "rows",
                           "dropped", "created_at")


class SnapshotImmutable(Exception):
    """A stored snapshot's content was about to change: make a new snapshot instead."""


class SnapshotFileAltered(Exception):
    """A snapshot's file is missing or no longer has the sha256 it was made with."""


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read a MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class DatasetSnapshot(models.Model):
    class Format(models.TextChoices):
        PREFERENCE = "preference", "Preference (prompt, chosen, rejected)"
        STEPWISE = "stepwise", "TRL stepwise supervision (prompt, completions, labels)"
        PRM800K = "prm800k", "PRM800K-like, every rating kept"
        OUTCOME = "outcome", "Outcome (prompt, completion, label)"
        UNPAIRED = "unpaired", "KTO unpaired (prompt, completion, label): both replies of each pair"
        SFT = "sft", "SFT (messages): the prompt with the chosen reply"
        PROMPT_ONLY = "prompt_only", "Prompt-only (prompt, answer or tests): the problem bank, for GRPO and RLVR"

    class Source(models.TextChoices):
        HUMAN = "human", "Human labels"
        AI = "ai", "AI judgments"
        BOTH = "both", "Human labels, AI judgments where no human label"
        AUTO = "auto", "Automatic step labels (imported or computed)"
        SYNTHETIC = "synthetic", "Synthesis jobs' own choices (SFT targets, revision over original, best over worst)"

    project = models.ForeignKey("annotate.Project", on_delete=models.PROTECT, related_name="snapshots")
    name = models.CharField(max_length=200)
    format = models.CharField(max_length=20, choices=Format.choices, default=Format.PREFERENCE)
    options = models.JSONField(default=dict, blank=True, help_text='e.g. {"neutral": "positive"} for stepwise')
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.HUMAN)
    file = models.CharField(max_length=500, help_text="Path of the JSONL file, relative to MEDIA_ROOT.")
    manifest = models.JSONField(default=dict, help_text="Lineage: which items, labels and judgments made each row.")
    sha256 = models.CharField(max_length=64)
    rows = models.PositiveIntegerField()
    dropped = models.JSONField(default=dict, blank=True,
                               help_text='What the export rules left out and why, e.g. {"tie": 2, "gold": 1}.')
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="snapshot_unique_name")]
        indexes = [models.Index(fields=["project", "sha256"], name="snapshot_project_sha256")]

    def __str__(self) -> str:
        return f"{self.name} ({self.rows} rows, {self.sha256[:8]})"

    def save(self, *args, **kwargs) -> None:
        """Store a new snapshot (its file made read-only); refuse to change a stored one's content.

        ``QuerySet.update`` bypasses this (Django cannot stop it); the admin shows snapshots read-only and
        a download checks the file against its sha256 (``file_verify``)."""
        if not self._state.adding and self.pk is not None:
            self._content_unchanged(kwargs.get("update_fields"))
        super().save(*args, **kwargs)
        # Content-addressed and never rewritten: nobody writes to the rows (or the lineage file) again.
        lineage_file = self.manifest.get("lineage_file") if isinstance(self.manifest, dict) else None
        for path in (self.stored_path, *([Path(settings.MEDIA_ROOT) / lineage_file] if lineage_file else [])):
            if path.is_file() and path.stat().st_mode & 0o222:
                os.chmod(path, 0o444)

    def _content_unchanged(self, update_fields) -> None:
        fields = [f for f in SNAPSHOT_CONTENT_FIELDS if update_fields is None or f in update_fields
                  or f"{f}_id" in update_fields]
        attnames = [self._meta.get_field(f).attname for f in fields]
        stored = type(self)._base_manager.filter(pk=self.pk).values(*attnames).first()
        if stored is None:
            return  # not stored after all (deleted, or a pk set by hand): a new row
        changed = [f for f, attname in zip(fields, attnames, strict=True) if stored[attname] != getattr(self, attname)]
        if changed:
            raise SnapshotImmutable(
                f"Snapshot {self.pk} ({stored.get('sha256', self.sha256)[:12]}) is immutable: {', '.join(changed)} "
                f"cannot change once it is made. Create a new snapshot instead.")

    @property
    def stored_path(self) -> Path:
        return Path(settings.MEDIA_ROOT) / self.file

    def file_verify(self) -> Path:
        """The file's path if it holds the bytes the snapshot was made with; else SnapshotFileAltered."""
        path = self.stored_path
        try:
            sha256 = file_sha256(path)
        except FileNotFoundError:
            raise SnapshotFileAltered(f"The file of snapshot {self.name!r} is missing.") from None
        except OSError as exc:  # a folder, no permission: not the file the snapshot was made with
            raise SnapshotFileAltered(f"The file of snapshot {self.name!r} cannot be read: {exc.strerror}.") from None
        if sha256 != self.sha256:
            raise SnapshotFileAltered(
                f"The file of snapshot {self.name!r} was altered after it was made: its sha256 is "
                f"{sha256[:12]}, not {self.sha256[:12]}. It is not served; restore the file or "
                f"make a new snapshot.")
        return path

    @property
    def dropped_text(self) -> str:
        return dropped_text(self.dropped)

    @property
    def file_stem(self) -> str:
        """The name as a download's file name: letters, digits, ".", "_" and "-" (a name is free text)."""
        stem = re.sub(r"\.{2,}", ".", re.sub(r"[^\w.-]+", "-", self.name, flags=re.ASCII))
        return stem.strip(".-") or f"snapshot-{self.pk}"


class SnapshotJob(Job):
    """A snapshot made by a worker: a large export, with its progress shown while it runs. ``params`` are
    ``training.services.snapshot_create``'s options as checked when the job was made."""

    task_name = "training.tasks.snapshot_job_run_task"
    slug = "snapshot"
    page_url_name = "training:datasets"

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="snapshot_jobs")
    params = models.JSONField(default=dict)
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Snapshot job #{self.pk} ({self.status})"


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
    evaluation = models.JSONField(
        default=dict, blank=True,
        help_text="What the script measured on the snapshot's test split after training (its evaluation.json).")
    log = models.TextField(blank=True)
    # Beyond one machine: run through ``accelerate launch`` (several GPUs, DeepSpeed ZeRO, FSDP).
    accelerate_config = models.CharField(
        max_length=500, blank=True,
        help_text="Path of an accelerate (or DeepSpeed) config file on the training worker; blank: one plain "
                  "process.")
    num_processes = models.PositiveSmallIntegerField(
        default=1, help_text="Processes (GPUs) accelerate starts; more than 1 launches through accelerate.")
    artifact_path = models.CharField(max_length=500, blank=True)
    result_endpoint = models.ForeignKey("synth.ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    # Back into the loop: a trained policy against its base model on held-out prompts (training.loop).
    win_rate_judge = models.ForeignKey(
        "judges.Judge", null=True, blank=True, on_delete=models.SET_NULL, related_name="training_jobs",
        help_text="Policy methods: once trained, this judge compares the model's answers with the base model's "
                  "on held-out prompts, in both orders; blank: no win rate.")
    win_rate_prompts = models.PositiveSmallIntegerField(
        default=50, help_text="The most held-out prompts the win rate is measured on.")

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=models.Q(num_processes__gte=1),
                                              name="trainingjob_num_processes_positive")]

    def __str__(self) -> str:
        return f"{self.get_method_display()} #{self.pk} on {self.base_endpoint} ({self.status})"

    @property
    def final_loss(self) -> float | None:
        losses = [m["loss"] for m in self.metrics if "loss" in m]
        return losses[-1] if losses else None
