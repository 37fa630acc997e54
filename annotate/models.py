"""Projects, prompts, completions and the items people label."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from annotate.jobs import Job
from annotate.labels import ShownOrder, Strength, Verdict


class Project(models.Model):
    class TaskKind(models.TextChoices):
        PAIRWISE = "pairwise", "Pairwise comparison"
        STEPS = "steps", "Step-level labels"

    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True)
    task_kind = models.CharField(max_length=20, choices=TaskKind.choices, default=TaskKind.PAIRWISE)
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Labels needed per item (k).")
    criteria = models.JSONField(default=list, blank=True,
                                help_text='Optional per-criterion verdicts, e.g. ["helpfulness", "harmlessness"].')
    gold_rate = models.FloatField(default=0.0, help_text="Share of served items that are gold (honeypot) items.")
    lease_minutes = models.PositiveIntegerField(default=30, help_text="An unanswered item returns after this long.")
    class StepMode(models.TextChoices):
        RATE_ALL = "rate_all", "Rate every step"
        FIRST_ERROR = "first_error", "Stop at the first error (PRM800K): later steps stay unlabeled"

    step_mode = models.CharField(max_length=20, choices=StepMode.choices, default=StepMode.RATE_ALL)
    show_reference = models.BooleanField(
        default=True, help_text="Steps projects: show the reference answer and solution to annotators.")
    annotator_hourly_rate = models.FloatField(
        default=15.0, help_text="What an annotator hour costs, to compare human and AI labels per label.")
    prioritize_disagreements = models.BooleanField(
        default=False, help_text="Serve first the pairs whose AI judgments disagree or flip with the order.")
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="annotation_projects"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(overlap__gte=1), name="project_overlap_gte_1"),
            models.CheckConstraint(condition=models.Q(gold_rate__gte=0, gold_rate__lte=1),
                                   name="project_gold_rate_0_1"),
        ]

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
    # The import that stored it (lineage, and the proof that an import was committed once). No database
    # constraint and no index: checked per row and maintained per row, they would slow every import.
    import_job = models.ForeignKey("ImportJob", null=True, blank=True, on_delete=models.DO_NOTHING,
                                   db_constraint=False, db_index=False, related_name="+")
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


class Adjudicated(models.Model):
    """Who settled a disagreement on an item, and when (pairs and step solutions alike)."""

    adjudicated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+")
    adjudicated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class PairItem(Adjudicated):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pair_items")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="pair_items")
    completion_a = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    completion_b = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    # Gold (honeypot) items have a known answer; every annotator may get them, they fill no slot.
    is_gold = models.BooleanField(default=False, db_default=False)
    gold_verdict = models.CharField(max_length=10, blank=True, default="", db_default="")
    # Set by a reviewer who adjudicated a disagreement: it overrides the aggregate of the labels.
    final_verdict = models.CharField(max_length=10, blank=True, default="", db_default="")
    final_strength = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(Adjudicated.Meta):
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["completion_a", "completion_b"], name="pair_item_unique_pair"),
            models.CheckConstraint(
                condition=~models.Q(completion_a=models.F("completion_b")), name="pair_item_distinct"
            ),
            models.CheckConstraint(condition=~models.Q(is_gold=True, gold_verdict=""),
                                   name="pair_item_gold_has_answer"),
        ]

    def __str__(self) -> str:
        return f"Pair {self.pk} of {self.project}"


class PairLabel(models.Model):
    """One annotator's label of a pair; what its fields may hold is defined in ``annotate.labels``."""

    Order = ShownOrder
    Strength = Strength

    item = models.ForeignKey(PairItem, on_delete=models.CASCADE, related_name="labels")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pair_labels")
    # The verdict always refers to the stored completions A and B, whatever side they were shown on.
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    strength = models.PositiveSmallIntegerField(choices=Strength.choices, null=True, blank=True)
    rationale = models.TextField(blank=True)
    criteria = models.JSONField(default=dict, blank=True, help_text='Per-criterion verdicts: {"harmlessness": "B"}.')
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


class StepItem(Adjudicated):
    """A problem and a solution split into reasoning steps, for process reward models (PRM800K style)."""

    class SplitRule(models.TextChoices):
        GIVEN = "given", "Given as a list"
        BLANK_LINES = "blank_lines", "Blank lines"
        NUMBERED = "numbered", 'Numbered "Step k:"'
        LINES = "lines", "One step per line"
        SENTENCES = "sentences", "Sentences"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="step_items")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="step_items")
    steps = models.JSONField(help_text="The solution's steps, in order (list of strings).")
    solution_text = models.TextField(blank=True, help_text="The unsplit solution, kept for re-splitting.")
    split_rule = models.CharField(max_length=20, choices=SplitRule.choices, default=SplitRule.GIVEN)
    reference_answer = models.TextField(blank=True)
    ground_truth_solution = models.TextField(blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    is_gold = models.BooleanField(default=False)
    gold_ratings = models.JSONField(null=True, blank=True, help_text="Known ratings (+1/0/-1/null) of a gold item.")
    # A reviewer's step-by-step adjudication, used by exports instead of the aggregate.
    final_ratings = models.JSONField(null=True, blank=True)
    final_outcome = models.CharField(max_length=10, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(Adjudicated.Meta):
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=~models.Q(is_gold=True, gold_ratings=None),
                                              name="step_item_gold_has_answer")]

    def __str__(self) -> str:
        return f"Solution {self.pk} of {self.project} ({len(self.steps)} steps)"


class StepLabel(models.Model):
    """Ratings of every step of a solution by one source: a person, an AI judge or an automatic method.

    ``ratings[i]`` is +1 (correct and useful), 0 (reasonable, no progress), -1 (wrong) or None
    (not labeled: the steps after the first error in first-error mode)."""

    class Source(models.TextChoices):
        HUMAN = "human", "Person"
        AI = "ai", "AI judge"
        AUTO = "auto", "Automatic method (e.g. Monte-Carlo rollouts)"

    class FinishReason(models.TextChoices):
        SOLUTION = "solution", "Solution reached"
        FOUND_ERROR = "found_error", "Found an error"
        BAD_PROBLEM = "bad_problem", "Bad problem"
        GAVE_UP = "gave_up", "Gave up"

    class Outcome(models.TextChoices):
        CORRECT = "correct", "Final answer correct"
        INCORRECT = "incorrect", "Final answer incorrect"
        UNKNOWN = "", "Not judged"

    item = models.ForeignKey(StepItem, on_delete=models.CASCADE, related_name="labels")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="step_labels")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.HUMAN)
    source_name = models.CharField(max_length=200, blank=True, help_text="Judge or method name (AI, automatic).")
    ratings = models.JSONField()
    flags = models.JSONField(default=list, blank=True, help_text="Steps flagged for a second look (indexes).")
    finish_reason = models.CharField(max_length=20, choices=FinishReason.choices, default=FinishReason.SOLUTION)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True, default="")
    corrected_step_index = models.PositiveSmallIntegerField(null=True, blank=True)
    corrected_step = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], condition=models.Q(annotator__isnull=False),
                                    name="step_label_unique_per_annotator"),
            models.UniqueConstraint(fields=["item", "source", "source_name"],
                                    condition=models.Q(annotator__isnull=True), name="step_label_unique_per_method"),
            models.CheckConstraint(condition=~models.Q(source="human", annotator__isnull=True),
                                   name="step_label_human_has_annotator"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator or self.source_name} on solution {self.item_id}"

    @property
    def first_error(self) -> int | None:
        """Index of the first -1 step, or None."""
        from prefdata.steps import first_error

        return first_error(self.ratings)


class ItemSlot(models.Model):
    """One of the k labels an item needs, leased to one annotator at a time.

    Serving the next item claims a free slot with ``SELECT ... FOR UPDATE SKIP LOCKED`` (on
    PostgreSQL), so two annotators asking at the same moment never get the same slot; a lease that
    runs out frees the slot for someone else.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    # Exactly one of the two: the same assignment serves pairwise and step projects.
    item = models.ForeignKey(PairItem, null=True, blank=True, on_delete=models.CASCADE, related_name="slots")
    step_item = models.ForeignKey("StepItem", null=True, blank=True, on_delete=models.CASCADE, related_name="slots")
    number = models.PositiveSmallIntegerField()
    priority = models.IntegerField(default=0, db_default=0)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    leased_until = models.DateTimeField(null=True, blank=True)
    done = models.BooleanField(default=False, db_default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "number"], name="slot_unique_number"),
            models.UniqueConstraint(fields=["step_item", "number"], name="slot_unique_step_number"),
            models.CheckConstraint(condition=models.Q(item__isnull=True) ^ models.Q(step_item__isnull=True),
                                   name="slot_one_item"),
        ]
        indexes = [
            models.Index(fields=["project", "done", "-priority", "id"], name="slot_queue"),
            models.Index(fields=["annotator", "done"], name="slot_annotator"),
        ]

    def __str__(self) -> str:
        return f"slot {self.number} of item {self.item_id or self.step_item_id}"


class ItemSkip(models.Model):
    """An item an annotator chose to skip: it is not served to them again."""

    item = models.ForeignKey(PairItem, null=True, blank=True, on_delete=models.CASCADE, related_name="skips")
    step_item = models.ForeignKey("StepItem", null=True, blank=True, on_delete=models.CASCADE, related_name="skips")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="skip_unique"),
            models.UniqueConstraint(fields=["step_item", "annotator"], name="skip_unique_step"),
            models.CheckConstraint(condition=models.Q(item__isnull=True) ^ models.Q(step_item__isnull=True),
                                   name="skip_one_item"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} skipped {self.item_id or self.step_item_id}"


class ImportJob(Job):
    """A file imported by a worker, all of it or nothing, with progress for the page."""

    task_name = "annotate.tasks.import_job_run_task"
    slug = "imports"
    page_url_name = "annotate:import"
    # ``progress`` counts rows read, ``total`` the file's bytes: no percentage of one by the other.
    progress_of_total = False

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    file_name = models.CharField(max_length=300)
    path = models.CharField(max_length=500, help_text="The uploaded file, under MEDIA_ROOT.")
    format = models.CharField(max_length=30, default="auto")
    progress = models.PositiveIntegerField(default=0, help_text="Rows read so far.")
    total = models.PositiveIntegerField(default=0, help_text="Bytes of the file.")
    items = models.PositiveIntegerField(default=0)
    options = models.JSONField(
        default=dict, blank=True,
        help_text='Choices made for this import: {"context_differs": "reject" | "keep", '
                  '"identical": "reject" | "skip"}.')
    mapping = models.JSONField(
        default=dict, blank=True,
        help_text='The column mapping of a "mapped" import: {"columns": {field: column}, "gold_values": '
                  '{value: verdict}, "split": rule} (prefdata.readers.mapped.ColumnMapping); {} for the others.')
    summary = models.JSONField(
        default=dict, blank=True,
        help_text="What the import read and left aside: records, items, ignored fields (name: records), pairs kept "
                  "flagged or skipped.")

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"import {self.file_name} ({self.status})"
