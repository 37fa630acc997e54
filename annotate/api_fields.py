"""Serializer fields of the API that take JSON as its schema says: a number where a number is due, text where
text is (DRF's fields turn a number into its digits and "2" into 2, so that a wrong value would be stored
instead of refused). A form (``application/x-www-form-urlencoded``, ``multipart/form-data``) only has
text: there the fields convert it, as DRF does.
"""

from __future__ import annotations

import json

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.utils import html

from annotate.labels import CRITERIA_MAX, CRITERION_MAX_LENGTH, Verdict

# Text with something in it besides spaces (the services strip it): also the schema's pattern.
not_blank = RegexValidator(r"\S", message="This field may not be blank.")


def _from_form(field: serializers.Field) -> bool:
    return html.is_html_input(getattr(field.root, "initial_data", None))


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if not _from_form(self) and type(data) is not int:
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data):
        if not _from_form(self) and (isinstance(data, bool) or not isinstance(data, int | float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not _from_form(self) and not isinstance(data, bool):
            self.fail("invalid", input=data)
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    """One of the choices, of its type (DRF compares their text: it takes "2" for 2)."""

    def to_internal_value(self, data):
        if not _from_form(self) and (isinstance(data, bool) or not isinstance(data, str | int)
                                     or data not in self.choices):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string", "enum": list(Verdict.values)},
                      "description": "A verdict per criterion of the project, {criterion: verdict}. In a form: "
                                     "criteria.<criterion>=<verdict> fields, or the JSON object as text."})
class CriteriaVerdictsField(serializers.DictField):
    """{criterion: verdict}. DRF reads a form's ``criteria.<name>`` fields and would drop a plain ``criteria``
    field: that one is read as the JSON object it is (anything else is refused)."""

    def __init__(self, **kwargs):
        super().__init__(child=StrictChoiceField(choices=Verdict.choices), **kwargs)

    def get_value(self, dictionary):
        if html.is_html_input(dictionary) and self.field_name in dictionary:
            text = dictionary.get(self.field_name)
            try:
                return json.loads(text)
            except (TypeError, ValueError, RecursionError):
                return text  # not an object: refused by to_internal_value
        return super().get_value(dictionary)


@extend_schema_field({"type": "array", "maxItems": CRITERIA_MAX, "uniqueItems": True,
                      "items": {"type": "string", "minLength": 1, "maxLength": CRITERION_MAX_LENGTH,
                                "pattern": r"\S"},
                      "description": "Names of criteria each label also answers (a verdict per criterion), e.g. "
                                     '["helpfulness", "harmlessness"]. In a form: one criteria field per name.'})
class CriteriaNamesField(serializers.ListField):
    def __init__(self, **kwargs):
        super().__init__(child=StrictCharField(max_length=CRITERION_MAX_LENGTH, validators=[not_blank]),
                         max_length=CRITERIA_MAX, **kwargs)
