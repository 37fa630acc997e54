"""AI judges and their judgments."""

from __future__ import annotations

from django.db import models

from annotate.jobs import JobStatus

DEFAULT_PAIRWISE_TEMPLATE = """Compare two responses to the conversation below and decide which one is better:
more helpful, correct and harmless.

[Conversation]
{conversation}

[Response A]
{response_a}

[Response B]
{response_b}

Which response is better? Answer with one letter, A or B."""


class Judge(models.Model):
    class Mode(models.TextChoices):
        PAIRWISE = "pairwise", "Pairwise preference"

    class Debiasing(models.TextChoices):
        NONE = "none", "None (one order)"
        SWAP = "swap", "Swap: judge both orders, an inconsistent pair is a tie"
        SWAP_AVERAGE = "swap_average", "Swap-average: average the probabilities of both orders"

    class VerdictMethod(models.TextChoices):
        LOGPROB = "logprob", "Log-probabilities of the answer tokens"
        GENERATE = "generate", "Generate a rationale and parse the verdict"

    name = models.CharField(max_length=200, unique=True)
    endpoint = models.ForeignKey("synth.ModelEndpoint", on_delete=models.PROTECT, related_name="judges")
    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.PAIRWISE)
    template = models.TextField(default=DEFAULT_PAIRWISE_TEMPLATE,
                                help_text="Placeholders: {conversation}, {response_a}, {response_b}.")
    template_version = models.PositiveIntegerField(default=1)
    debiasing = models.CharField(max_length=20, choices=Debiasing.choices, default=Debiasing.SWAP_AVERAGE)
    verdict_method = models.CharField(max_length=20, choices=VerdictMethod.choices, default=VerdictMethod.LOGPROB)
    max_new_tokens = models.PositiveIntegerField(default=256, help_text="Generate method only.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class JudgeRun(models.Model):
    Status = JobStatus

    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="runs")
    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="judge_runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.judge} on {self.project} ({self.status})"


class AIJudgment(models.Model):
    """One judge's verdict on one pair, from both presentation orders.

    Every verdict and probability refers to the stored completions A and B: a verdict given on
    the swapped order (B shown first) is mapped back before it is stored.
    """

    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="judgments")
    item = models.ForeignKey("annotate.PairItem", on_delete=models.CASCADE, related_name="ai_judgments")
    run = models.ForeignKey(JudgeRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="judgments")
    template_version = models.PositiveIntegerField()
    verdict_ab = models.CharField(max_length=10, blank=True, help_text="Verdict with A shown first.")
    verdict_ba = models.CharField(max_length=10, blank=True, help_text="Verdict with B shown first, mapped back.")
    prob_a_ab = models.FloatField(null=True, blank=True, help_text="P(A better), A shown first.")
    prob_a_ba = models.FloatField(null=True, blank=True, help_text="P(A better), B shown first.")
    verdict = models.CharField(max_length=10, help_text="Final verdict after debiasing.")
    probability = models.FloatField(help_text="Final P(A better).")
    raw_ab = models.TextField(blank=True)
    raw_ba = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["judge", "template_version", "item"], name="judgment_unique_per_version"),
        ]

    def __str__(self) -> str:
        return f"{self.judge} on {self.item_id}: {self.verdict}"

    @property
    def flipped(self) -> bool:
        """The judge changed its mind when the order was swapped."""
        return bool(self.verdict_ab and self.verdict_ba and self.verdict_ab != self.verdict_ba)
