"""The forms of the judges' pages: a judge (created or changed in the app), a run, a pair to try."""

from __future__ import annotations

import copy

from django import forms
from django.contrib.auth.models import AbstractBaseUser

from annotate.models import Project
from judges.models import MODE_TEMPLATES, Judge
from judges.services import (
    MAX_NEW_TOKENS_MAX,
    MODE_TASK_KINDS,
    TEMPERATURE_MAX,
    TEMPLATE_MAX_LENGTH,
    VOTES_MAX,
    judge_problems,
)
from synth.models import Constitution
from synth.selectors import endpoints_usable


def project_modes(project: Project) -> list[tuple[str, str]]:
    """The judge modes that fit the project's task kind."""
    return [(mode, label) for mode, label in Judge.Mode.choices if MODE_TASK_KINDS[mode] == project.task_kind]


class JudgeForm(forms.Form):
    """A judge as the researcher sets it up. ``template`` is the template of the chosen mode (a judge keeps
    one per mode); the checks are ``judges.services.judge_problems``, each error on its field."""

    name = forms.CharField(max_length=200)
    endpoint = forms.ModelChoiceField(queryset=None, help_text="The endpoints you may use on this project.")
    mode = forms.ChoiceField()
    template = forms.CharField(max_length=TEMPLATE_MAX_LENGTH, strip=False,
                               widget=forms.Textarea(attrs={"rows": 16, "spellcheck": "false"}))
    constitution = forms.ModelChoiceField(queryset=Constitution.objects.all(), required=False,
                                          empty_label="None: one question, “Which response is better?”",
                                          help_text="Its principles' questions replace {question}.")
    principle_use = forms.ChoiceField(choices=Judge.PrincipleUse.choices, label="Principles")
    debiasing = forms.ChoiceField(choices=Judge.Debiasing.choices,
                                  help_text="Swap judges each pair in both orders (A first, then B first).")
    verdict_method = forms.ChoiceField(choices=Judge.VerdictMethod.choices, label="Verdict from")
    votes = forms.IntegerField(min_value=1, max_value=VOTES_MAX, initial=1,
                               help_text="Self-consistency: samples per order (generate method), majority vote.")
    temperature = forms.FloatField(min_value=0.0, max_value=TEMPERATURE_MAX, initial=0.0,
                                   help_text="Sampling temperature when votes > 1.")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=MAX_NEW_TOKENS_MAX, initial=256,
                                        label="Max new tokens", help_text="Generate method only.")

    def __init__(self, data=None, *, project: Project, user: AbstractBaseUser, judge: Judge | None = None,
                 **kwargs) -> None:
        self.judge = judge if judge is not None else Judge()
        modes = project_modes(project)
        if judge is None:
            mode = modes[0][0] if modes else Judge.Mode.PAIRWISE
            self.judge.mode = mode
        initial = {name: getattr(self.judge, name) for name in (
            "name", "mode", "principle_use", "debiasing", "verdict_method", "votes", "temperature", "max_new_tokens")}
        initial.update(endpoint=self.judge.endpoint_id, constitution=self.judge.constitution_id,
                       template=self.judge.active_template)
        super().__init__(data, initial=initial, **kwargs)
        self.fields["endpoint"].queryset = endpoints_usable(project=project, user=user)
        self.fields["mode"].choices = modes
        spec = MODE_TEMPLATES[self.judge.mode]
        self.fields["template"].help_text = Judge._meta.get_field(spec.field).help_text

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        judge = self.judge_build()
        for field, message in judge_problems(judge=judge).items():
            self.add_error(field if field in self.fields else None, message)
        return cleaned

    def judge_build(self) -> Judge:
        """The judge with the form's values, not saved (a copy: the stored judge is untouched until saved)."""
        judge = copy.copy(self.judge)
        data = self.cleaned_data
        for name in ("name", "endpoint", "mode", "constitution", "principle_use", "debiasing", "verdict_method",
                     "votes", "temperature", "max_new_tokens"):
            if name in data:
                setattr(judge, name, data[name])
        if "template" in data:
            setattr(judge, MODE_TEMPLATES[judge.mode].field, data["template"])
        return judge


class PairChoiceForm(forms.Form):
    """Which pair to preview or test on: an id of the project's, or empty for one drawn at random."""

    item = forms.IntegerField(required=False, min_value=1, label="Pair", help_text="Empty: a random pair.")
