"""Projects, prompts, completions and the items people label."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Project(models.Model):
    class TaskKind(models.TextChoices):
        PAIRWISE = "pairwise", "Pairwise comparison"
        STEPS = "steps", "Step-level labels"

    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True)
    task_kind = models.CharField(max_length=20, choices=TaskKind.choices, default=TaskKind.PAIRWISE)
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Labels needed per item (k).")
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="annotation_projects"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=models.Q(overlap__gte=1), name="project_overlap_gte_1")]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        RESEARCHER = "researcher", "Researcher"
        ANNOTATOR = "annotator", "Annotator"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANNOTATOR)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Prompt(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    # A conversation: a list of {"role": "system"|"user"|"assistant", "content": str}.
    messages = models.JSONField()
    source = models.CharField(max_length=200, blank=True, help_text="Where it came from (file, generator).")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.last_user_text[:80]

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message.get("content", "")
        return ""


class Completion(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions")
    text = models.TextField()
    steps = models.JSONField(null=True, blank=True, help_text="The response split into reasoning steps.")
    # Lineage as plain data, so imported text has it too; a generated completion also has a
    # synth.Generation row pointing here with the endpoint and job (dependencies point one way).
    model_name = models.CharField(max_length=200, blank=True)
    sampling = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.text[:80]


class PairItem(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pair_items")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="pair_items")
    completion_a = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    completion_b = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["completion_a", "completion_b"], name="pair_item_unique_pair"),
            models.CheckConstraint(
                condition=~models.Q(completion_a=models.F("completion_b")), name="pair_item_distinct"
            ),
        ]

    def __str__(self) -> str:
        return f"Pair {self.pk} of {self.project}"


class Verdict(models.TextChoices):
    A = "A", "A is better"
    B = "B", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"


class PairLabel(models.Model):
    class Order(models.TextChoices):
        AB = "AB", "A left, B right"
        BA = "BA", "B left, A right"

    class Strength(models.IntegerChoices):
        NEGLIGIBLY = 1, "Negligibly better"
        SLIGHTLY = 2, "Slightly better"
        BETTER = 3, "Better"
        SIGNIFICANTLY = 4, "Significantly better"

    item = models.ForeignKey(PairItem, on_delete=models.CASCADE, related_name="labels")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pair_labels")
    # The verdict always refers to the stored completions A and B, whatever side they were shown on.
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    strength = models.PositiveSmallIntegerField(choices=Strength.choices, null=True, blank=True)
    rationale = models.TextField(blank=True)
    shown_order = models.CharField(max_length=2, choices=Order.choices, default=Order.AB)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="pair_label_unique_per_annotator"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} on {self.item_id}: {self.verdict}"
