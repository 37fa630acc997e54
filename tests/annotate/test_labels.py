"""One definition of a label: the form, the API (both paths), the services and the models agree."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.authtoken.models import Token

from annotate import labels
from annotate.api import PairLabelInSerializer, PairLabelSerializer
from annotate.forms import PairLabelForm
from annotate.models import PairLabel
from annotate.services import pair_label_submit
from prefdata.records import STRENGTHS, VERDICTS
from tests.factories import MembershipFactory, PairItemFactory

pytestmark = pytest.mark.django_db

TOO_LONG = "x" * (labels.RATIONALE_MAX_LENGTH + 1)
BAD = [
    ({"verdict": "C"}, "verdict"),
    ({"verdict": "A", "strength": 5}, "strength"),
    ({"verdict": "tie", "strength": 0}, "strength"),
    ({"verdict": "A", "rationale": TOO_LONG}, "rationale"),
    ({"verdict": "A", "rationale": "a\x00b"}, "rationale"),
    ({"verdict": "A", "time_spent_ms": -1}, "time_spent_ms"),
    ({"verdict": "A", "time_spent_ms": labels.TIME_SPENT_MAX_MS + 1}, "time_spent_ms"),
    ({"verdict": "A", "criteria": {"style": "A"}}, "criteria"),
    ({"verdict": "A", "criteria": {"safety": "left"}}, "criteria"),
]


def test_the_vocabulary_is_the_library_s():
    assert tuple(labels.Verdict.values) == VERDICTS
    assert dict(labels.Strength.choices) == STRENGTHS
    assert PairLabel._meta.get_field("verdict").choices == labels.Verdict.choices
    assert PairLabel._meta.get_field("strength").choices == labels.Strength.choices


@pytest.mark.parametrize("values, field", BAD)
def test_the_service_refuses_what_the_definition_refuses(values, field):
    item = PairItemFactory(project__criteria=["safety"])
    with pytest.raises(ValidationError) as excinfo:
        pair_label_submit(item=item, annotator=MembershipFactory(project=item.project).user, **values)
    assert field in excinfo.value.message_dict
    assert not PairLabel.objects.exists()


@pytest.mark.parametrize("values, field", BAD)
def test_the_api_refuses_it_too(client, values, field):
    item = PairItemFactory(project__criteria=["safety"])
    member = MembershipFactory(project=item.project)
    token = Token.objects.create(user=member.user)
    response = client.post(reverse("api_label_submit", args=[item.project.pk, item.pk]), values,
                           content_type="application/json", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not PairLabel.objects.exists()


def test_the_form_and_the_serializer_take_their_limits_from_the_definition():
    form = PairLabelForm(criteria=["safety"])
    assert form.fields["rationale"].max_length == labels.RATIONALE_MAX_LENGTH
    assert form.fields["time_spent_ms"].max_value == labels.TIME_SPENT_MAX_MS
    assert [v for v, _ in form.fields["choice"].choices] == ["left", "right", "tie", "both_bad"]
    assert not PairLabelForm({"choice": "left", "rationale": TOO_LONG}).is_valid()
    serializer = PairLabelInSerializer()
    assert serializer.fields["rationale"].max_length == labels.RATIONALE_MAX_LENGTH
    assert serializer.fields["time_spent_ms"].max_value == labels.TIME_SPENT_MAX_MS
    assert tuple(PairLabelSerializer.Meta.fields) == labels.PAIR_LABEL_ANSWER_FIELDS


def test_a_tie_keeps_no_strength_and_the_rationale_is_stripped():
    values = labels.pair_label_clean(verdict="tie", strength=3, rationale="  because  ")
    assert (values.strength, values.rationale) == (None, "because")
    assert labels.pair_label_clean(verdict="B", strength=2).strength == 2
    with pytest.raises(ValidationError):
        labels.pair_label_clean(verdict="A", strength=True)  # a bool is no strength


def test_the_presentation_order_is_fixed_per_annotator_and_item_and_varies_across_items():
    orders = {labels.presentation_order(user_id=1, item_id=i) for i in range(40)}
    assert orders == {"AB", "BA"}
    assert labels.presentation_order(user_id=3, item_id=9) == labels.presentation_order(user_id=3, item_id=9)
