from django.contrib import admin

from judges.models import AIJudgment, Judge, JudgeRun


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    list_display = ["name", "endpoint", "debiasing", "verdict_method", "template_version"]


@admin.register(JudgeRun)
class JudgeRunAdmin(admin.ModelAdmin):
    list_display = ["id", "judge", "project", "status", "progress", "total"]
    readonly_fields = ["status", "progress", "total", "error", "finished_at"]


@admin.register(AIJudgment)
class AIJudgmentAdmin(admin.ModelAdmin):
    list_display = ["id", "judge", "item_id", "verdict_ab", "verdict_ba", "verdict", "probability"]
    list_filter = ["judge", "verdict"]
    raw_id_fields = ["item", "run"]
