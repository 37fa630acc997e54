from django.contrib import admin
from django.utils.html import format_html_join

from annotate.admin import JobAdmin
from judges.models import AIJudgment, Judge, JudgeRun
from judges.services import judge_version_bump_if_changed


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    """Changing what the judge does raises its template version: new judgments, old ones kept."""

    list_display = ["name", "endpoint", "mode", "debiasing", "verdict_method", "votes", "template_version"]
    readonly_fields = ["template_version", "constitution_version"]
    fieldsets = [
        (None, {"fields": ["name", "endpoint", "mode", "template_version"]}),
        ("Templates", {
            "description": "The judge uses the template of its mode; the other two are kept for when the mode changes.",
            "fields": ["pairwise_template", "pointwise_template", "step_template"],
        }),
        ("Constitution", {"fields": ["constitution", "constitution_version", "principle_use"]}),
        ("Verdicts", {"fields": ["debiasing", "verdict_method", "votes", "temperature", "max_new_tokens"]}),
    ]

    def save_model(self, request, obj, form, change):
        # A new judge records its constitution's version; a changed one may take a new template version.
        judge_version_bump_if_changed(judge=obj)
        super().save_model(request, obj, form, change)


@admin.register(JudgeRun)
class JudgeRunAdmin(JobAdmin):
    list_display = ["id", "judge", "project", "status", "progress", "total", "unparsed_share", "attempt"]
    list_filter = ["status"]
    exclude = ["unparsed_examples"]
    readonly_fields = ["answers", "unparsed", "unparsed_shown"]

    @admin.display(description="Unparsed answers")
    def unparsed_share(self, obj: JudgeRun) -> str:
        return f"{obj.unparsed} of {obj.answers}" if obj.answers else "-"

    @admin.display(description="Unparsed examples")
    def unparsed_shown(self, obj: JudgeRun) -> str:
        # Model text: escaped by format_html_join, never marked safe as it is.
        return format_html_join("", "<pre>{}</pre>", ((text,) for text in obj.unparsed_examples)) or "-"


@admin.register(AIJudgment)
class AIJudgmentAdmin(admin.ModelAdmin):
    list_display = ["id", "judge", "item_id", "verdict_ab", "verdict_ba", "verdict", "probability", "vote_share"]
    list_filter = ["judge", "verdict"]
    raw_id_fields = ["item", "run"]
