"""Reads of the synth app, scoped to who may use what."""

from __future__ import annotations

from collections.abc import Iterator

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Max, Q, QuerySet
from django.http import Http404

from annotate.models import Completion, Membership, Project, Prompt
from annotate.roles import permission_require
from annotate.selectors import project_get_for_user
from synth.models import Generation, ModelEndpoint, SynthesisJob, SyntheticRow


def endpoints_usable(*, project: Project, user: AbstractBaseUser) -> QuerySet[ModelEndpoint]:
    """The endpoints ``user`` may start work on for ``project``: those not limited to other projects, nor
    to other researchers (superusers: every researcher limit lifted)."""
    endpoints = ModelEndpoint.objects.filter(Q(allowed_projects__isnull=True) | Q(allowed_projects=project))
    if not user.is_superuser:
        endpoints = endpoints.filter(Q(allowed_users__isnull=True) | Q(allowed_users=user))
    return endpoints.distinct().order_by("name")


def endpoints_for_user(*, user: AbstractBaseUser) -> QuerySet[ModelEndpoint]:
    """The endpoints a researcher may see (every one not kept to other researchers); PermissionDenied for
    those who may not see endpoints at all (annotators)."""
    permission_require(user=user, permission="synth.view_modelendpoint", doing="see the model endpoints")
    endpoints = ModelEndpoint.objects.all()
    if not user.is_superuser:
        endpoints = endpoints.filter(Q(allowed_users__isnull=True) | Q(allowed_users=user)).distinct()
    return endpoints.order_by("name")


def endpoint_get_for_user(*, user: AbstractBaseUser, endpoint_id: int) -> ModelEndpoint:
    endpoint = endpoints_for_user(user=user).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise Http404("No such endpoint.")
    return endpoint


def prompt_depths(*, prompt_ids: list[int]) -> dict[int, int]:
    """The generation depth of each prompt a synthesis job made (others: 0, human or imported)."""
    rows = SyntheticRow.objects.filter(kind=SyntheticRow.Kind.PROMPT, prompt_id__in=prompt_ids)
    return dict(rows.values_list("prompt_id", "depth"))


def synthesis_jobs_for_project(*, project: Project) -> QuerySet[SynthesisJob]:
    """The project's synthesis jobs, newest first (the caller has checked the user may see the project)."""
    return SynthesisJob.objects.filter(project=project).select_related("endpoint", "scorer", "constitution")


def synthesis_job_get_for_user(*, user: AbstractBaseUser, job_id: int) -> SynthesisJob:
    """A synthesis job of a project where ``user`` is a researcher; 404 otherwise."""
    job = SynthesisJob.objects.select_related("endpoint", "scorer", "constitution", "project").filter(
        pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    project_get_for_user(user=user, project_id=job.project_id, role=Membership.Role.RESEARCHER)
    return job


def synthetic_sft_rows(*, project: Project, job: SynthesisJob | None = None) -> Iterator[dict]:
    """The SFT rows synthesis made for the project (TRL's prompt-completion form, conversational), with their
    lineage: {"prompt", "completion", "job", "depth", "meta"}; for exports and snapshots."""
    rows = SyntheticRow.objects.filter(project=project, kind=SyntheticRow.Kind.SFT)
    if job is not None:
        rows = rows.filter(job=job)
    for row in rows.order_by("id").iterator(chunk_size=2000):
        yield {"prompt": row.messages, "completion": [{"role": "assistant", "content": row.completion}],
               "job": row.job_id, "depth": row.depth, "meta": row.meta}


def synthetic_share(*, project: Project) -> dict:
    """How much of the project's prompts and completions synthesis made, and how deep (model collapse guard):
    {"prompts", "synthetic_prompts", "completions", "synthetic_completions", "max_depth", "share"}."""
    prompts = Prompt.objects.filter(project=project).count()
    synthetic_prompts = SyntheticRow.objects.filter(project=project, kind=SyntheticRow.Kind.PROMPT).count()
    completions = Completion.objects.filter(prompt__project=project).count()
    synthetic_completions = Generation.objects.filter(completion__prompt__project=project).count()
    depth = max(SyntheticRow.objects.filter(project=project).aggregate(d=Max("depth"))["d"] or 0,
                Generation.objects.filter(completion__prompt__project=project).aggregate(d=Max("depth"))["d"] or 0)
    total = prompts + completions
    return {"prompts": prompts, "synthetic_prompts": synthetic_prompts, "completions": completions,
            "synthetic_completions": synthetic_completions, "max_depth": depth,
            "share": round((synthetic_prompts + synthetic_completions) / total, 4) if total else 0.0}
