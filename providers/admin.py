from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from aspweb.forms import bounded_formfield, integer_bounds

from .forms import plain
from .models import Model, Price, Provider


class ProviderAdminForm(forms.ModelForm):
    """The key is write-only here too: the field never renders the stored value."""

    api_key = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the stored key.",
    )

    class Meta:
        model = Provider
        fields = ["name", "kind", "base_url", "extra", "enabled", "timeout_seconds", "max_retries", "archived_at"]

    def save(self, commit: bool = True) -> Provider:
        provider = super().save(commit=False)
        if self.cleaned_data.get("api_key"):
            provider.api_key = self.cleaned_data["api_key"]
        if commit:
            provider.save()
        return provider


class BoundedIntegersAdmin:
    """Integer fields with bounds of their own get the product's form field: the same range, enforced and
    worded as on aspweb's pages ("Enter a number from 1 to 600.")."""

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if integer_bounds(db_field) is not None:
            return bounded_formfield(db_field, **kwargs)
        return super().formfield_for_dbfield(db_field, request, **kwargs)


class ModelInline(BoundedIntegersAdmin, admin.TabularInline):
    model = Model
    extra = 0
    fields = ["name", "display_name", "enabled", "context_window"]


@admin.register(Provider)
class ProviderAdmin(BoundedIntegersAdmin, admin.ModelAdmin):
    form = ProviderAdminForm
    list_display = ["name", "kind", "enabled", "archived_at", "masked_key", "last_check_ok"]
    list_filter = ["kind", "enabled"]
    readonly_fields = ["masked_key", "last_checked_at", "last_check_ok", "last_check_latency_ms",
                       "last_check_message"]
    inlines = [ModelInline]

    @admin.display(description="API key")
    def masked_key(self, obj: Provider) -> str:
        if obj.api_key and obj.kind_preset.secrets:
            return "stored"  # a JSON object of secrets: its last characters would be a secret's
        return str(obj.api_key) if obj.api_key else "—"


class PriceInline(admin.TabularInline):
    model = Price
    extra = 0
    fields = ["effective_from", "input", "output", "cache_read", "cache_write", "cache_write_1h", "tier_summary",
              "source", "created_by"]
    readonly_fields = fields

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Price]:
        return super().get_queryset(request).prefetch_related("tiers")

    @admin.display(description="Long-context tiers")
    def tier_summary(self, obj: Price) -> str:
        return "; ".join(
            f"above {tier.above:,}: " + ", ".join(f"{name} {plain(getattr(tier, name))}" for name in Price.PRICE_FIELDS
                                                 if getattr(tier, name) is not None)
            for tier in obj.tier_list
        ) or "—"


@admin.register(Model)
class ModelAdmin(BoundedIntegersAdmin, admin.ModelAdmin):
    list_display = ["name", "provider", "enabled", "context_window"]
    list_filter = ["provider", "enabled"]
    search_fields = ["name", "display_name"]
    inlines = [PriceInline]
