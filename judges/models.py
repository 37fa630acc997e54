"""AI judges and their judgments."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from annotate.jobs import Job

DEFAULT_PAIRWISE_TEMPLATE = """Compare two responses to the conversation below and decide which one is better:
more helpful, correct and harmless.

[Conversation]
{conversation}

[Response A]
{response_a}

[Response B]
{response_b}

{question} Answer with one letter, A or B."""

DEFAULT_QUESTION = "Which response is better?"

# How many unreadable answers a judge run keeps to show, and how much of each.
UNPARSED_EXAMPLES = 5
UNPARSED_EXAMPLE_CHARS = 400

DEFAULT_POINTWISE_TEMPLATE = """Rate the response to the conversation below for how helpful, correct and harmless it is.

[Conversation]
{conversation}

[Response]
{response}

{question} Answer with a number from 1 (worst) to 10 (best)."""


DEFAULT_STEP_TEMPLATE = """Check a solution to the problem below one step at a time.

[Problem]
{conversation}

[Solution so far]
{steps}

Is step {number} correct and a sound continuation of the steps before it? Answer Yes or No."""


@dataclass(frozen=True)
class TemplateSpec:
    """What a mode's template may and must contain."""

    field: str
    allowed: tuple[str, ...]
    required: tuple[tuple[str, ...], ...]  # one of each group


# Per mode: its template field and placeholders (what judges.services substitutes for that mode).
MODE_TEMPLATES = {
    "pairwise": TemplateSpec(field="pairwise_template",
                             allowed=("conversation", "response_a", "response_b", "question"),
                             required=(("response_a",), ("response_b",))),
    "pointwise": TemplateSpec(field="pointwise_template", allowed=("conversation", "response", "question"),
                              required=(("response",),)),
    "steps": TemplateSpec(field="step_template", allowed=("conversation", "steps", "number", "step"),
                          required=(("steps", "step"),)),
}

_PLACEHOLDER_ANY = re.compile(r"\{(\w+)\}")


def _braced(names: tuple[str, ...] | list[str], sep: str = ", ") -> str:
    return sep.join(f"{{{n}}}" for n in names)


def _template_help_text(spec: TemplateSpec) -> str:
    needs = " and ".join(_braced(group, " or ") for group in spec.required)
    return f"Placeholders: {_braced(spec.allowed)}; needs {needs}."


def template_check(template: str, *, spec: TemplateSpec) -> str | None:
    """Why ``template`` does not fit its mode (a missing or unknown placeholder), or None."""
    used = set(_PLACEHOLDER_ANY.findall(template))
    unknown = sorted(used - set(spec.allowed))
    if unknown:
        return f"Unknown placeholder {_braced(unknown)} for this mode; allowed: {_braced(spec.allowed)}."
    missing = [group for group in spec.required if not used & set(group)]
    if missing:
        return f"Missing placeholder {' and '.join(_braced(group, ' or ') for group in missing)}."
    return None


class Judge(models.Model):
    class Mode(models.TextChoices):
        PAIRWISE = "pairwise", "Pairwise preference"
        POINTWISE = "pointwise", "Pointwise score 1-10 of each response"
        STEPS = "steps", "Step-level verdicts: is each reasoning step correct?"

    class PrincipleUse(models.TextChoices):
        SAMPLE_ONE = "sample_one", "One principle per judgment (sampled, reproducibly)"
        ALL = "all", "Every principle, probabilities averaged"

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
    # One template per mode: the judge uses the one of its mode (``active_template``).
    pairwise_template = models.TextField(default=DEFAULT_PAIRWISE_TEMPLATE,
                                         help_text=_template_help_text(MODE_TEMPLATES["pairwise"]))
    pointwise_template = models.TextField(default=DEFAULT_POINTWISE_TEMPLATE,
                                          help_text=_template_help_text(MODE_TEMPLATES["pointwise"]))
    step_template = models.TextField(default=DEFAULT_STEP_TEMPLATE,
                                     help_text=_template_help_text(MODE_TEMPLATES["steps"]))
    template_version = models.PositiveIntegerField(
        default=1, help_text="Raised by every change of what the judge does; one judgment per version and item.")
    constitution = models.ForeignKey("synth.Constitution", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="judges")
    constitution_version = models.PositiveIntegerField(
        null=True, blank=True, editable=False,
        help_text="The constitution's version when the template version was set: when the constitution moves on, "
                  "the judge takes a new template version (judges.services.judge_version_sync).")
    principle_use = models.CharField(max_length=20, choices=PrincipleUse.choices, default=PrincipleUse.SAMPLE_ONE)
    debiasing = models.CharField(max_length=20, choices=Debiasing.choices, default=Debiasing.SWAP_AVERAGE)
    verdict_method = models.CharField(max_length=20, choices=VerdictMethod.choices, default=VerdictMethod.LOGPROB)
    votes = models.PositiveSmallIntegerField(
        default=1, help_text="Self-consistency: samples per order (generate method), majority vote.")
    temperature = models.FloatField(default=0.0, help_text="Sampling temperature when votes > 1.")
    max_new_tokens = models.PositiveIntegerField(default=256, help_text="Generate method only.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # What a judgment depends on: a change to any of these, or to the template of the judge's mode
    # (``active_template_field``), raises template_version. The templates of other modes do not count.
    VERSIONED_FIELDS = ("endpoint_id", "mode", "constitution_id", "principle_use", "debiasing",
                        "verdict_method", "votes", "temperature", "max_new_tokens")

    @property
    def active_template_field(self) -> str:
        return MODE_TEMPLATES[self.mode].field

    @property
    def active_template(self) -> str:
        """The template of the judge's mode."""
        return getattr(self, self.active_template_field)

    def clean(self) -> None:
        # Only the template of the judge's mode is used, so only it must fit the mode.
        spec = MODE_TEMPLATES.get(self.mode)
        if spec is not None:
            error = template_check(getattr(self, spec.field), spec=spec)
            if error:
                raise ValidationError({spec.field: error})
        if error := self.endpoint_mismatch():
            raise ValidationError({"verdict_method": error})

    def endpoint_mismatch(self) -> str:
        """Why the judge's endpoint cannot serve its verdict method ("" if it can): a server found not to
        return log-probabilities cannot serve the log-probability method."""
        if self.verdict_method != self.VerdictMethod.LOGPROB or not self.endpoint_id:
            return ""
        capabilities = self.endpoint.capabilities or {}
        if capabilities.get("logprobs") is False:
            checked = capabilities.get("checked_at", "when it was last used")
            return (f"the endpoint {self.endpoint.name!r} returns no log-probabilities (checked {checked}): use "
                    f"'Generate a rationale and parse the verdict', or an endpoint that returns them")
        return ""


class JudgeRun(Job):
    task_name = "judges.tasks.judge_run_execute_task"
    slug = "judge-runs"
    page_url_name = "judges:runs"
    spends = True

    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="runs")
    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="judge_runs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    cost = models.FloatField(default=0.0, help_text="Spent so far on a paid endpoint (currency units).")
    # Generate method: what the run could not read from the judge's answers (a verdict, a score, a yes/no).
    answers = models.PositiveIntegerField(default=0, help_text="Generated answers read (generate method).")
    unparsed = models.PositiveIntegerField(
        default=0, help_text="Generated answers with no verdict, score or yes/no found in them: counted as a tie.")
    unparsed_examples = models.JSONField(
        default=list, blank=True, help_text=f"Up to {UNPARSED_EXAMPLES} of them, trimmed (model text: untrusted).")

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
    constitution_version = models.PositiveIntegerField(null=True, blank=True)
    principles = models.JSONField(default=list, blank=True, help_text="Names of the principles applied.")
    votes = models.JSONField(default=list, blank=True,
                             help_text="Each sample's verdict about A/B, both orders (self-consistency).")
    vote_share = models.FloatField(null=True, blank=True, help_text="Share of votes for the final verdict.")
    score_a = models.FloatField(null=True, blank=True, help_text="Pointwise mode: score of A (1-10).")
    score_b = models.FloatField(null=True, blank=True, help_text="Pointwise mode: score of B (1-10).")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.FloatField(default=0.0)
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
