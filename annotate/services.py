"""Writes: projects, prompts, completions, pair items and labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotate.models import Completion, Membership, PairItem, PairLabel, Project, Prompt, Verdict
from annotate.text import text_clean

ROLES = {"system", "user", "assistant", "tool"}


def conversation_validate(messages: object, *, field: str = "prompt") -> list[dict[str, str]]:
    """Return ``messages`` as a clean conversation, or raise ValueError naming the field."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{field}: expected a non-empty list of {{role, content}} messages or a string")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"{field}[{i}]: expected an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"{field}[{i}].role: {role!r} is not one of {sorted(ROLES)}")
        if not isinstance(content, str):
            raise ValueError(f"{field}[{i}].content: expected a string")
        clean.append({"role": role, "content": text_clean(content)})
    return clean


@transaction.atomic
def project_create(*, name: str, created_by: AbstractBaseUser | None = None, guidelines: str = "",
                   task_kind: str = Project.TaskKind.PAIRWISE, overlap: int = 1) -> Project:
    project = Project.objects.create(name=name, guidelines=guidelines, task_kind=task_kind, overlap=overlap)
    if created_by is not None:
        project_member_add(project=project, user=created_by, role=Membership.Role.RESEARCHER)
    return project


def project_member_add(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


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
    """Idempotent: the same two completions never make two items."""
    item, _ = PairItem.objects.get_or_create(
        completion_a=completion_a, completion_b=completion_b,
        defaults={"project_id": prompt.project_id, "prompt": prompt},
    )
    return item


@transaction.atomic
def pair_label_submit(*, item: PairItem, annotator: AbstractBaseUser, verdict: str, strength: int | None = None,
                      rationale: str = "", shown_order: str = PairLabel.Order.AB,
                      time_spent_ms: int | None = None) -> PairLabel:
    """Store (or edit) this annotator's label for the item."""
    if verdict not in Verdict.values:
        raise ValidationError({"verdict": f"{verdict!r} is not one of {Verdict.values}"})
    if shown_order not in PairLabel.Order.values:
        raise ValidationError({"shown_order": f"{shown_order!r} is not one of {PairLabel.Order.values}"})
    if verdict in (Verdict.A, Verdict.B):
        if strength is not None and strength not in PairLabel.Strength.values:
            raise ValidationError({"strength": f"{strength!r} is not one of {PairLabel.Strength.values}"})
    else:
        strength = None  # a tie or both-bad has no strength
    if time_spent_ms is not None and time_spent_ms < 0:
        raise ValidationError({"time_spent_ms": "must not be negative"})
    label, _ = PairLabel.objects.update_or_create(
        item=item, annotator=annotator,
        defaults={"verdict": verdict, "strength": strength, "rationale": rationale,
                  "shown_order": shown_order, "time_spent_ms": time_spent_ms},
    )
    return label
