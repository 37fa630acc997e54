"""Who may spend: the researcher permission.

Annotators label and see their own work. Creating projects, model endpoints, judges and constitutions, and
starting (or retrying) judge runs, synthesis and training, spend compute or money: they need the
researcher's permissions, given by the ``Researchers`` group (``manage.py researchers add NAME``; the demo
makes the group too). On top of that, work on a project needs its researcher role (``Membership``).
Permissions are Django's own: superusers have them all.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.core.exceptions import PermissionDenied
from django.db import transaction

RESEARCHERS_GROUP = "Researchers"
# app_label.codename; the admin pages of these models need them too (with is_staff).
RESEARCHER_PERMISSIONS = (
    "annotate.add_project", "annotate.change_project", "annotate.view_project",
    "synth.add_modelendpoint", "synth.change_modelendpoint", "synth.view_modelendpoint",
    "synth.add_constitution", "synth.change_constitution", "synth.view_constitution",
    "synth.add_principle", "synth.change_principle", "synth.delete_principle", "synth.view_principle",
    "synth.add_synthesisjob", "synth.view_synthesisjob",
    "judges.add_judge", "judges.change_judge", "judges.view_judge",
    "judges.add_judgerun", "judges.view_judgerun", "judges.view_aijudgment",
    "training.add_trainingjob", "training.change_trainingjob", "training.view_trainingjob",
    "training.view_datasetsnapshot",
)
# What starting work of each kind needs (a job model's ``app_label.add_<model>``).
CREATE_PROJECT = "annotate.add_project"


def researchers_group_ensure() -> Group:
    """The Researchers group with its permissions (made or completed; idempotent)."""
    group, _ = Group.objects.get_or_create(name=RESEARCHERS_GROUP)
    wanted = []
    for name in RESEARCHER_PERMISSIONS:
        app_label, codename = name.split(".")
        permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
        if permission is not None:
            wanted.append(permission)
    group.permissions.add(*wanted)
    return group


@transaction.atomic
def researcher_grant(*, user: AbstractBaseUser) -> None:
    """Make ``user`` a researcher: the Researchers group, and staff, for the admin where judges, endpoints
    and training jobs are configured."""
    user.groups.add(researchers_group_ensure())
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])


@transaction.atomic
def researcher_revoke(*, user: AbstractBaseUser) -> None:
    user.groups.remove(researchers_group_ensure())
    if user.is_staff and not user.is_superuser:
        user.is_staff = False
        user.save(update_fields=["is_staff"])


def permission_require(*, user: AbstractBaseUser, permission: str, doing: str) -> None:
    """PermissionDenied (403), saying what needs which permission, unless ``user`` has it."""
    if not user.has_perm(permission):
        raise PermissionDenied(f"Only researchers may {doing} (it needs the permission {permission}; "
                               f"an administrator grants it with: manage.py researchers add <username>).")


def job_start_permission(model: type) -> str:
    """The permission that starting (or retrying) a job of this kind needs: ``app_label.add_<model>``."""
    return f"{model._meta.app_label}.add_{model._meta.model_name}"
