from django.contrib import admin

from synth.models import ModelEndpoint, SynthesisJob


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "path", "base_url", "created_by_job_id"]
    search_fields = ["name"]


@admin.register(SynthesisJob)
class SynthesisJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "endpoint", "status", "progress", "total", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["status", "progress", "total", "error", "started_at", "finished_at"]
