"""Reads of the judges app, scoped to who may use what."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from annotate.models import Project
from judges.models import Judge
from judges.services import MODE_TASK_KINDS
from synth.selectors import endpoints_usable


def judges_for_project(*, project: Project, user: AbstractBaseUser) -> QuerySet[Judge]:
    """The judges ``user`` may see, change and run on ``project`` (the caller checked their role there):
    those whose endpoint is open to them on the project and whose mode fits its task kind."""
    modes = [mode for mode, kind in MODE_TASK_KINDS.items() if kind == project.task_kind]
    return Judge.objects.filter(endpoint__in=endpoints_usable(project=project, user=user), mode__in=modes)
