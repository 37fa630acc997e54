from django import forms

from annotate.labels import DECISIVE, RATIONALE_MAX_LENGTH, TIME_SPENT_MAX_MS, Strength, Verdict

# The verdicts in the sides the annotator saw: A and B become left and right (the view maps them back).
SIDE_CHOICES = [("left", "Left"), ("right", "Right"),
                *((v, label) for v, label in Verdict.choices if v not in DECISIVE)]


class PairLabelForm(forms.Form):
    """What the annotator chose, in the sides they saw: left/right are mapped to A/B by the view."""

    choice = forms.ChoiceField(choices=SIDE_CHOICES)
    strength = forms.TypedChoiceField(choices=[("", "—"), *Strength.choices], coerce=int,
                                      required=False, empty_value=None)
    rationale = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                max_length=RATIONALE_MAX_LENGTH)
    time_spent_ms = forms.IntegerField(required=False, min_value=0, max_value=TIME_SPENT_MAX_MS)

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
        from annotate.imports import IMPORT_OPTIONS
        from prefdata.readers import formats_for

        super().__init__(*args, **kwargs)
        formats = formats_for("steps" if steps else "pairs")
        self.fields["format"].choices = [(k, f"{k}: {v}") for k, v in formats.items()]
        # The import's choices concern pairs (annotate.imports.IMPORT_OPTIONS), the default first.
        self.option_names = [] if steps else list(IMPORT_OPTIONS)
        for name in self.option_names:
            values, description = IMPORT_OPTIONS[name]
            self.fields[name] = forms.ChoiceField(choices=[(v, v) for v in values], initial=values[0],
                                                  required=False, help_text=description.capitalize() + ".",
                                                  label=name.replace("_", " ").capitalize())

    def options(self) -> dict[str, str]:
        """The import's choices made in the form (``ImportJob.options``)."""
        return {name: self.cleaned_data[name] for name in self.option_names if self.cleaned_data.get(name)}


class AdjudicationForm(forms.Form):
    # Starts on the empty choice: a reviewer who clicks Decide without choosing is told so, instead of
    # recording whatever verdict happened to be first.
    verdict = forms.ChoiceField(choices=[("", "— verdict —"), *Verdict.choices],
                                error_messages={"required": "Pick a verdict first."})
    strength = forms.TypedChoiceField(choices=[("", "—"), *Strength.choices], coerce=int,
                                      required=False, empty_value=None)
