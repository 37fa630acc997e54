"""The annotation hot path: serving the next pair and storing a label, in one SQL statement each.

Annotators call these two endpoints all day, so on PostgreSQL a request with a token is answered
by two statements (who is asking, then the work) instead of the ORM's ten or so: the services in
``annotate.services`` stay the reference, and these statements do exactly what they do:

* next: an unexpired lease the annotator holds is served again; else, when the gold draw says so,
  the first gold item they have neither labeled nor skipped; else the first free slot (highest
  priority, oldest) of an item they have neither labeled nor skipped, locked with SKIP LOCKED and
  leased to them;
* label: insert the label or edit theirs in place; a new label of a normal item closes their slot,
  or any free slot of the item when their lease was lost, or is kept as an extra label.

Laid out as elsewhere: a selector (``caller_get_for_token``), two services (``pair_lease_next_sql``,
``pair_label_store_sql``) and two thin view functions (``pair_next``, ``pair_label``) that the API
views try first. Anything those do not handle plainly (SQLite, session auth, a bad token, a step
project, input the fast checks do not accept) returns ``None`` and the DRF view answers, with its
validation and its error messages. ``tests/annotate/test_hotpath.py`` runs the same sequences
through both paths and compares.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import Throttled
from rest_framework.fields import DateTimeField

from annotate.api_errors import token_key_valid
from annotate.labels import PAIR_LABEL_ANSWER_FIELDS, pair_label_clean, presentation_order
from annotate.models import ItemSkip, ItemSlot, Membership, PairItem, PairLabel, Project, Prompt
from annotate.throttles import user_throttle_wait

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_datetime = DateTimeField().to_representation  # the API's format for datetimes


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: int
    project_id: int
    task_kind: str
    gold_rate: float
    lease_minutes: int
    criteria: list[str]


def _tables() -> dict[str, str]:
    qn = connection.ops.quote_name
    return {name: qn(model._meta.db_table) for name, model in {
        "token": Token, "user": get_user_model(), "membership": Membership, "project": Project,
        "slot": ItemSlot, "skip": ItemSkip, "item": PairItem, "label": PairLabel, "prompt": Prompt,
        "completion": PairItem._meta.get_field("completion_a").related_model}.items()}


_SQL: dict[str, str] = {}


def _sql(name: str) -> str:
    """The statements, with this installation's table names (built once per process)."""
    if not _SQL:
        t = _tables()
        _SQL["caller"] = f"""
            SELECT u.id, p.id, p.task_kind, p.gold_rate, p.lease_minutes, p.criteria
            FROM {t['token']} k
            JOIN {t['user']} u ON u.id = k.user_id AND u.is_active
            JOIN {t['project']} p ON p.id = %(project)s
            WHERE k.key = %(key)s
              AND (u.is_superuser OR EXISTS (
                  SELECT 1 FROM {t['membership']} m WHERE m.project_id = p.id AND m.user_id = u.id))"""
        labeled = f"SELECT 1 FROM {t['label']} l WHERE l.item_id = {{0}} AND l.annotator_id = %(user)s"
        skipped = f"SELECT 1 FROM {t['skip']} k WHERE k.item_id = {{0}} AND k.annotator_id = %(user)s"
        _SQL["next"] = f"""
            WITH held AS (
                SELECT s.item_id FROM {t['slot']} s
                WHERE s.annotator_id = %(user)s AND s.project_id = %(project)s AND NOT s.done
                  AND s.leased_until > %(now)s
                ORDER BY s.id LIMIT 1
            ), gold AS (
                SELECT i.id AS item_id FROM {t['item']} i
                WHERE %(gold)s AND NOT EXISTS (SELECT 1 FROM held)
                  AND i.project_id = %(project)s AND i.is_gold
                  AND NOT EXISTS ({labeled.format('i.id')}) AND NOT EXISTS ({skipped.format('i.id')})
                ORDER BY i.id LIMIT 1
            ), claimed AS (
                UPDATE {t['slot']} SET annotator_id = %(user)s, leased_until = %(until)s
                WHERE id = (
                    SELECT s.id FROM {t['slot']} s
                    WHERE NOT EXISTS (SELECT 1 FROM held) AND NOT EXISTS (SELECT 1 FROM gold)
                      AND s.project_id = %(project)s AND NOT s.done
                      AND (s.annotator_id IS NULL OR s.leased_until <= %(now)s)
                      AND NOT EXISTS ({labeled.format('s.item_id')})
                      AND NOT EXISTS ({skipped.format('s.item_id')})
                    ORDER BY s.priority DESC, s.id LIMIT 1
                    FOR UPDATE SKIP LOCKED)
                RETURNING item_id
            )
            SELECT i.id, pr.messages, a.text, b.text
            FROM {t['item']} i
            JOIN {t['prompt']} pr ON pr.id = i.prompt_id
            JOIN {t['completion']} a ON a.id = i.completion_a_id
            JOIN {t['completion']} b ON b.id = i.completion_b_id
            WHERE i.id = (SELECT item_id FROM held UNION ALL SELECT item_id FROM gold
                          UNION ALL SELECT item_id FROM claimed LIMIT 1)"""
        # A data-modifying WITH runs to completion whether or not it is read, hence the guards: only a
        # new label of a normal item closes a slot, and a free slot is taken only when none was closed.
        _SQL["label"] = f"""
            WITH target AS (
                SELECT id, is_gold FROM {t['item']} WHERE id = %(item)s AND project_id = %(project)s
            ), stored AS (
                INSERT INTO {t['label']} AS l (item_id, annotator_id, verdict, strength, rationale, criteria,
                                              shown_order, time_spent_ms, created_at, updated_at)
                SELECT id, %(user)s, %(verdict)s, %(strength)s, %(rationale)s, %(criteria)s::jsonb,
                       %(shown_order)s, %(time_spent_ms)s, %(now)s, %(now)s
                FROM target
                ON CONFLICT (item_id, annotator_id) DO UPDATE SET
                    verdict = EXCLUDED.verdict, strength = EXCLUDED.strength, rationale = EXCLUDED.rationale,
                    criteria = EXCLUDED.criteria, shown_order = EXCLUDED.shown_order,
                    time_spent_ms = EXCLUDED.time_spent_ms, updated_at = EXCLUDED.updated_at
                RETURNING l.id, l.created_at, l.updated_at, (l.xmax = 0) AS created
            ), closes AS (
                SELECT 1 FROM stored, target WHERE stored.created AND NOT target.is_gold
            ), closed AS (
                UPDATE {t['slot']} SET done = true, leased_until = NULL
                WHERE item_id = %(item)s AND annotator_id = %(user)s AND NOT done AND EXISTS (SELECT 1 FROM closes)
                RETURNING id
            ), taken AS (
                UPDATE {t['slot']} SET annotator_id = %(user)s, done = true, leased_until = NULL
                WHERE NOT done AND EXISTS (SELECT 1 FROM closes) AND NOT EXISTS (SELECT 1 FROM closed)
                  AND id = (SELECT s.id FROM {t['slot']} s
                            WHERE s.item_id = %(item)s AND NOT s.done
                              AND (s.annotator_id IS NULL OR s.leased_until <= %(now)s)
                            ORDER BY s.number LIMIT 1)
                RETURNING id
            )
            SELECT id, created_at, updated_at FROM stored"""
    return _SQL[name]


def _token(request: HttpRequest) -> str | None:
    """The key of an ``Authorization: Token <key>`` header (DRF's TokenAuthentication), or None."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    keyword, _, key = header.partition(" ")
    if keyword != "Token" or not token_key_valid(key):
        return None  # DRF answers (401 for a key no token has: a NUL byte would be PostgreSQL's error)
    return key


def caller_get_for_token(*, key: str, project_id: int) -> Caller | None:
    """Selector: the active user behind a token, if they may see the project (a member, or a
    superuser), with the project's settings; None otherwise."""
    with connection.cursor() as cursor:
        cursor.execute(_sql("caller"), {"key": key, "project": project_id})
        row = cursor.fetchone()
    if row is None:
        return None
    user_id, project_id, task_kind, gold_rate, lease_minutes, criteria = row
    # Django reads jsonb as text.
    return Caller(user_id, project_id, task_kind, gold_rate, lease_minutes, json.loads(criteria))


def pair_lease_next_sql(*, caller: Caller, gold: bool, now: datetime) -> tuple | None:
    """Service: ``item_lease_next`` for a pairwise project in one statement (a transaction of its
    own): the held lease, else a gold item when ``gold``, else a newly leased free slot. Returns
    (item id, messages as JSON text, response A, response B), or None when nothing is left."""
    with connection.cursor() as cursor:
        cursor.execute(_sql("next"), {"user": caller.user_id, "project": caller.project_id, "now": now,
                                      "until": now + timedelta(minutes=caller.lease_minutes), "gold": gold})
        return cursor.fetchone()


def pair_label_store_sql(*, caller: Caller, item_id: int, fields: dict, shown_order: str,
                         now: datetime) -> tuple | None:
    """Service: ``pair_label_submit`` in one statement (a transaction of its own), for fields already
    validated. Returns (label id, created_at, updated_at), or None when the item is not the project's."""
    with connection.cursor() as cursor:
        cursor.execute(_sql("label"), {**fields, "criteria": _dumps(fields["criteria"]), "item": item_id,
                                       "project": caller.project_id, "user": caller.user_id,
                                       "shown_order": shown_order, "now": now})
        return cursor.fetchone()


def _caller(request: HttpRequest, project_id: int) -> Caller | None:
    """The caller when the hot path can answer: PostgreSQL, a token, JSON wanted, a pairwise project."""
    if connection.vendor != "postgresql":
        return None
    if request.META.get("QUERY_STRING") or "text/html" in request.META.get("HTTP_ACCEPT", ""):
        return None  # ?format=... or a browser: DRF's content negotiation answers
    key = _token(request)
    if key is None:
        return None
    caller = caller_get_for_token(key=key, project_id=project_id)
    if caller is None or caller.task_kind != Project.TaskKind.PAIRWISE:
        return None  # a bad token, a stranger or a step project: the full view answers
    return caller


def _json(data: dict | str, status: int) -> HttpResponse:
    body = data if isinstance(data, str) else _dumps(data)
    response = HttpResponse(body.encode(), content_type="application/json", status=status)
    response["Vary"] = "Accept"
    return response


def _throttled(caller: Caller) -> HttpResponse | None:
    """The user's request limit (``annotate.throttles``), answered as DRF answers it: 429 and Retry-After."""
    wait = user_throttle_wait(caller.user_id)
    if wait is None:
        return None
    response = _json({"detail": str(Throttled(wait).detail)}, 429)
    response["Retry-After"] = str(math.ceil(wait))
    return response


def pair_next(request: HttpRequest, project_id: int) -> HttpResponse | None:
    """GET next: the pair to label with the side order to show it in, or 204 when none is left."""
    if request.method != "GET":
        return None
    caller = _caller(request, project_id)
    if caller is None:
        return None
    if (throttled := _throttled(caller)) is not None:
        return throttled
    gold = bool(caller.gold_rate) and random.random() < caller.gold_rate
    row = pair_lease_next_sql(caller=caller, gold=gold, now=timezone.now())
    if row is None:
        return HttpResponse(status=204)
    item_id, messages, text_a, text_b = row
    # Django reads jsonb as its text: valid JSON, spliced in as it is.
    order = presentation_order(user_id=caller.user_id, item_id=item_id)
    body = (f'{{"id":{item_id},"project":{caller.project_id},"messages":{messages},'
            f'"response_a":{_dumps(text_a)},"response_b":{_dumps(text_b)},"shown_order":"{order}"}}')
    return _json(body, 200)


def _label_fields(request: HttpRequest, criteria_allowed: list) -> dict | None:
    """The label's fields when the body is JSON that ``annotate.labels.pair_label_clean`` accepts as it is;
    None sends it to the serializer, which coerces what it can (a strength "3") and words the errors."""
    if request.content_type != "application/json":
        return None
    try:
        body = json.loads(request.body)
    except (ValueError, RecursionError, RequestDataTooBig):
        return None  # DRF's parser words it: 400, or 413 past DATA_UPLOAD_MAX_MEMORY_SIZE
    if not isinstance(body, dict) or ("criteria" in body and body["criteria"] is None):
        return None
    try:
        values = pair_label_clean(verdict=body.get("verdict"), strength=body.get("strength"),
                                  rationale=body.get("rationale", ""), time_spent_ms=body.get("time_spent_ms"),
                                  criteria=body.get("criteria", {}), project_criteria=criteria_allowed)
    except ValidationError:
        return None
    return {"verdict": values.verdict, "strength": values.strength, "rationale": values.rationale,
            "criteria": values.criteria, "time_spent_ms": values.time_spent_ms}


def pair_label(request: HttpRequest, project_id: int, item_id: int) -> HttpResponse | None:
    """POST label: store (or edit) the caller's label of the item; 201 with the label."""
    if request.method != "POST":
        return None
    caller = _caller(request, project_id)
    if caller is None:
        return None
    fields = _label_fields(request, caller.criteria)
    if fields is None:
        return None
    if (throttled := _throttled(caller)) is not None:
        return throttled
    shown_order = presentation_order(user_id=caller.user_id, item_id=item_id)
    row = pair_label_store_sql(caller=caller, item_id=item_id, fields=fields, shown_order=shown_order,
                               now=timezone.now())
    if row is None:
        return None  # no such item in the project: the full view answers 404
    label_id, created_at, updated_at = row
    answer = {**fields, "id": label_id, "item": item_id, "shown_order": shown_order,
              "created_at": _datetime(created_at), "updated_at": _datetime(updated_at)}
    return _json({name: answer[name] for name in PAIR_LABEL_ANSWER_FIELDS}, 201)
