from django import forms

from annotate.labels import DECISIVE, RATIONALE_MAX_LENGTH, TIME_SPENT_MAX_MS, Strength, Verdict
from annotate.services import LEASE_MINUTES_MAX, OVERLAP_MAX

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
    format = forms.ChoiceField(choices=[], required=False, help_text="auto: recognised from the first record; "
                                                                     "any other file: map its columns after upload.")

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

    def clean_format(self) -> str:
        return self.cleaned_data.get("format") or "auto"

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


class ProjectForm(forms.Form):
    """A new project's settings. The bounds are the services' (``annotate.services.project_settings_clean``,
    which checks them again with the name's uniqueness)."""

    task_kind = forms.ChoiceField(label="Kind", widget=forms.RadioSelect, initial="pairwise",
                                  choices=[("pairwise", "Pairwise: which of two responses is better"),
                                           ("steps", "Steps: rate each reasoning step of a solution")])
    name = forms.CharField(max_length=200)
    guidelines = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 8}),
                                 help_text="Markdown: what annotators read before and while they label.")
    criteria = forms.CharField(
        required=False, label="Criteria",
        widget=forms.TextInput(attrs={"data-tags": "", "placeholder": "helpfulness, harmlessness",
                                      "autocomplete": "off"}),
        help_text="Optional: aspects each label also gets a verdict on. Separate them with commas or Enter.")
    overlap = forms.IntegerField(min_value=1, max_value=OVERLAP_MAX, initial=1, label="Labels per item (overlap)",
                                 help_text="How many people label each item.")
    gold_rate = forms.FloatField(min_value=0, max_value=1, initial=0.0, label="Gold rate",
                                 widget=forms.NumberInput(attrs={"step": "0.01"}),
                                 help_text="Share of served items that are gold (known answer) items, 0 to 1.")
    lease_minutes = forms.IntegerField(min_value=1, max_value=LEASE_MINUTES_MAX, initial=30,
                                       label="Lease (minutes)",
                                       help_text="An item an annotator opened and left returns to the queue "
                                                 "after this long.")
    step_mode = forms.ChoiceField(required=False, initial="rate_all", label="Step mode",
                                  choices=[("rate_all", "Rate every step"),
                                           ("first_error", "Stop at the first error (PRM800K)")],
                                  help_text="Steps projects only.")

    def clean_criteria(self) -> list[str]:
        """Names split on commas (the tag input joins its chips with commas), blanks and repeats dropped."""
        names: list[str] = []
        for part in self.cleaned_data["criteria"].split(","):
            name = part.strip()
            if name and name not in names:
                names.append(name)
        return names

    def project_fields(self) -> dict:
        """What ``annotate.services.project_create`` takes."""
        data = dict(self.cleaned_data)
        if data["task_kind"] != "steps" or not data.get("step_mode"):
            data["step_mode"] = "rate_all"
        return data


ROLE_CHOICES = [("annotator", "Annotator"), ("researcher", "Researcher")]


class MemberInviteForm(forms.Form):
    user = forms.CharField(label="Username or email", max_length=254)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial="annotator")


class AccountCreateForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    email = forms.EmailField(required=False)
    password = forms.CharField(required=False, strip=False,
                               widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                               help_text="Leave empty to generate one. It is shown once, on the next page.")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial="annotator")


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)
