from django import forms
from django.contrib import admin

from annotate.admin import JobAdmin
from synth.models import CachedResponse, Constitution, ModelEndpoint, Principle, SynthesisJob
from synth.services import constitution_touch, endpoint_api_key_set, endpoint_usage


class ModelEndpointForm(forms.ModelForm):
    # Write-only: never rendered back (render_value=False), blank keeps the stored key.
    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                              help_text="Stored encrypted and never shown again. Leave blank to keep the current key.")
    clear_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")

    class Meta:
        model = ModelEndpoint
        fields = ["name", "kind", "path", "base_url", "dtype", "device", "max_concurrency", "requests_per_minute",
                  "timeout_s", "max_retries", "cost_per_million_input", "cost_per_million_output"]


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(admin.ModelAdmin):
    form = ModelEndpointForm
    list_display = ["name", "kind", "path", "base_url", "has_key", "created_by_job_id"]
    search_fields = ["name"]
    readonly_fields = ["usage"]

    @admin.display(boolean=True, description="API key")
    def has_key(self, obj):
        return obj.has_api_key

    @admin.display(description="Usage (paid requests, tokens, cost, cache hits)")
    def usage(self, obj):
        return endpoint_usage(endpoint=obj) if obj.pk else "–"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if form.cleaned_data.get("clear_api_key"):
            endpoint_api_key_set(endpoint=obj, api_key="")
        elif form.cleaned_data.get("api_key"):
            endpoint_api_key_set(endpoint=obj, api_key=form.cleaned_data["api_key"])


@admin.register(CachedResponse)
class CachedResponseAdmin(admin.ModelAdmin):
    list_display = ["id", "endpoint", "key", "prompt_tokens", "completion_tokens", "hits", "created_at"]
    list_filter = ["endpoint"]

    def has_add_permission(self, request):
        return False


@admin.register(SynthesisJob)
class SynthesisJobAdmin(JobAdmin):
    list_display = ["id", "project", "endpoint", "status", "progress", "total", "attempt", "created_at"]
    list_filter = ["status"]


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
