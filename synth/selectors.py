"""Reads of the synth app, scoped to who may use what."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from annotate.models import Project
from synth.models import ModelEndpoint


def endpoints_usable(*, project: Project, user: AbstractBaseUser) -> QuerySet[ModelEndpoint]:
    """The endpoints ``user`` may start work on for ``project``: those not limited to other projects, nor
    to other researchers (superusers: every researcher limit lifted)."""
    endpoints = ModelEndpoint.objects.filter(Q(allowed_projects__isnull=True) | Q(allowed_projects=project))
    if not user.is_superuser:
        endpoints = endpoints.filter(Q(allowed_users__isnull=True) | Q(allowed_users=user))
    return endpoints.distinct().order_by("name")
