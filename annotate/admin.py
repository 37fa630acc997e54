from django.contrib import admin

from annotate.models import Completion, Membership, PairItem, PairLabel, Project, Prompt


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "task_kind", "overlap", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "source", "__str__"]
    list_filter = ["project"]
    list_select_related = ["project"]


@admin.register(Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt_id", "model_name", "__str__"]
    raw_id_fields = ["prompt"]


@admin.register(PairItem)
class PairItemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "prompt_id", "completion_a_id", "completion_b_id"]
    list_filter = ["project"]
    raw_id_fields = ["prompt", "completion_a", "completion_b"]


@admin.register(PairLabel)
class PairLabelAdmin(admin.ModelAdmin):
    list_display = ["id", "item_id", "annotator", "verdict", "strength", "shown_order", "time_spent_ms"]
    list_filter = ["verdict", "item__project"]
    raw_id_fields = ["item"]
