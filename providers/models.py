from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from aspweb.forms import bounded_validators

from .crypto import EncryptedField
from .kinds import KIND_CHOICES, Kind, get_kind

name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    "Use letters, digits, dots, dashes and underscores, starting with a letter or digit "
    "(the name is used in model addresses like NAME/model).",
)


# The ranges a person may set. A whole call may take up to 10 minutes: a long reasoning answer takes a few,
# and a hard-limit budget holds its reservation for as long. Ten retries is more than any provider's
# rate limit needs (each waits up to PROVIDER_RETRY_MAX_SECONDS, all within the call's time limit).
TIMEOUT_SECONDS_RANGE = (1, 600)
MAX_RETRIES_RANGE = (0, 10)
# The largest context window published is 10M tokens; a hundred million leaves room and catches a typo.
TOKENS_RANGE = (1, 100_000_000)

# Longest names. A provider's and a model's make up the address PROVIDER/MODEL that applications send.
PROVIDER_NAME_MAX = 64
MODEL_NAME_MAX = 200


class URLField(models.URLField):
    """A URL field whose forms assume https:// when a scheme is left out (Django 6's default)."""

    def formfield(self, **kwargs: Any) -> Any:
        return super().formfield(**{"assume_scheme": "https", **kwargs})


class ProviderQuerySet(models.QuerySet["Provider"]):
    def active(self) -> "ProviderQuerySet":
        return self.filter(archived_at__isnull=True)


class Provider(models.Model):
    """A configured account at an LLM provider: kind, where to reach it, and its encrypted key."""

    name = models.CharField(max_length=PROVIDER_NAME_MAX, validators=[name_validator])
    kind = models.CharField(max_length=32, choices=KIND_CHOICES)
    base_url = URLField(max_length=500, blank=True)
    api_key = EncryptedField(blank=True)
    # Kind-specific settings (account_id, api_version, referer, title); never secrets.
    extra = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    timeout_seconds = models.PositiveIntegerField(
        "time limit (seconds)", default=120, validators=bounded_validators(*TIMEOUT_SECONDS_RANGE),
        help_text="Whole-call time limit, 1 to 600 seconds (10 minutes: a long reasoning answer takes a few). "
                  "Retries and their waits count against it.",
    )
    max_retries = models.PositiveSmallIntegerField(
        "retries", default=3, validators=bounded_validators(*MAX_RETRIES_RANGE),
        help_text="Retries of a failed call before the first token (rate limits, 5xx, timeouts), 0 to 10: "
                  "they all fit within the time limit, and a wait that would pass it is not made.",
    )
    archived_at = models.DateTimeField(null=True, blank=True)

    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_check_ok = models.BooleanField(null=True)
    last_check_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_check_message = models.CharField(max_length=500, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProviderQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # Archived providers keep their name for the ledger; a new provider may reuse it.
            models.UniqueConstraint(
                fields=["name"], condition=Q(archived_at__isnull=True), name="provider_name_unique_active",
                violation_error_message="A provider with this name already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def kind_preset(self) -> Kind:
        return get_kind(self.kind)

    @property
    def effective_base_url(self) -> str:
        return self.base_url or self.kind_preset.base_url

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def time_limit(self) -> int:
        """The whole-call time limit calls go by: the setting, within its range even for a row that was
        written past the form (the shell, an old version)."""
        low, high = TIMEOUT_SECONDS_RANGE
        return min(max(self.timeout_seconds, low), high)

    @property
    def retry_limit(self) -> int:
        """The most retries a call makes, within its range likewise."""
        low, high = MAX_RETRIES_RANGE
        return min(max(self.max_retries, low), high)

    @property
    def health(self) -> str:
        if self.last_check_ok is None:
            return "unknown"
        return "ok" if self.last_check_ok else "failing"


class Model(models.Model):
    """One model offered by a provider, named as the provider's API names it."""

    class Type(models.TextChoices):
        CHAT = "chat", "Chat"
        EMBEDDING = "embedding", "Embedding"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=MODEL_NAME_MAX, help_text="The model id the provider's API expects.")
    display_name = models.CharField(max_length=MODEL_NAME_MAX, blank=True)
    type = models.CharField(
        max_length=16, choices=Type.choices, default=Type.CHAT,
        help_text="What the model does: chat (the playground, /v1/chat/completions, /v1/messages) or "
                  "embedding (/v1/embeddings). A call of the other kind is refused.")
    enabled = models.BooleanField(default=True)
    context_window = models.PositiveIntegerField(null=True, blank=True, validators=bounded_validators(*TOKENS_RANGE),
                                                 help_text="Tokens, prompt and answer together.")
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=bounded_validators(*TOKENS_RANGE),
        help_text="The most tokens one answer can have, as the provider publishes it. "
        "Hard-limit budgets reserve it for providers that cannot cap an answer (the Claude CLI).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "name"], name="model_unique_per_provider",
                violation_error_message="This provider already has a model with this name.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider.name}/{self.name}"

    @property
    def label(self) -> str:
        return self.display_name or self.name

    def price_at(self, when: datetime) -> "Price | None":
        """The price version in force at `when`: the latest one effective at or before it."""
        return self.prices.filter(effective_from__lte=when).order_by("-effective_from", "-id").first()

    def current_price(self) -> "Price | None":
        return self.price_at(timezone.now())


# Twelve places: some published prices per 1M tokens have more than six (OpenRouter's $0.0833333 writes).
price_field_kwargs = {
    "max_digits": 20,
    "decimal_places": 12,
    "validators": [MinValueValidator(Decimal(0), "Prices cannot be negative.")],
}


class Price(models.Model):
    """A version of a model's prices in USD per 1M tokens, in force from `effective_from` until the next.

    Prices are never edited in place: a change is a new version, so every usage record keeps pointing at
    the version it was priced with. One price per token class the providers bill: uncached input, output
    (reasoning included), cache reads, cache writes kept 5 minutes (or a provider's only write duration)
    and cache writes kept 1 hour. An empty cache price means those tokens cost the input price (an empty
    1-hour write price: the 5-minute one, where set). `tiers` hold long-context prices (PriceTier).
    """

    class Source(models.TextChoices):
        DEFAULT = "default", "genai-prices default"
        ADMIN = "admin", "Set by an admin"
        CONFIG = "config", "Config file"
        FREE = "free", "Local model (free)"

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="prices")
    effective_from = models.DateTimeField(default=timezone.now)
    input = models.DecimalField(**price_field_kwargs)
    output = models.DecimalField(**price_field_kwargs)
    cache_read = models.DecimalField(null=True, blank=True, **price_field_kwargs)
    cache_write = models.DecimalField(null=True, blank=True, **price_field_kwargs)
    cache_write_1h = models.DecimalField(null=True, blank=True, **price_field_kwargs)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.ADMIN)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="price_unique_effective_from"),
        ]

    PRICE_FIELDS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d %H:%M}"

    @property
    def tier_list(self) -> list["PriceTier"]:
        """The long-context tiers, lowest threshold first. Read from the prefetch where there is one (the
        cached price versions have theirs, providers.prices.model_prices); an unsaved version has none."""
        if self.pk is None:
            return []
        return sorted(self.tiers.all(), key=lambda tier: tier.above)

    def as_dict(self) -> dict[str, Any]:
        """The prices and tiers, comparable between versions (price_set adds no version equal to the one
        in force)."""
        return {**{name: getattr(self, name) for name in self.PRICE_FIELDS},
                "tiers": [tier.as_dict() for tier in self.tier_list]}


class PriceTier(models.Model):
    """A long-context tier of a price version: a call whose prompt is above `above` tokens is priced, every
    token of it, at this tier's prices (the highest tier whose threshold the prompt passes). The prompt is
    counted as the providers count it for their tiers: every input token, cached or not. Empty cache prices
    fall back as in Price, to this tier's input (or 5-minute write) price."""

    price = models.ForeignKey(Price, on_delete=models.CASCADE, related_name="tiers")
    above = models.PositiveIntegerField(help_text="Prompt tokens (cached ones included) above which this tier "
                                                  "prices the whole call.")
    input = models.DecimalField(**price_field_kwargs)
    output = models.DecimalField(**price_field_kwargs)
    cache_read = models.DecimalField(null=True, blank=True, **price_field_kwargs)
    cache_write = models.DecimalField(null=True, blank=True, **price_field_kwargs)
    cache_write_1h = models.DecimalField(null=True, blank=True, **price_field_kwargs)

    class Meta:
        ordering = ["price", "above"]
        constraints = [
            models.UniqueConstraint(fields=["price", "above"], name="price_tier_unique_threshold",
                                    violation_error_message="Two tiers of one price cannot share a threshold."),
        ]

    def __str__(self) -> str:
        return f"{self.price} above {self.above} tokens"

    def as_dict(self) -> dict[str, Any]:
        return {"above": self.above, **{name: getattr(self, name) for name in Price.PRICE_FIELDS}}
