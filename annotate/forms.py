from django import forms

from annotate.models import PairLabel, Verdict


class PairLabelForm(forms.Form):
    """What the annotator chose, in the sides they saw: left/right are mapped to A/B by the view."""

    choice = forms.ChoiceField(choices=[("left", "Left"), ("right", "Right"), ("tie", "Tie"),
                                        ("both_bad", "Both bad")])
    strength = forms.TypedChoiceField(choices=[("", "—"), *PairLabel.Strength.choices], coerce=int,
                                      required=False, empty_value=None)
    rationale = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=5000)
    time_spent_ms = forms.IntegerField(required=False, min_value=0, max_value=24 * 3600 * 1000)

    def __init__(self, *args, criteria: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.criteria = list(criteria or [])
        for name in self.criteria:
            self.fields[f"criterion_{name}"] = forms.ChoiceField(
                choices=[("", "—"), *self.fields["choice"].choices], required=False, label=name)

    def criteria_values(self) -> dict[str, str]:
        """The per-criterion answers given, in screen sides."""
        return {name: self.cleaned_data[f"criterion_{name}"] for name in self.criteria
                if self.cleaned_data.get(f"criterion_{name}")}


class ImportForm(forms.Form):
    file = forms.FileField()
    format = forms.ChoiceField(choices=[])

    def __init__(self, *args, steps: bool = False, **kwargs):
        from prefdata.readers import formats_for

        super().__init__(*args, **kwargs)
        formats = formats_for("steps" if steps else "pairs")
        self.fields["format"].choices = [(k, f"{k}: {v}") for k, v in formats.items()]


class AdjudicationForm(forms.Form):
    verdict = forms.ChoiceField(choices=Verdict.choices)
    strength = forms.TypedChoiceField(choices=[("", "—"), *PairLabel.Strength.choices], coerce=int,
                                      required=False, empty_value=None)
