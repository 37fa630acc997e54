"""Reads of the synth app, scoped to who may use what."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.http import Http404

from annotate.models import Project
from annotate.roles import permission_require
from synth.models import ModelEndpoint


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
