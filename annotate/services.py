"""Writes: projects, prompts, completions, pair items and labels."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from annotate.labels import (
    ShownOrder,
    corrected_step_check,
    criteria_clean,
    pair_label_clean,
    time_spent_check,
)
from annotate.models import (
    Completion,
    ItemSkip,
    ItemSlot,
    Membership,
    PairItem,
    PairLabel,
    Project,
    Prompt,
    StepItem,
    StepLabel,
)
from prefdata.records import STEP_RATINGS, conversation_validate, text_clean
from prefdata.steps import finish_reason_for, first_error, ratings_stop_at_first_error

# Bounds of a project's settings (the API's schema shows them): k labels per item make k slots per item.
OVERLAP_MAX = 100
LEASE_MINUTES_MAX = 30 * 24 * 60
PROJECT_NAME_MAX_LENGTH = Project._meta.get_field("name").max_length


def project_settings_clean(*, project: Project | None, fields: dict) -> dict:
    """Project settings checked (for a new project when ``project`` is None), or ValidationError naming
    the field. Changing the task kind of a project that has items is refused: its items, slots and labels
    are of the other kind."""
    clean = dict(fields)
    errors: dict[str, str] = {}
    if "name" in fields:
        name = fields["name"]
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > PROJECT_NAME_MAX_LENGTH:
            errors["name"] = f"expected a name of 1 to {PROJECT_NAME_MAX_LENGTH} characters"
        else:
            clean["name"] = text_clean(name.strip())
            others = Project.objects.filter(name=clean["name"])
            if project is not None:
                others = others.exclude(pk=project.pk)
            if others.exists():
                errors["name"] = "a project with this name already exists"
    if "guidelines" in fields:
        if not isinstance(fields["guidelines"], str):
            errors["guidelines"] = "expected text"
        else:
            clean["guidelines"] = text_clean(fields["guidelines"])
    if "task_kind" in fields:
        kind = fields["task_kind"]
        if kind not in Project.TaskKind.values:
            errors["task_kind"] = f"{kind!r} is not one of {Project.TaskKind.values}"
        elif project is not None and kind != project.task_kind and (
                project.pair_items.exists() or project.step_items.exists()):
            errors["task_kind"] = (f"this project already has {project.task_kind} items: its task kind can no "
                                   f"longer change (create another project)")
    if "overlap" in fields:
        overlap = fields["overlap"]
        if type(overlap) is not int or not 1 <= overlap <= OVERLAP_MAX:
            errors["overlap"] = f"expected a whole number of labels per item, 1 to {OVERLAP_MAX}"
    if "gold_rate" in fields:
        rate = fields["gold_rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            errors["gold_rate"] = "expected a share of served items, 0 to 1"
        else:
            clean["gold_rate"] = float(rate)
    if "lease_minutes" in fields:
        minutes = fields["lease_minutes"]
        if type(minutes) is not int or not 1 <= minutes <= LEASE_MINUTES_MAX:
            errors["lease_minutes"] = f"expected a whole number of minutes, 1 to {LEASE_MINUTES_MAX}"
    if "step_mode" in fields and fields["step_mode"] not in Project.StepMode.values:
        errors["step_mode"] = f"{fields['step_mode']!r} is not one of {Project.StepMode.values}"
    if "prioritize_disagreements" in fields and not isinstance(fields["prioritize_disagreements"], bool):
        errors["prioritize_disagreements"] = "expected true or false"
    if "criteria" in fields:
        try:
            clean["criteria"] = criteria_clean(fields["criteria"])
        except ValidationError as exc:
            errors.update({field: messages[0] for field, messages in exc.message_dict.items()})
    if errors:
        raise ValidationError(errors)
    return clean


@transaction.atomic
def project_create(*, name: str, created_by: AbstractBaseUser | None = None, guidelines: str = "",
                   task_kind: str = Project.TaskKind.PAIRWISE, overlap: int = 1, criteria: list[str] | None = None,
                   gold_rate: float = 0.0, lease_minutes: int = 30, prioritize_disagreements: bool = False,
                   step_mode: str = Project.StepMode.RATE_ALL) -> Project:
    fields = project_settings_clean(project=None, fields={
        "name": name, "guidelines": guidelines, "task_kind": task_kind, "overlap": overlap,
        "criteria": list(criteria or []), "gold_rate": gold_rate, "lease_minutes": lease_minutes,
        "prioritize_disagreements": prioritize_disagreements, "step_mode": step_mode})
    project = Project.objects.create(**fields)
    if created_by is not None:
        project_member_add(project=project, user=created_by, role=Membership.Role.RESEARCHER)
    return project


@transaction.atomic
def project_update(*, project: Project, **fields) -> Project:
    """Change project settings; a larger overlap k gives every item its new slots."""
    fields = project_settings_clean(project=project, fields=fields)
    for name, value in fields.items():
        setattr(project, name, value)
    project.full_clean()
    project.save()
    if "overlap" in fields:
        slots_ensure(project=project)
    return project


def project_member_add(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


# --- Members: who works on a project, and in which role ---------------------------------------------------

GENERATED_PASSWORD_BYTES = 12  # 16 characters of token_urlsafe: 96 bits


class MembershipConflict(ValidationError):
    """Refused because of what is stored (a member already, a username taken, the last researcher): the API
    answers it 409, the pages show it by its field as any ValidationError."""


def _role_check(role: object) -> str:
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"{role!r} is not one of {Membership.Role.values}"})
    return role


def _researchers_locked(project: Project) -> list[int]:
    """The ids of the project's researcher memberships, locked until the transaction ends: two researchers
    stepping down at the same moment cannot leave the project with none."""
    return list(Membership.objects.select_for_update().filter(project=project, role=Membership.Role.RESEARCHER)
                .order_by("pk").values_list("pk", flat=True))


def user_find(*, identifier: str) -> AbstractBaseUser:
    """The account with this username, or else this email address (case-insensitive); ValidationError on
    ``user`` when there is none, or when several accounts share the address."""
    User = get_user_model()
    identifier = (identifier or "").strip()
    if not identifier:
        raise ValidationError({"user": "give a username or an email address"})
    user = User.objects.filter(username=identifier).first() or User.objects.filter(
        username__iexact=identifier).first()
    if user is not None:
        return user
    if "@" in identifier:
        matches = list(User.objects.filter(email__iexact=identifier)[:2])
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValidationError({"user": "several accounts have this email address: give the username"})
    raise ValidationError({"user": f"no account is called {identifier!r} or has that email address "
                                   f"(create an annotator account instead)"})


@transaction.atomic
def membership_invite(*, project: Project, identifier: str, role: str = Membership.Role.ANNOTATOR) -> Membership:
    """Add an existing account (by username or email) to the project; ValidationError if it is a member."""
    role = _role_check(role)
    user = user_find(identifier=identifier)
    if Membership.objects.filter(project=project, user=user).exists():
        raise MembershipConflict({"user": f"{user.get_username()} is already a member of this project"})
    return Membership.objects.create(project=project, user=user, role=role)


@transaction.atomic
def annotator_account_create(*, project: Project, username: str, email: str = "", password: str = "",
                             role: str = Membership.Role.ANNOTATOR) -> tuple[Membership, str]:
    """A new account (no staff, no permissions) made a member of the project. Returns the membership and
    the password: the one given, checked by ``AUTH_PASSWORD_VALIDATORS``, or a generated one. The caller
    shows it once; it is stored only hashed."""
    role = _role_check(role)
    User = get_user_model()
    errors: dict[str, list[str]] = {}
    username = (username or "").strip()
    user = User(username=username, email=(email or "").strip())
    try:
        user.full_clean(exclude=["password"], validate_unique=False)  # taken, whatever the case: below
    except ValidationError as exc:
        errors.update({field: messages for field, messages in exc.message_dict.items()
                       if field in {"username", "email"}})
    taken = not errors.get("username") and User.objects.filter(username__iexact=username).exists()
    if password:
        try:
            validate_password(password, user=user)
        except ValidationError as exc:
            errors["password"] = exc.messages
    else:
        password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    if taken and not errors:
        raise MembershipConflict({"username": "an account with this username already exists"})
    if taken:
        errors["username"] = ["an account with this username already exists"]
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    user.save()
    return Membership.objects.create(project=project, user=user, role=role), password


@transaction.atomic
def membership_role_change(*, membership: Membership, role: str) -> Membership:
    """Make a member an annotator or a researcher; the last researcher stays one."""
    role = _role_check(role)
    if membership.role == Membership.Role.RESEARCHER and role != Membership.Role.RESEARCHER:
        if _researchers_locked(membership.project) == [membership.pk]:
            raise MembershipConflict({"role": "this is the project's last researcher: make someone else a "
                                             "researcher first"})
    if membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    """Take a member off the project (their labels stay); never its last researcher."""
    if membership.role == Membership.Role.RESEARCHER and _researchers_locked(membership.project) == [membership.pk]:
        raise MembershipConflict({"user": "this is the project's last researcher: a project needs one to be "
                                         "managed"})
    # Slots the member holds go back to the queue at once instead of when their lease runs out.
    ItemSlot.objects.filter(project=membership.project, annotator=membership.user, done=False).update(
        annotator=None, leased_until=None)
    membership.delete()


@transaction.atomic
def prompts_create(*, project: Project, conversations: Iterable[object], source: str = "",
                   metadata: Sequence[dict] | None = None) -> list[Prompt]:
    rows = [
        Prompt(project=project, messages=conversation_validate(c, field=f"prompts[{i}]"), source=source,
               metadata=(metadata[i] if metadata else {}))
        for i, c in enumerate(conversations)
    ]
    return Prompt.objects.bulk_create(rows)


def pair_item_create(*, prompt: Prompt, completion_a: Completion, completion_b: Completion) -> PairItem:
    """Idempotent: the same two completions never make two items. Creates the item's k slots."""
    item, created = PairItem.objects.get_or_create(
        completion_a=completion_a, completion_b=completion_b,
        defaults={"project_id": prompt.project_id, "prompt": prompt},
    )
    if created:
        overlap = Project.objects.values_list("overlap", flat=True).get(pk=prompt.project_id)
        ItemSlot.objects.bulk_create([ItemSlot(project_id=prompt.project_id, item=item, number=n)
                                      for n in range(overlap)])
    return item


@dataclass(frozen=True)
class ItemKind:
    """What the shared assignment needs to know of a project's items: one implementation serves
    pairwise and step projects."""

    field: str  # the ItemSlot / ItemSkip field that points at the item
    item_model: type
    label_model: type
    text: tuple[str, ...]  # what to load with an item to show it


PAIRS = ItemKind("item", PairItem, PairLabel, ("prompt", "completion_a", "completion_b"))
STEPS = ItemKind("step_item", StepItem, StepLabel, ("prompt",))


def item_kind(project: Project) -> ItemKind:
    return STEPS if project.task_kind == Project.TaskKind.STEPS else PAIRS


def slots_ensure(*, project: Project, batch_size: int = 5000) -> int:
    """Give every non-gold item of the project its k slots (after an import or a change of k).

    Slots are only added: lowering k leaves the extra slots, whose labels are already paid for.
    Returns the number of slots created. On PostgreSQL one INSERT ... SELECT does it in the
    database (100,000 items in about a second); elsewhere in batches through the ORM.
    """
    k, kind = project.overlap, item_kind(project)
    column = f"{kind.field}_id"
    if connection.vendor == "postgresql":
        slot, item = ItemSlot._meta.db_table, kind.item_model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"""INSERT INTO {slot} (project_id, {column}, number, priority, done)
                    SELECT i.project_id, i.id, n.number, 0, false
                    FROM {item} i CROSS JOIN generate_series(0, %s - 1) AS n(number)
                    WHERE i.project_id = %s AND NOT i.is_gold
                      AND NOT EXISTS (SELECT 1 FROM {slot} s WHERE s.{column} = i.id AND s.number = n.number)""",
                [k, project.pk])
            return cursor.rowcount
    short = (kind.item_model.objects.filter(project=project, is_gold=False)
             .annotate(n=Count("slots")).filter(n__lt=k).values_list("id", "n").order_by("id"))
    created, batch = 0, []
    for item_id, n in short.iterator(chunk_size=batch_size):
        batch.extend(ItemSlot(project=project, number=number, **{column: item_id}) for number in range(n, k))
        if len(batch) >= batch_size:
            created += len(ItemSlot.objects.bulk_create(batch))
            batch = []
    if batch:
        created += len(ItemSlot.objects.bulk_create(batch))
    return created


def item_lease_next(*, project: Project, user: AbstractBaseUser) -> PairItem | StepItem | None:
    """Serve the annotator's next item (a pair or a step solution) and lease one of its slots.

    A fixed number of queries whatever the project size:
    1. an unexpired lease the annotator already holds is served again (a reload, a second tab);
    2. with probability ``gold_rate``, a gold item they have not labeled yet;
    3. otherwise the first free slot (highest priority, oldest) of an item they have neither
       labeled nor skipped, locked with SKIP LOCKED so concurrent requests take different slots,
       then leased to them until ``lease_minutes`` from now.
    """
    kind, now = item_kind(project), timezone.now()
    related = [f"{kind.field}__{name}" for name in kind.text]
    held = (ItemSlot.objects.filter(project=project, annotator=user, done=False, leased_until__gt=now)
            .select_related(*related).order_by("id").first())
    if held is not None:
        return getattr(held, kind.field)
    if project.gold_rate and random.random() < project.gold_rate:
        gold = (kind.item_model.objects.filter(project=project, is_gold=True).select_related(*kind.text)
                .exclude(Exists(kind.label_model.objects.filter(item=OuterRef("pk"), annotator=user)))
                .exclude(Exists(ItemSkip.objects.filter(**{kind.field: OuterRef("pk")}, annotator=user)))
                .order_by("id").first())
        if gold is not None:
            return gold
    labeled = kind.label_model.objects.filter(item=OuterRef(kind.field), annotator=user)
    skipped = ItemSkip.objects.filter(**{kind.field: OuterRef(kind.field)}, annotator=user)
    with transaction.atomic():
        slot = (ItemSlot.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(project=project, done=False)
                .filter(Q(annotator__isnull=True) | Q(leased_until__lte=now))
                .exclude(Exists(labeled)).exclude(Exists(skipped))
                .select_related(*related).order_by("-priority", "id").first())
        if slot is None:
            return None
        ItemSlot.objects.filter(pk=slot.pk).update(
            annotator=user, leased_until=now + timedelta(minutes=project.lease_minutes))
    return getattr(slot, kind.field)


@transaction.atomic
def item_skip(*, item: PairItem | StepItem, user: AbstractBaseUser) -> None:
    """Skip an item: it is never served to this annotator again and its slot is freed at once."""
    field = STEPS.field if isinstance(item, StepItem) else PAIRS.field
    ItemSkip.objects.get_or_create(**{field: item}, annotator=user)
    ItemSlot.objects.filter(**{field: item}, annotator=user, done=False).update(annotator=None, leased_until=None)


def _slot_close(*, field: str, item: PairItem | StepItem, annotator: AbstractBaseUser) -> None:
    """A new label fills the annotator's slot of the item; when their lease was lost, any free slot.

    A label always counts: when the item is already complete it stays as an extra label."""
    closed = ItemSlot.objects.filter(**{field: item}, annotator=annotator, done=False).update(
        done=True, leased_until=None)
    if not closed:
        free = (ItemSlot.objects.filter(**{field: item}, done=False)
                .filter(Q(annotator__isnull=True) | Q(leased_until__lte=timezone.now()))
                .order_by("number").values("pk")[:1])
        ItemSlot.objects.filter(pk__in=free).update(annotator=annotator, done=True, leased_until=None)


def pair_items_prioritize(*, project: Project, priorities: dict[int, int]) -> int:
    """Set serving priorities (higher first) of items, e.g. from AI judges that disagree."""
    by_value: dict[int, list[int]] = {}
    for item_id, value in priorities.items():
        by_value.setdefault(value, []).append(item_id)
    updated = 0
    with transaction.atomic():
        for value, ids in by_value.items():
            updated += ItemSlot.objects.filter(project=project, item_id__in=ids).update(priority=value)
    return updated


@transaction.atomic
def pair_label_submit(*, item: PairItem, annotator: AbstractBaseUser, verdict: str, strength: int | None = None,
                      rationale: str = "", shown_order: str = ShownOrder.AB,
                      time_spent_ms: int | None = None, criteria: dict | None = None) -> PairLabel:
    """Store (or edit) this annotator's label for the item and close their slot.

    A label always counts, even when its lease ran out: it then takes any free slot of the item,
    or is kept as an extra label when the item is already complete (work is never thrown away).
    """
    values = pair_label_clean(verdict=verdict, strength=strength, rationale=rationale, time_spent_ms=time_spent_ms,
                              criteria=criteria, project_criteria=item.project.criteria)
    if shown_order not in ShownOrder.values:
        raise ValidationError({"shown_order": f"{shown_order!r} is not one of {ShownOrder.values}"})
    fields = {"verdict": values.verdict, "strength": values.strength, "rationale": values.rationale,
              "criteria": values.criteria, "shown_order": shown_order, "time_spent_ms": values.time_spent_ms}
    # An edit updates in place; a new label is inserted (the unique constraint settles a race of two
    # submits, the loser becoming an edit). Fewer round trips than update_or_create on the hot path.
    created = False
    if PairLabel.objects.filter(item=item, annotator=annotator).update(**fields, updated_at=timezone.now()):
        label = PairLabel.objects.get(item=item, annotator=annotator)
    else:
        try:
            with transaction.atomic():
                label = PairLabel.objects.create(item=item, annotator=annotator, **fields)
            created = True
        except IntegrityError:
            PairLabel.objects.filter(item=item, annotator=annotator).update(**fields, updated_at=timezone.now())
            label = PairLabel.objects.get(item=item, annotator=annotator)
    if created and not item.is_gold:
        _slot_close(field=PAIRS.field, item=item, annotator=annotator)
    return label


@transaction.atomic
def pair_item_adjudicate(*, item: PairItem, reviewer: AbstractBaseUser, verdict: str,
                         strength: int | None = None) -> PairItem:
    """A reviewer's verdict on a disputed item: it becomes the item's final verdict."""
    values = pair_label_clean(verdict=verdict, strength=strength)
    item.final_verdict, item.final_strength = values.verdict, values.strength
    item.adjudicated_by, item.adjudicated_at = reviewer, timezone.now()
    item.save(update_fields=["final_verdict", "final_strength", "adjudicated_by", "adjudicated_at"])
    return item


def step_item_create(*, prompt: Prompt, steps: Sequence[str], solution_text: str = "",
                     split_rule: str = StepItem.SplitRule.GIVEN, reference_answer: str = "",
                     ground_truth_solution: str = "", model_name: str = "", metadata: dict | None = None) -> StepItem:
    """A solution to label step by step, with its k slots."""
    steps = [text_clean(s) for s in steps]
    if not steps or not all(isinstance(s, str) and s.strip() for s in steps):
        raise ValidationError({"steps": "expected a non-empty list of non-empty steps"})
    with transaction.atomic():
        item = StepItem.objects.create(
            project_id=prompt.project_id, prompt=prompt, steps=list(steps),
            solution_text=solution_text or "\n\n".join(steps),
            split_rule=split_rule, reference_answer=reference_answer, ground_truth_solution=ground_truth_solution,
            model_name=model_name, metadata=metadata or {})
        overlap = Project.objects.values_list("overlap", flat=True).get(pk=prompt.project_id)
        ItemSlot.objects.bulk_create([ItemSlot(project_id=prompt.project_id, step_item=item, number=n)
                                      for n in range(overlap)])
    return item


@transaction.atomic
def step_item_resplit(*, item: StepItem, steps: Sequence[str], split_rule: str = StepItem.SplitRule.GIVEN) -> StepItem:
    """Correct how a solution is split, before anyone labels it (labels index the steps)."""
    if StepLabel.objects.filter(item=item).exists():
        raise ValidationError({"steps": "this solution already has labels: its steps can no longer change"})
    steps = [text_clean(s).strip() for s in steps if s and s.strip()]
    if not steps:
        raise ValidationError({"steps": "expected at least one step"})
    item.steps, item.split_rule = steps, split_rule
    item.save(update_fields=["steps", "split_rule"])
    return item


def step_ratings_validate(*, item: StepItem, ratings: object, finish_reason: str, mode: str) -> list[int | None]:
    """Check ratings against the steps and the project's mode.

    First-error mode (PRM800K's ``found_error``): rating stops at the first -1, so every later step
    is stored as unlabeled (None), never as negative."""
    if not isinstance(ratings, list) or len(ratings) != len(item.steps):
        raise ValidationError({"ratings": f"expected {len(item.steps)} ratings, one per step"})
    if any(r not in STEP_RATINGS or isinstance(r, bool) for r in ratings):
        raise ValidationError({"ratings": "each rating is 1, 0, -1 or null"})
    if finish_reason not in StepLabel.FinishReason.values:
        raise ValidationError({"finish_reason": f"{finish_reason!r} is not one of {StepLabel.FinishReason.values}"})
    ratings = list(ratings)
    error = first_error(ratings)
    stops = mode == Project.StepMode.FIRST_ERROR and error is not None
    if stops:
        ratings = ratings_stop_at_first_error(ratings)
    ended_early = finish_reason in (StepLabel.FinishReason.BAD_PROBLEM, StepLabel.FinishReason.GAVE_UP)
    rated = ratings[: error + 1] if stops else ratings
    if not ended_early and any(r is None for r in rated):
        raise ValidationError({"ratings": "rate every step (or finish with 'bad problem' or 'gave up')"})
    if finish_reason == StepLabel.FinishReason.FOUND_ERROR and error is None:
        raise ValidationError({"finish_reason": "'found error' needs a step rated -1"})
    return ratings


@transaction.atomic
def step_label_submit(*, item: StepItem, annotator: AbstractBaseUser, ratings: list, finish_reason: str,
                      outcome: str = "", flags: Sequence[int] = (), corrected_step_index: int | None = None,
                      corrected_step: str = "", time_spent_ms: int | None = None) -> StepLabel:
    """Store (or edit) a person's step ratings for a solution, and close their slot."""
    project = item.project
    ratings = step_ratings_validate(item=item, ratings=ratings, finish_reason=finish_reason, mode=project.step_mode)
    if outcome not in StepLabel.Outcome.values:
        raise ValidationError({"outcome": f"{outcome!r} is not one of {StepLabel.Outcome.values}"})
    flags = sorted({int(f) for f in flags})
    if any(not 0 <= f < len(item.steps) for f in flags):
        raise ValidationError({"flags": "a flag names a step that does not exist"})
    if corrected_step_index is not None and not 0 <= corrected_step_index < len(item.steps):
        raise ValidationError({"corrected_step_index": "no such step"})
    fields = {"ratings": ratings, "finish_reason": finish_reason, "outcome": outcome, "flags": flags,
              "corrected_step_index": corrected_step_index,
              "corrected_step": corrected_step_check(text_clean(corrected_step)),
              "time_spent_ms": time_spent_check(time_spent_ms), "source": StepLabel.Source.HUMAN}
    label, created = StepLabel.objects.update_or_create(item=item, annotator=annotator, defaults=fields)
    if created and not item.is_gold:
        _slot_close(field=STEPS.field, item=item, annotator=annotator)
    return label


@transaction.atomic
def step_labels_store(*, item: StepItem, source: str, source_name: str, ratings: list, finish_reason: str = "",
                      outcome: str = "") -> StepLabel:
    """Ratings from an AI judge or an automatic method (one row per source name and solution)."""
    if source == StepLabel.Source.HUMAN:
        raise ValidationError({"source": "people's labels go through step_label_submit"})
    if len(ratings) != len(item.steps) or any(r not in STEP_RATINGS for r in ratings):
        raise ValidationError({"ratings": f"expected {len(item.steps)} ratings of 1, 0, -1 or null"})
    finish_reason = finish_reason or finish_reason_for(ratings)
    label, _ = StepLabel.objects.update_or_create(
        item=item, annotator=None, source=source, source_name=source_name,
        defaults={"ratings": list(ratings), "finish_reason": finish_reason, "outcome": outcome})
    return label


@transaction.atomic
def step_item_adjudicate(*, item: StepItem, reviewer: AbstractBaseUser, ratings: list,
                         outcome: str = "") -> StepItem:
    """A reviewer's step-by-step ratings: they become the solution's final ratings."""
    if len(ratings) != len(item.steps) or any(r not in STEP_RATINGS for r in ratings):
        raise ValidationError({"ratings": f"expected {len(item.steps)} ratings of 1, 0, -1 or null"})
    if outcome not in StepLabel.Outcome.values:
        raise ValidationError({"outcome": f"{outcome!r} is not one of {StepLabel.Outcome.values}"})
    item.final_ratings, item.final_outcome = list(ratings), outcome
    item.adjudicated_by, item.adjudicated_at = reviewer, timezone.now()
    item.save(update_fields=["final_ratings", "final_outcome", "adjudicated_by", "adjudicated_at"])
    return item
