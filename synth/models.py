"""Model endpoints and the jobs that generate synthetic data with them."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from annotate.jobs import Job


class ModelEndpoint(models.Model):
    class Kind(models.TextChoices):
        TRANSFORMERS = "transformers", "Local transformers model (path or hub id)"
        GGUF = "gguf", "GGUF file (converted once to safetensors)"
        OPENAI = "openai", "OpenAI-compatible HTTP server"
        # Reward models, local only: a sequence-classification head gives one score per response, a
        # token-classification head (a process reward model) one score per reasoning step.
        SCORER = "scorer", "Reward model: one score per response (local sequence classification)"
        STEP_SCORER = "step_scorer", "Process reward model: one score per step (local token classification)"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TRANSFORMERS)
    # transformers: a local directory or a hub id (loaded offline from the local cache);
    # gguf: the path of the .gguf file; openai: the model name sent to the server.
    path = models.CharField(max_length=500, blank=True)
    base_url = models.URLField(blank=True, help_text="OpenAI-compatible servers only, e.g. http://127.0.0.1:8000/v1")
    dtype = models.CharField(max_length=20, default="float32")
    device = models.CharField(max_length=20, default="cpu")
    # HTTP endpoints: the key is stored encrypted (synth.secrets) and never shown back.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    max_concurrency = models.PositiveSmallIntegerField(default=4)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit.")
    timeout_s = models.FloatField(default=60.0)
    max_retries = models.PositiveSmallIntegerField(default=4, help_text="On 429, 5xx and timeouts, with backoff.")
    # Price, for the cost of judgments (currency units per million tokens).
    cost_per_million_input = models.FloatField(default=0.0)
    cost_per_million_output = models.FloatField(default=0.0)
    # Who may spend on it, and how much one run may spend.
    allowed_projects = models.ManyToManyField("annotate.Project", blank=True, related_name="+",
                                              help_text="Only these projects may use it; none chosen: every project.")
    allowed_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+",
                                           help_text="Only these researchers may start work on it; none chosen: "
                                                     "every researcher.")
    # What an HTTP server was found to support when it was last checked (``synth.services.endpoint_probe``):
    # {"models": [...], "n": bool, "logprobs": bool, "top_logprobs": int, "checked_at": iso}.
    capabilities = models.JSONField(default=dict, blank=True, editable=False)
    max_cost_per_run = models.FloatField(
        null=True, blank=True, help_text="A judge run or generation job stops before it spends more than this "
                                         "(currency units, from the prices above); empty: no cap.")
    # Lineage: the training job that produced this model, if any ("training.TrainingJob").
    created_by_job_id = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(kind="openai") | ~models.Q(base_url=""), name="endpoint_openai_needs_base_url"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)

    def clean(self) -> None:
        from synth.secrets import base_url_check, base_url_normalise

        if self.kind == self.Kind.OPENAI:
            self.base_url = base_url_normalise(self.base_url)
            base_url_check(self.base_url)


class CachedResponse(models.Model):
    """A paid request to an HTTP endpoint and its answer: the same request is never paid twice."""

    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.CASCADE, related_name="cached_responses")
    key = models.CharField(max_length=64, help_text="sha256 of the request body")
    response = models.JSONField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    hits = models.PositiveIntegerField(default=0, help_text="Times it was served again instead of paid.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "key"], name="cached_response_unique")]

    def __str__(self) -> str:
        return f"{self.endpoint_id}:{self.key[:12]}"


class Constitution(models.Model):
    """A versioned list of principles (Bai et al. 2022, Constitutional AI, arXiv:2212.08073).

    Any change to its principles raises ``version``: critiques and revisions made here and the
    judgments of AI judges record the version they used.
    """

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Principle(models.Model):
    constitution = models.ForeignKey(Constitution, on_delete=models.CASCADE, related_name="principles")
    name = models.CharField(max_length=200)
    critique_request = models.TextField(help_text="e.g. Identify specific ways the response is harmful.")
    revision_request = models.TextField(help_text="e.g. Rewrite the response to remove harmful content.")
    comparison_question = models.TextField(help_text="e.g. Which response is less harmful?")
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["constitution", "order", "id"]

    def __str__(self) -> str:
        return self.name


class SynthesisJob(Job):
    class Kind(models.TextChoices):
        PAIRS = "pairs", "Sample two completions per prompt and build pairs"
        SAMPLING = "sampling", "Response sampling: N completions per prompt, pairs by a strategy"
        SELF_INSTRUCT = "self_instruct", "Self-Instruct: new instructions from seed tasks"
        EVOL_INSTRUCT = "evol_instruct", "Evol-Instruct: evolve prompts in depth and in breadth"
        MAGPIE = "magpie", "Magpie: instructions drawn from a chat model's user-turn prefix"
        CONSTITUTIONAL = "constitutional", "Constitutional critique and revision (SL-CAI)"
        BEST_OF_N = "best_of_n", "Best-of-N rejection sampling with a reward model"
        TRACES = "traces", "Reasoning traces: k verified samples per problem (rejection sampling, STaR)"
        MATH_SHEPHERD = "math_shepherd", "Math-Shepherd: automatic step labels from rollouts"

    task_name = "synth.tasks.synthesis_job_run_task"
    slug = "synthesis"
    page_url_name = "synth:jobs"
    spends = True

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="synthesis_jobs")
    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="synthesis_jobs")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.PAIRS)
    params = models.JSONField(default=dict, blank=True)
    # The reward model of best-of-N and of scored pair strategies; the constitution of critique/revision.
    scorer = models.ForeignKey(ModelEndpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    constitution = models.ForeignKey(Constitution, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="synthesis_jobs")
    constitution_version = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    cost = models.FloatField(default=0.0, help_text="Spent so far on a paid endpoint (currency units).")
    estimated_cost = models.FloatField(null=True, blank=True,
                                       help_text="At most this, by the estimate made before it started.")
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    seconds = models.FloatField(default=0.0, help_text="Time spent generating, over all its attempts.")
    # What the job found: {"dedup": {...}, "filtered": {reason: count}, "diversity": {...},
    # "best_of_n": [{"n", "mean_best", "kl_bound"}], "rows": {kind: count}, "pass_at_k": {"1": p, "<k>": p}
    # (traces), "agreement": {"steps", "agreed", "share"} (Math-Shepherd against people's labels)}.
    stats = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"


class SynthesisStep(models.Model):
    """A unit of a job's work that is done (a prompt answered, a round of instructions), written in the
    transaction that stores its rows: a job resumed after its worker died skips it, so nothing is stored
    twice. The job's counters (``SynthesisJob.stats``) are updated in the same transaction."""

    job = models.ForeignKey(SynthesisJob, on_delete=models.CASCADE, related_name="steps")
    key = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["job", "key"], name="synthesis_step_unique")]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.key}"


class SyntheticRow(models.Model):
    """A row a synthesis job made, with its lineage: a new prompt (Self-Instruct, Evol-Instruct, Magpie),
    an SFT row (a prompt and its target completion: best-of-N's best, a final revision, a Magpie answer),
    or a preference pair (the pair item). ``depth`` is the generation depth: 1 for a row made from human
    or imported data, one more than its deepest synthetic parent otherwise (model-collapse guard)."""

    class Kind(models.TextChoices):
        PROMPT = "prompt", "New prompt"
        SFT = "sft", "SFT row (prompt, completion)"
        PAIR = "pair", "Preference pair"
        # Math-Shepherd: one a solution, its soft and hard step labels and the rollouts behind them (the
        # StepLabel keeps the hard ratings only, being +1/0/-1).
        STEPS = "steps", "Automatic step labels"

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="synthetic_rows")
    job = models.ForeignKey(SynthesisJob, on_delete=models.CASCADE, related_name="rows")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    prompt = models.ForeignKey("annotate.Prompt", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                               help_text="The new prompt; for an SFT row or a pair, the prompt it answers.")
    step_item = models.ForeignKey("annotate.StepItem", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="+")
    pair_item = models.ForeignKey("annotate.PairItem", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="+")
    messages = models.JSONField(default=list, blank=True, help_text="SFT rows: the prompt conversation.")
    completion = models.TextField(blank=True, help_text="SFT rows: the target completion.")
    endpoint = models.ForeignKey(ModelEndpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    params = models.JSONField(default=dict, blank=True)
    # [{"prompt": id} | {"completion": id} | {"row": id}]: what it was made from.
    parents = models.JSONField(default=list, blank=True)
    depth = models.PositiveSmallIntegerField(default=1)
    meta = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "kind"], name="synthetic_row_project_kind")]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} of job {self.job_id}"


class Generation(models.Model):
    """Which endpoint, job and sampling produced a completion."""

    completion = models.OneToOneField("annotate.Completion", on_delete=models.CASCADE, related_name="generation")
    endpoint = models.ForeignKey(ModelEndpoint, null=True, on_delete=models.SET_NULL, related_name="generations")
    job = models.ForeignKey(SynthesisJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="generations")
    sampling = models.JSONField(default=dict)
    # Lineage: what it was generated from ([{"prompt": id}, {"completion": id}...]) and its generation depth
    # (1 from human or imported input; one more than its deepest synthetic parent otherwise).
    parents = models.JSONField(default=list, blank=True)
    depth = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"completion {self.completion_id} by {self.endpoint_id}"


class Problem(models.Model):
    """A problem with a verifiable answer (RLVR, reasoning traces): a math question and its final answer
    (GSM8K, MATH), or a programming task and its tests (MBPP's assert lines, HumanEval's ``check``
    function with the ``entry_point`` it calls). Imported by ``synth.problems.problems_import``."""

    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        TEST = "test", "Test"

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="problems")
    question = models.TextField()
    answer = models.TextField(blank=True, help_text="The final answer (math); blank for a code problem.")
    # A list of assert lines (MBPP), or one source with ``def check(candidate)`` (HumanEval); null: math.
    tests = models.JSONField(null=True, blank=True)
    entry_point = models.CharField(max_length=200, blank=True)
    tags = models.JSONField(default=list, blank=True)
    # The tags as ",a,b,": a tag filter is a substring test that SQLite and PostgreSQL both index-free run
    # (SQLite has no JSON ``contains``). Written by the import with ``tags``.
    tag_index = models.CharField(max_length=2000, blank=True, editable=False)
    split = models.CharField(max_length=10, choices=Split.choices, default=Split.TRAIN)
    source = models.CharField(max_length=200, blank=True, help_text="The file it came from.")
    metadata = models.JSONField(default=dict, blank=True)
    # The project prompt asking it, made the first time a job samples it (reasoning traces).
    prompt = models.ForeignKey("annotate.Prompt", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "split"], name="problem_project_split")]
        constraints = [
            models.CheckConstraint(condition=~models.Q(answer="") | models.Q(tests__isnull=False),
                                   name="problem_has_answer_or_tests"),
            models.CheckConstraint(condition=models.Q(split__in=["train", "test"]), name="problem_split_valid"),
        ]

    def __str__(self) -> str:
        return f"Problem {self.pk}: {self.question[:60]}"

    @property
    def kind(self) -> str:
        """"code" when it has tests, else "math"."""
        return "math" if self.tests is None else "code"

    @property
    def test_count(self) -> int:
        """Its tests: assert lines, or 1 for a HumanEval check function."""
        if self.tests is None:
            return 0
        return 1 if isinstance(self.tests, str) else len(self.tests)
