"""What the snapshot form offers: the choices of its filters, read from the project."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser

from annotate.models import Membership, PairLabel, Project
from annotate.selectors import project_list_for_user
from judges.models import AIJudgment
from synth.models import SynthesisJob
from synth.problems import problems_tags


def export_filter_choices(*, project: Project, user: AbstractBaseUser | None) -> dict[str, list[tuple[str, str]]]:
    """The choices of each filter of a pairwise project's snapshot form: the other pairwise projects the
    user researches, the people who labeled, the judges (by template version) and constitution versions
    that judged, and the project's synthesis jobs."""
    users = get_user_model()
    others = project_list_for_user(user=user) if user is not None else Project.objects.none()
    others = (others.filter(task_kind=project.task_kind, memberships__user=user,
                            memberships__role=Membership.Role.RESEARCHER).exclude(pk=project.pk)
              .order_by("name").distinct())
    labelers = (users.objects.filter(pk__in=PairLabel.objects.filter(item__project=project).values("annotator_id"))
                .order_by(users.USERNAME_FIELD))
    judged = (AIJudgment.objects.filter(item__project=project)
              .values_list("judge_id", "judge__name", "template_version").distinct().order_by("judge__name",
                                                                                              "template_version"))
    constitutions = (AIJudgment.objects.filter(item__project=project, constitution_version__isnull=False)
                     .values_list("constitution_version", flat=True).distinct().order_by("constitution_version"))
    jobs = SynthesisJob.objects.filter(project=project).order_by("-id")[:200]
    return {
        "projects": [(str(p.pk), p.name) for p in others],
        "annotators": [(str(u.pk), u.get_username()) for u in labelers],
        "judges": [(f"{pk}:{version}", f"{name} (v{version})") for pk, name, version in judged],
        "constitution_versions": [(str(v), f"v{v}") for v in constitutions],
        "synthesis_jobs": [(str(job.pk), f"#{job.pk} {job.get_kind_display()} ({job.status})") for job in jobs],
        "tags": [(tag, tag) for tag in problems_tags(project=project)],
    }
