"""Reads, always scoped to what the user may see (the permission-checked fetch helpers)."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, Exists, OuterRef, Q, QuerySet, Subquery, When
from django.http import Http404

from annotate.job_lifecycle import job_models
from annotate.jobs import ACTIVE_STATUSES
from annotate.models import ItemSkip, ItemSlot, Membership, PairItem, PairLabel, Project, StepItem, StepLabel
from annotate.services import item_kind

User = AbstractBaseUser | AnonymousUser


def project_list_for_user(*, user: User) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def project_role_for_user(*, project: Project, user: User) -> str | None:
    if user.is_superuser:
        return Membership.Role.RESEARCHER
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def project_get_for_user(*, user: User, project_id: int, role: str | None = None) -> Project:
    """The project if the user is a member with ``role`` (when given); a stranger gets 404, a member who
    lacks the role 403.

    A 404 rather than a 403 for a stranger, so that nobody can probe which projects exist; a member
    knows the project exists, and is told what they lack.
    """
    try:
        project = project_list_for_user(user=user).get(pk=project_id)
    except (Project.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such project.") from None
    if role is not None and project_role_for_user(project=project, user=user) != role:
        raise PermissionDenied(f"Only a {Membership.Role(role).label.lower()} of this project may do this.")
    return project


def pair_item_get_in_project(*, user: User, project_id: int, item_id: int) -> PairItem:
    """An item of a project the user is a member of, with its project, in one query; else 404."""
    items = PairItem.objects.select_related("project").filter(pk=item_id, project_id=project_id)
    if not user.is_superuser:
        items = items.filter(project__memberships__user=user)
    try:
        return items.get()
    except (PairItem.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such item.") from None


def project_stats(*, project: Project, user: User | None = None) -> dict:
    """Counts for the project page: items, open slots, labels (and the user's own)."""
    steps = project.task_kind == Project.TaskKind.STEPS
    items, labels = (StepItem, StepLabel.objects.filter(source=StepLabel.Source.HUMAN)) if steps else (
        PairItem, PairLabel.objects.all())
    counts = items.objects.filter(project=project).aggregate(
        items=Count("id"), gold=Count("id", filter=Q(is_gold=True)))
    counts.update(ItemSlot.objects.filter(project=project).aggregate(
        slots=Count("id"), open_slots=Count("id", filter=Q(done=False))))
    counts["labels"] = labels.filter(item__project=project).count()
    counts["prompts"] = project.prompts.count()
    if user is not None and user.is_authenticated:
        counts["mine"] = labels.filter(item__project=project, annotator=user).count()
    return counts


LEFT_SHOWN_MAX = 1000  # "1,000+ left for you": counted after every label, so the count must not grow with the project

# The jobs that make items, by slug (annotate imports nothing of the apps that define them), and how an
# annotator waiting for them is told: their progress and total count prompts, or rows read.
_ITEM_MAKERS = {"synthesis": "Pairs are still being generated: {progress} of {total} prompts done.",
                "imports": "Items are still being imported: {progress} records read so far."}


def annotator_progress(*, project: Project, user: User) -> dict:
    """What the annotator sees while labeling, in two queries whatever the project size: their labels, and
    the items left for them (an open slot, not labeled or skipped by them; the item on screen included),
    counted up to ``LEFT_SHOWN_MAX``."""
    kind = item_kind(project)
    mine = kind.label_model.objects.filter(item__project=project, annotator=user).count()
    open_slots = (ItemSlot.objects.filter(project=project, done=False)
                  .exclude(Exists(kind.label_model.objects.filter(item=OuterRef(kind.field), annotator=user)))
                  .exclude(Exists(ItemSkip.objects.filter(**{kind.field: OuterRef(kind.field)}, annotator=user))))
    # An item has up to k open slots: k slots a counted item are enough to reach the cap.
    limit = (LEFT_SHOWN_MAX + 1) * max(project.overlap, 1)
    counted = ItemSlot.objects.filter(pk__in=open_slots.values("pk")[:limit]).aggregate(
        slots=Count("pk"), items=Count(kind.field, distinct=True))
    more = counted["items"] > LEFT_SHOWN_MAX or counted["slots"] >= limit
    left = min(counted["items"], LEFT_SHOWN_MAX)
    return {"mine": mine, "left": left, "left_more": more, "left_shown": f"{left:,}{'+' if more else ''}",
            "total": mine + left}


def items_waiting_for(*, project: Project) -> str:
    """Said when nothing is left to label while a job that makes items for the project is queued or running."""
    for model in job_models():
        if model.slug not in _ITEM_MAKERS:
            continue
        job = model.objects.filter(**{model.project_path: project}, status__in=ACTIVE_STATUSES).order_by("-pk").first()
        if job is not None:
            return _ITEM_MAKERS[model.slug].format(progress=job.progress, total=job.total)
    return ""


def pair_label_last_for_annotator(*, project: Project, user: User) -> PairLabel | None:
    """The annotator's most recent label in the project, to undo or edit it."""
    return (PairLabel.objects.filter(item__project=project, annotator=user)
            .select_related("item__prompt", "item__completion_a", "item__completion_b").order_by("-updated_at", "-id")
            .first())


def pair_items_for_project(*, project: Project) -> QuerySet[PairItem]:
    return PairItem.objects.filter(project=project).select_related("prompt", "completion_a", "completion_b")


def step_label_last_for_annotator(*, project: Project, user: User) -> StepLabel | None:
    return (StepLabel.objects.filter(item__project=project, annotator=user).select_related("item__prompt")
            .order_by("-updated_at", "-id").first())


def step_item_get_in_project(*, user: User, project_id: int, item_id: int) -> StepItem:
    """A solution of a project the user is a member of, with its project, in one query; else 404."""
    items = StepItem.objects.select_related("project", "prompt").filter(pk=item_id, project_id=project_id)
    if not user.is_superuser:
        items = items.filter(project__memberships__user=user)
    try:
        return items.get()
    except (StepItem.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such solution.") from None


def job_get_for_user(*, user: User, project_id: int, slug: str, job_id: int):
    """A job of any kind (import, synthesis, judge run, training) of a project the user is a researcher
    of; else 404."""
    from annotate.job_lifecycle import job_model_for_slug

    project = project_get_for_user(user=user, project_id=project_id, role=Membership.Role.RESEARCHER)
    model = job_model_for_slug(slug)
    job = model.objects.filter(pk=job_id, **{model.project_path: project}).first() if model else None
    if job is None:
        raise Http404("No such job.")
    return job


def jobs_for_project(*, project: Project, limit: int = 100) -> list:
    """The project's jobs of every kind, newest first."""
    from annotate.job_lifecycle import job_models

    jobs = [job for model in job_models()
            for job in model.objects.filter(**{model.project_path: project}).order_by("-created_at")[:limit]]
    return sorted(jobs, key=lambda job: job.created_at, reverse=True)[:limit]


def project_create_allowed(*, user: User) -> bool:
    """Whether the user may create projects: the researcher permission (``annotate.roles``)."""
    from annotate.roles import CREATE_PROJECT

    return user.is_authenticated and user.has_perm(CREATE_PROJECT)


def project_memberships(*, project: Project) -> QuerySet[Membership]:
    """The project's members with their accounts: researchers first, then by username."""
    return (Membership.objects.filter(project=project).select_related("user")
            .order_by("-role", "user__username"))  # "researcher" > "annotator"


def membership_get_in_project(*, project: Project, user_id: int) -> Membership:
    """The membership of one account in a project the caller has already been allowed into; else 404."""
    try:
        return Membership.objects.select_related("user", "project").get(project=project, user_id=user_id)
    except (Membership.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such member.") from None


@dataclass(frozen=True)
class ProjectProgress:
    """One project's row on the project list. ``done`` and ``needed`` count labels (the k slots of each
    non-gold item), ``open_items`` the items still short of k labels, ``left`` what the user could still
    label there (items with an open slot they have neither labeled nor skipped)."""

    role: str | None
    items: int = 0
    needed: int = 0
    done: int = 0
    open_items: int = 0
    left: int = 0

    @property
    def is_researcher(self) -> bool:
        return self.role == Membership.Role.RESEARCHER

    @property
    def done_shown(self) -> int:
        """Done labels up to the number needed (a lowered k leaves slots whose labels are already made)."""
        return min(self.done, self.needed)


def project_list_with_progress(*, user: User) -> list[tuple[Project, ProjectProgress]]:
    """The user's projects, each with its progress, in a fixed number of queries whatever the number of
    projects (one for the projects and the user's roles, one per kind of item, one for the slots, and one
    for what is left to the user)."""
    if not user.is_authenticated:
        return []
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    projects = list(project_list_for_user(user=user).annotate(my_role=Subquery(role)))
    if not projects:
        return []
    ids = [project.pk for project in projects]
    items = {row["project"]: row["n"] for model in (PairItem, StepItem)
             for row in model.objects.filter(project__in=ids, is_gold=False).values("project")
             .annotate(n=Count("id")).order_by()}
    slots = {row["project"]: row for row in ItemSlot.objects.filter(project__in=ids).values("project").annotate(
        done_slots=Count("id", filter=Q(done=True)),
        # CASE, not FILTER: SQLite refuses COUNT(DISTINCT ...) FILTER (...).
        open_pairs=Count(Case(When(done=False, then="item")), distinct=True),
        open_steps=Count(Case(When(done=False, then="step_item")), distinct=True)).order_by()}
    annotating = [p.pk for p in projects if p.my_role == Membership.Role.ANNOTATOR]
    left = {}
    if annotating:
        open_slots = (ItemSlot.objects.filter(project__in=annotating, done=False)
                      .exclude(Exists(PairLabel.objects.filter(item=OuterRef("item"), annotator=user)))
                      .exclude(Exists(StepLabel.objects.filter(item=OuterRef("step_item"), annotator=user)))
                      .exclude(Exists(ItemSkip.objects.filter(item=OuterRef("item"), annotator=user)))
                      .exclude(Exists(ItemSkip.objects.filter(step_item=OuterRef("step_item"), annotator=user))))
        left = {row["project"]: row["pairs"] + row["steps"] for row in open_slots.values("project").annotate(
            pairs=Count("item", distinct=True), steps=Count("step_item", distinct=True)).order_by()}
    rows = []
    for project in projects:
        role = Membership.Role.RESEARCHER if user.is_superuser else project.my_role
        counts = slots.get(project.pk, {})
        n_items = items.get(project.pk, 0)
        rows.append((project, ProjectProgress(
            role=role, items=n_items, needed=n_items * project.overlap, done=counts.get("done_slots", 0),
            open_items=counts.get("open_pairs", 0) + counts.get("open_steps", 0), left=left.get(project.pk, 0))))
    return rows
