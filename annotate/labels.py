"""What a label is, defined once: verdicts, strengths, criteria, the limits of the free fields, the side
order a pair is shown in and the shape of the answer. The models, the labeling form, the API's
serializers, the services and the hot-path SQL all take them from here; the vocabulary itself (which
verdicts and ratings exist) is the Django-free ``prefdata.records``'.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import models

from prefdata.records import STEP_RATINGS, STRENGTHS, VERDICTS


class Verdict(models.TextChoices):
    """About the stored completions A and B, whatever side they were shown on."""

    A = "A", "A is better"
    B = "B", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"


class Strength(models.IntegerChoices):
    """How much better the preferred response is (Llama 2's scale); only with a verdict of A or B."""

    NEGLIGIBLY = 1, STRENGTHS[1]
    SLIGHTLY = 2, STRENGTHS[2]
    BETTER = 3, STRENGTHS[3]
    SIGNIFICANTLY = 4, STRENGTHS[4]


class ShownOrder(models.TextChoices):
    AB = "AB", "A left, B right"
    BA = "BA", "B left, A right"


DECISIVE = frozenset((Verdict.A, Verdict.B))
RATIONALE_MAX_LENGTH = 5000
TIME_SPENT_MAX_MS = 2**31 - 1  # what the column holds
CORRECTED_STEP_MAX_LENGTH = 20000
STEP_INDEX_MAX = 2**15 - 1  # a step's index (flags, the corrected step): what corrected_step_index holds
# A project's criteria: a short list of distinct names, each judged like the overall verdict.
CRITERIA_MAX = 20
CRITERION_MAX_LENGTH = 100

# The answer to a stored pair label, in this order (the API's serializer and the hot path).
PAIR_LABEL_ANSWER_FIELDS = ("id", "item", "verdict", "strength", "rationale", "criteria", "shown_order",
                            "time_spent_ms", "created_at", "updated_at")


def presentation_order(*, user_id: int, item_id: int) -> str:
    """Which side each response is shown on: fixed per annotator and item (a reload does not swap them)
    and random across them (so that an annotator's position bias can be measured)."""
    digest = hashlib.sha256(f"order:{user_id}:{item_id}".encode()).digest()
    return ShownOrder.AB if digest[0] % 2 == 0 else ShownOrder.BA


@dataclass(frozen=True, slots=True)
class PairLabelValues:
    verdict: str
    strength: int | None
    rationale: str
    criteria: dict[str, str]
    time_spent_ms: int | None


def _text_check(value: object, field: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise ValidationError({field: "expected a string"})
    value = value.strip()
    if len(value) > max_length:
        raise ValidationError({field: f"at most {max_length} characters ({len(value)} given)"})
    if "\x00" in value:
        raise ValidationError({field: "null characters are not allowed"})
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValidationError({field: "not valid Unicode (a lone surrogate)"}) from None
    return value


def _time_check(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= TIME_SPENT_MAX_MS:
        raise ValidationError({"time_spent_ms": f"expected a whole number of milliseconds, 0 to {TIME_SPENT_MAX_MS}"})
    return value


def criteria_clean(value: object) -> list[str]:
    """A project's criteria: a list of at most ``CRITERIA_MAX`` distinct non-empty names (stripped), or
    ValidationError. Labels answer them with ``{name: verdict}``."""
    if not isinstance(value, list):
        raise ValidationError({"criteria": "expected a list of names, e.g. [\"helpfulness\", \"harmlessness\"]"})
    if len(value) > CRITERIA_MAX:
        raise ValidationError({"criteria": f"at most {CRITERIA_MAX} criteria ({len(value)} given)"})
    names = [_text_check(name, "criteria", CRITERION_MAX_LENGTH) for name in value]
    if not all(names):
        raise ValidationError({"criteria": "a criterion needs a name"})
    if len(set(names)) != len(names):
        raise ValidationError({"criteria": "each criterion is named once"})
    return names


def criteria_names(value: object) -> list[str]:
    """The criteria a label may answer: the project's, or none when what is stored is not a list of names
    (a row written before ``criteria_clean`` checked it must not break every label)."""
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return value
    return []


def pair_label_clean(*, verdict: object, strength: object = None, rationale: object = "",
                     time_spent_ms: object = None, criteria: object = None,
                     project_criteria: Sequence[str] = ()) -> PairLabelValues:
    """A pair label's values, checked strictly (no coercion: the form and the serializer coerce what people
    and scripts send, then call the services, which call this), or ValidationError naming the field.

    A tie or both-bad has no strength; the rationale is stripped; criteria are the project's, each with a
    verdict."""
    if not isinstance(verdict, str) or verdict not in VERDICTS:
        raise ValidationError({"verdict": f"{verdict!r} is not one of {list(VERDICTS)}"})
    if strength is not None and (type(strength) is not int or strength not in STRENGTHS):
        raise ValidationError({"strength": f"{strength!r} is not one of {list(STRENGTHS)}"})
    if verdict not in DECISIVE:
        strength = None
    clean_criteria: dict[str, str] = {}
    if criteria is not None and not isinstance(criteria, Mapping):
        raise ValidationError({"criteria": "expected an object {criterion: verdict}"})
    if criteria:
        project_criteria = criteria_names(project_criteria)
        unknown = sorted(set(criteria) - set(project_criteria))
        if unknown:
            raise ValidationError(
                {"criteria": f"unknown criteria {unknown}; this project has {list(project_criteria)}"})
        for name, value in criteria.items():
            if not isinstance(value, str) or value not in VERDICTS:
                raise ValidationError({"criteria": f"{name}: {value!r} is not one of {list(VERDICTS)}"})
            clean_criteria[name] = value
    return PairLabelValues(verdict=verdict, strength=strength,  # type: ignore[arg-type]
                           rationale=_text_check(rationale, "rationale", RATIONALE_MAX_LENGTH),
                           criteria=clean_criteria, time_spent_ms=_time_check(time_spent_ms))


def step_ratings_check(ratings: object, n_steps: int) -> list[int | None]:
    """One rating of ``STEP_RATINGS`` per step, or ValidationError."""
    if not isinstance(ratings, list) or len(ratings) != n_steps:
        raise ValidationError({"ratings": f"expected {n_steps} ratings, one per step"})
    if any(isinstance(r, bool) or r not in STEP_RATINGS for r in ratings):
        raise ValidationError({"ratings": "each rating is 1, 0, -1 or null"})
    return list(ratings)


def corrected_step_check(value: object) -> str:
    return _text_check(value, "corrected_step", CORRECTED_STEP_MAX_LENGTH)


def time_spent_check(value: object) -> int | None:
    return _time_check(value)
