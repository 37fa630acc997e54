from django.contrib import admin

from annotate.admin import JobAdmin
from judges.models import AIJudgment, Constitution, Judge, JudgeRun, Principle
from judges.services import constitution_touch, judge_version_bump_if_changed


class PrincipleInline(admin.StackedInline):
    model = Principle
    extra = 1


@admin.register(Constitution)
class ConstitutionAdmin(admin.ModelAdmin):
    """Saving a change to the principles raises the constitution's version."""

    list_display = ["name", "version", "updated_at"]
    readonly_fields = ["version"]
    inlines = [PrincipleInline]

    def save_related(self, request, form, formsets, change):
        changed = any(f.has_changed() for f in formsets)
        super().save_related(request, form, formsets, change)
        if change and changed:
            constitution_touch(constitution=form.instance)


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    """Changing what the judge does raises its template version: new judgments, old ones kept."""

    list_display = ["name", "endpoint", "mode", "debiasing", "verdict_method", "votes", "template_version"]
    readonly_fields = ["template_version"]

    def save_model(self, request, obj, form, change):
        if change:
            judge_version_bump_if_changed(judge=obj)
        super().save_model(request, obj, form, change)


@admin.register(JudgeRun)
class JudgeRunAdmin(JobAdmin):
    list_display = ["id", "judge", "project", "status", "progress", "total", "attempt"]
    list_filter = ["status"]


@admin.register(AIJudgment)
class AIJudgmentAdmin(admin.ModelAdmin):
    list_display = ["id", "judge", "item_id", "verdict_ab", "verdict_ba", "verdict", "probability", "vote_share"]
    list_filter = ["judge", "verdict"]
    raw_id_fields = ["item", "run"]
