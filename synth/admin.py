from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from annotate.admin import JobAdmin
from synth.models import CachedResponse, Constitution, ModelEndpoint, Principle, SynthesisJob, SyntheticRow
from synth.secrets import api_key_decrypt, base_url_normalise
from synth.services import (
    constitution_touch,
    endpoint_api_key_set,
    endpoint_check,
    endpoint_probe,
    endpoint_supports_text,
    endpoint_usage,
)


class ModelEndpointForm(forms.ModelForm):
    # Write-only: never rendered back (render_value=False), blank keeps the stored key.
    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                              help_text="Stored encrypted and never shown again. Leave blank to keep the current key.")
    clear_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")

    class Meta:
        model = ModelEndpoint
        fields = ["name", "kind", "path", "base_url", "dtype", "device", "max_concurrency", "requests_per_minute",
                  "timeout_s", "max_retries", "cost_per_million_input", "cost_per_million_output",
                  "allowed_projects", "allowed_users", "max_cost_per_run"]

    def clean(self):
        """An HTTP endpoint is checked before it is saved: the server answers at the (normalised) base URL,
        serves the model, and what it supports is kept (``synth.services.endpoint_probe``)."""
        data = super().clean()
        if data.get("kind") == ModelEndpoint.Kind.OPENAI and data.get("base_url") and not self.errors:
            key = "" if data.get("clear_api_key") else (
                data.get("api_key") or api_key_decrypt(self.instance.api_key_encrypted))
            try:
                self.instance.capabilities = endpoint_probe(
                    base_url=data["base_url"], model=data.get("path", ""), api_key=key,
                    timeout=min(data.get("timeout_s") or 30.0, 30.0))
            except ValidationError as exc:
                for field, messages_ in exc.message_dict.items():
                    self.add_error(field if field in self.fields else None, messages_)
            else:
                data["base_url"] = base_url_normalise(data["base_url"])
        return data


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(admin.ModelAdmin):
    form = ModelEndpointForm
    list_display = ["name", "kind", "path", "base_url", "has_key", "supports", "created_by_job_id"]
    search_fields = ["name"]
    readonly_fields = ["usage", "supports"]
    filter_horizontal = ["allowed_projects", "allowed_users"]
    actions = ["check_connection"]

    @admin.display(description="Server supports")
    def supports(self, obj):
        return endpoint_supports_text(endpoint=obj)

    @admin.action(description="Check the connection (and what each server supports)")
    def check_connection(self, request, queryset):
        for endpoint in queryset:
            try:
                endpoint_check(endpoint=endpoint)
            except ValidationError as exc:
                self.message_user(request, f"{endpoint.name}: {' '.join(exc.messages)}", level=messages.ERROR)
            else:
                self.message_user(request, f"{endpoint.name}: {endpoint_supports_text(endpoint=endpoint)}")

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
    list_display = ["id", "project", "kind", "endpoint", "status", "progress", "total", "cost", "prompt_tokens",
                    "completion_tokens", "attempt", "created_at"]
    list_filter = ["kind", "status"]


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


@admin.register(SyntheticRow)
class SyntheticRowAdmin(admin.ModelAdmin):
    """What synthesis made, with its lineage: read only (jobs write it)."""

    list_display = ["id", "project", "job", "kind", "depth", "endpoint", "created_at"]
    list_filter = ["kind", "depth"]
    readonly_fields = [f.name for f in SyntheticRow._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
