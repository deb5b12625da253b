import json
from decimal import Decimal
from typing import Any

from django import forms
from django.core.validators import RegexValidator
from django.utils import timezone

from aspweb import outbound
from aspweb.forms import BoundedIntegerField, bounded_formfield

from .crypto import reveal
from .kinds import EXTRA_FIELDS, SECRET_FIELDS, Kind
from .models import (
    MODEL_NAME_MAX,
    PROVIDER_NAME_MAX,
    Model,
    Price,
    Provider,
    price_field_kwargs,
)


class SecretTextarea(forms.Textarea):
    """A text area for a secret too long for a password input (a service account's JSON key): like a password
    input it renders empty, even when the form comes back with an error."""

    def format_value(self, value: Any) -> None:
        return None


class ProviderForm(forms.ModelForm):
    """Asks only what the provider's kind needs. On edit, a blank key keeps the stored key."""

    api_key = forms.CharField(
        label="API key", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )

    class Meta:
        formfield_callback = bounded_formfield
        model = Provider
        fields = ["name", "base_url", "enabled", "timeout_seconds", "max_retries"]
        help_texts = {"name": f"Short and unique, at most {PROVIDER_NAME_MAX} characters: it is how applications "
                              "address this provider (NAME/model)."}

    def __init__(self, *args: Any, kind: Kind, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.instance.kind = kind.name
        editing = self.instance.pk is not None
        stored_key = self.instance.api_key if editing else ""

        if kind.asks_base_url:
            url = self.fields["base_url"]
            url.label = kind.base_url_label
            url.required = kind.base_url_need == "required"
            url.help_text = kind.base_url_help or (f"Leave blank for {kind.base_url}" if kind.base_url else "")
            url.widget.attrs["placeholder"] = kind.base_url or "https://…"
        else:
            del self.fields["base_url"]

        if kind.secrets:
            del self.fields["api_key"]
        elif kind.asks_key:
            key = self.fields["api_key"]
            key.required = kind.needs_key and not stored_key
            if kind.key_format == "service_account":
                # Pasted whole, never shown again: the text area starts empty, as the password input does.
                key.label = kind.key_label
                key.widget = SecretTextarea(attrs={"rows": 6, "autocomplete": "off", "spellcheck": "false",
                                                   "placeholder": '{"type": "service_account", …}'})
                key.help_text = ("A key is stored; paste a new one to replace it, or leave blank to keep it."
                                 if stored_key else
                                 "The JSON key file of a service account with the Vertex AI User role "
                                 "(IAM & Admin → Service accounts → Keys → Add key). Stored encrypted, never "
                                 "shown again.")
            elif stored_key:
                key.help_text = (f"Stored key ends in {stored_key.last4}; leave blank to keep it." if stored_key.last4
                                 else "A key is stored; leave blank to keep it.")
            elif kind.key_env:
                key.help_text = f"The key you would put in {kind.key_env}. Stored encrypted."
        else:
            del self.fields["api_key"]

        for name in kind.extra:
            spec = EXTRA_FIELDS[name]
            self.fields[name] = forms.CharField(
                label=spec.label, required=spec.required, help_text=spec.help, max_length=300,
                initial=self.instance.extra.get(name, spec.default),
                validators=[RegexValidator(spec.pattern, spec.pattern_words)] if spec.pattern else [],
            )
        self.stored_secrets = stored_secrets(self.instance.api_key) if editing and kind.secrets else {}
        for name in kind.secrets:
            secret = SECRET_FIELDS[name]
            self.fields[name] = forms.CharField(
                label=secret.label, required=False, strip=True, max_length=2000,
                help_text="Stored; leave blank to keep it." if self.stored_secrets.get(name) else secret.help,
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
            )

    def clean_api_key(self) -> str:
        key = self.cleaned_data.get("api_key") or ""
        if key and self.kind.key_format == "service_account":
            # Imported here: google-auth is loaded only by the workers of a team that uses Vertex AI.
            from .adapters.vertex_auth import KeyProblem, parse_key

            try:
                parse_key(key)
            except KeyProblem as exc:
                raise forms.ValidationError(str(exc)) from None
        return key

    def clean_name(self) -> str:
        # The unique constraint only covers active providers, which the form cannot check by itself
        # (archived_at is not one of its fields).
        name = self.cleaned_data["name"]
        if Provider.objects.active().filter(name=name).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("A provider with this name already exists.")
        return name

    def clean_base_url(self) -> str:
        """Local servers (Ollama, vLLM) are fine; a cloud machine's metadata service, which hands out its
        credentials, never is."""
        url = self.cleaned_data["base_url"]
        if url:
            try:
                outbound.check_not_metadata(url)
            except outbound.Refused as exc:
                raise forms.ValidationError(f"{exc} Provider URLs may be local or private, but never "
                                            "link-local or a cloud metadata service.") from None
        return url

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        self.key_changed = bool(data.get("api_key"))
        if self.kind.secrets:
            self.secrets = self._clean_secrets(data)
            self.key_changed = self.secrets != self.stored_secrets
        return data

    def _clean_secrets(self, data: dict[str, Any]) -> dict[str, str]:
        """The secrets to store: a blank field keeps the stored one, and without an access key ID none is
        kept (the server's default credentials are used). A key ID needs its secret, and a secret its ID."""
        key_id = data.get("aws_access_key_id")
        entered = {name: data[name] for name in self.kind.secrets if data.get(name)}
        if not key_id:
            if entered:
                self.add_error("aws_access_key_id", "Enter the access key ID these secrets belong to, or leave the "
                                                    "secrets blank to use the server's default AWS credentials.")
            return {}
        secrets = {**self.stored_secrets, **entered}
        if "aws_secret_access_key" in entered and "aws_session_token" not in entered:
            secrets.pop("aws_session_token", None)  # a new key pair does not keep the old pair's token
        if not secrets.get("aws_secret_access_key"):
            self.add_error("aws_secret_access_key", "Enter the secret access key of this access key ID.")
        return secrets

    def save(self, commit: bool = True) -> Provider:
        provider = super().save(commit=False)
        if self.kind.secrets:
            if self.key_changed:
                provider.api_key = json.dumps(self.secrets) if self.secrets else ""
        elif self.key_changed:
            provider.api_key = self.cleaned_data["api_key"]
        provider.extra = {
            **{k: v for k, v in provider.extra.items() if k not in self.kind.extra},
            **{name: self.cleaned_data[name] for name in self.kind.extra if self.cleaned_data.get(name)},
        }
        if commit:
            provider.save()
        return provider

    def changed_settings(self) -> list[str]:
        changed = [f for f in self.changed_data if f != "api_key" and f not in self.kind.secrets]
        return ["extra" if f in self.kind.extra else f for f in changed]


def stored_secrets(value: Any) -> dict[str, str]:
    """The secrets of a kind that asks several (Kind.secrets), as stored in Provider.api_key."""
    try:
        secrets = json.loads(reveal(value) or "{}")
    except ValueError:
        return {}
    return {name: str(secret) for name, secret in secrets.items() if secret} if isinstance(secrets, dict) else {}


# Prices have 8 digits before the point (below $100,000,000 per 1M tokens) and 12 after.
price_kwargs = {"max_digits": price_field_kwargs["max_digits"], "decimal_places": price_field_kwargs["decimal_places"],
                "min_value": Decimal(0), "error_messages": {
                    "invalid": "Enter a price in USD per 1M tokens, such as 0.15.",
                    "min_value": "Enter a price from 0 up: prices cannot be negative.",
                    "max_whole_digits": "Enter a price below 100,000,000 (USD per 1M tokens).",
                    "max_digits": "Enter a price below 100,000,000 with at most 12 decimal places.",
                    "max_decimal_places": "Use at most 12 decimal places.",
                }}
# A tier's threshold is stored in a PositiveIntegerField, which PostgreSQL holds in 32 bits.
MAX_TIER_THRESHOLD = 2_147_483_647


def plain(value: Decimal) -> Decimal:
    """0.150000 -> 0.15 and 2.000000 -> 2, without the exponent normalize() gives 100 (1E+2)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def _plain_prices(prices: dict[str, Any]) -> dict[str, Any]:
    return {name: plain(value) if isinstance(value, Decimal) else value for name, value in prices.items()}


class PricesForm(forms.Form):
    """The five prices of a version or of one of its tiers, in USD per 1M tokens."""

    input = forms.DecimalField(label="Input", **price_kwargs)
    output = forms.DecimalField(label="Output", help_text="Reasoning tokens are billed as output.", **price_kwargs)
    cache_read = forms.DecimalField(label="Cache read", required=False, **price_kwargs,
                                    help_text="Blank: cached reads cost the input price.")
    cache_write = forms.DecimalField(
        label="Cache write (5 minutes)", required=False, **price_kwargs,
        help_text="Writes kept 5 minutes, or a provider's only cache writes. Blank: the input price.",
    )
    cache_write_1h = forms.DecimalField(
        label="Cache write (1 hour)", required=False, **price_kwargs,
        help_text="Writes kept 1 hour (Anthropic's extended cache). Blank: the 5-minute write price.",
    )


class PriceTierForm(PricesForm):
    """A long-context tier: once a call's prompt is above the threshold, every token of it is priced here."""

    above = BoundedIntegerField(label="Above (prompt tokens)", min_value=1, max_value=MAX_TIER_THRESHOLD)
    field_order = ["above"]


class BasePriceTierFormSet(forms.BaseFormSet):
    """The tiers of a new price version. Every row may be left blank, the prefilled ones too: a blank row
    is no tier, so clearing a row removes that tier from the new version."""

    def get_form_kwargs(self, index: int | None) -> dict[str, Any]:
        return {"empty_permitted": True}

    def clean(self) -> None:
        seen: set[int] = set()
        for form in self.forms:
            above = form.cleaned_data.get("above")
            if above is None:
                continue
            if above in seen:
                form.add_error("above", f"Another tier already starts above {above:,} prompt tokens.")
            seen.add(above)

    def tiers(self) -> list[dict[str, Any]]:
        """The filled rows, in price_set's shape."""
        return [{name: form.cleaned_data.get(name) for name in ("above", *Price.PRICE_FIELDS)}
                for form in self.forms if form.cleaned_data]


PriceTierFormSet = forms.formset_factory(PriceTierForm, formset=BasePriceTierFormSet, extra=1)


# The years a price version may start in: no model was called before 2000, and a change is announced months,
# not decades, ahead.
EARLIEST_PRICE_YEAR = 2000
LATEST_PRICE_YEARS_AHEAD = 10


class PriceForm(PricesForm):
    """A new price version with its long-context tiers (`self.tiers`). The form is valid only with its
    tiers: a version is saved whole or not at all."""

    effective_from = forms.DateTimeField(
        required=False, help_text="Blank: from now. Calls already recorded keep the price they had.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def __init__(self, data: Any = None, *args: Any, initial: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """`initial`: a version in price_set's shape (Price.as_dict), shown as written: 6, not 6.000000000000."""
        initial = initial or {}
        super().__init__(data, *args, initial=_plain_prices(initial), **kwargs)
        # Posted rows get no initial values: compared with nothing, any filled row is a tier.
        tiers = [_plain_prices(tier) for tier in initial.get("tiers", ())] if data is None else None
        self.tiers = PriceTierFormSet(data, prefix=self.add_prefix("tiers"), initial=tiers)

    def is_valid(self) -> bool:
        tiers_valid = self.tiers.is_valid()
        return super().is_valid() and tiers_valid and self._tiers_keep_cache_prices()

    def _tiers_keep_cache_prices(self) -> bool:
        """A tier that leaves blank a cache price the version sets would charge those tokens at the tier's own
        fallback, its input price: many times the cache price (Gemini's cache reads cost a quarter of its
        input). Ask for the tier's price rather than guess it."""
        complete = True
        for form in self.tiers.forms:
            tier = form.cleaned_data
            for name in ("cache_read", "cache_write", "cache_write_1h"):
                if tier and self.cleaned_data.get(name) is not None and tier.get(name) is None:
                    form.add_error(name, f"The version sets a {self.fields[name].label.lower()} price: set this "
                                         "tier's too (blank, it would be the tier's input price).")
                    complete = False
        return complete

    def prices(self) -> dict[str, Any]:
        """The version in price_set's shape."""
        return {**{name: self.cleaned_data.get(name) for name in Price.PRICE_FIELDS}, "tiers": self.tiers.tiers()}

    def clean_effective_from(self) -> Any:
        # Within reach of the calls it prices: a version from year 1 or 9999 is a typo, and the calendar's ends
        # overflow in the date arithmetic of the pages that show it.
        when = self.cleaned_data.get("effective_from") or timezone.now()
        now = timezone.now()
        if not EARLIEST_PRICE_YEAR <= when.year <= now.year + LATEST_PRICE_YEARS_AHEAD:
            raise forms.ValidationError(f"Enter a time from {EARLIEST_PRICE_YEAR} to "
                                        f"{now.year + LATEST_PRICE_YEARS_AHEAD}.")
        return when


class CatalogModelForm(forms.ModelForm):
    class Meta:
        formfield_callback = bounded_formfield
        model = Model
        fields = ["name", "display_name", "type", "enabled", "context_window", "max_output_tokens"]
        help_texts = {"name": f"The model id the provider's API expects, at most {MODEL_NAME_MAX} characters.",
                      "display_name": f"A friendlier name for lists, at most {MODEL_NAME_MAX} characters."}

    def __init__(self, *args: Any, provider: Provider, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.provider = provider
        if self.instance.pk:
            # Usage and routes point at the model by its provider-side id; it is not renamed.
            self.fields["name"].disabled = True
        # Left out (a form or file from before types), a model keeps its type, and a new one is a chat model.
        self.fields["type"].required = False

    def clean_type(self) -> str:
        return self.cleaned_data.get("type") or self.instance.type or Model.Type.CHAT

    def clean_name(self) -> str:
        # `provider` is not a form field, so the form alone would not check the unique constraint.
        name = self.cleaned_data["name"]
        if self.instance.provider.pk is None:  # a provider being created has no models yet
            return name
        if Model.objects.filter(provider=self.instance.provider, name=name).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("This provider already has a model with this name.")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        window, most = data.get("context_window"), data.get("max_output_tokens")
        if window and most and most > window:
            # A hard-limit budget reserves the answer's most: one larger than the window reserves for nothing.
            self.add_error("max_output_tokens", f"Enter at most the context window, {window:,} tokens: an answer "
                                                "shares the window with its prompt.")
        return data


class CatalogChoiceForm(forms.Form):
    """The models of one provider that the bulk price edit prices (its prices are a PriceForm's)."""

    models = forms.ModelMultipleChoiceField(
        queryset=Model.objects.none(), widget=forms.CheckboxSelectMultiple, label="Models",
        error_messages={"required": "Choose at least one model to price.",
                        "invalid_choice": "One of the chosen models is not in this provider's catalog."},
    )

    def __init__(self, *args: Any, provider: Provider, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["models"].queryset = provider.models.order_by("name")
