"""Reconciliation: per provider, an optional reporting credential; per provider and UTC day, how the check
went; per provider, day and model, the ledger's figures beside the provider's and their verdict."""

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from providers.crypto import EncryptedField
from providers.models import URLField

# Kinds whose usage and cost reports aspweb reads: OpenAI's and Anthropic's organisation reports, OpenRouter's
# stats of each generation.
REPORTING_KINDS = ("openai", "anthropic", "openrouter")
# Kinds whose reports the provider's own API key reads: a reporting key of their own is optional.
OWN_KEY_KINDS = ("openrouter",)


class ReportingCredential(models.Model):
    """An organisation admin key that reads usage and cost reports (never makes calls), encrypted like
    provider keys and never shown again; with the ids that restrict the reports to aspweb's own traffic."""

    provider = models.OneToOneField("providers.Provider", on_delete=models.CASCADE, related_name="reporting")
    admin_key = EncryptedField()
    api_key_id = models.CharField(
        max_length=100, blank=True,
        help_text="The provider's id of the API key aspweb calls with (OpenAI key_…, Anthropic apikey_…): usage "
                  "of other keys of the organisation is left out.")
    project_id = models.CharField(
        max_length=100, blank=True,
        help_text="OpenAI project (proj_…) or Anthropic workspace (wrkspc_…) that only aspweb uses: costs are "
                  "restricted to it. Costs cannot be split per key.")
    tolerance_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal(1),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
        help_text="A difference up to this share of the larger figure still matches.")
    alert_emails = models.JSONField(default=list, blank=True, help_text="Who gets drift alerts by e-mail.")
    alert_webhook_url = URLField(max_length=500, blank=True,
                                 help_text="Slack-compatible incoming webhook for drift alerts.")
    last_error = models.CharField(max_length=300, blank=True, help_text="Plain words; never a secret.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Reporting key of {self.provider}"


class DayCheck(models.Model):
    """One provider's UTC day: checked (with its verdict), not checked yet (the day is open, or the report
    could not be fetched and is tried again), or failed for a reason to fix (a wrong key)."""

    class State(models.TextChoices):
        MATCH = "match", "Matches"
        DRIFT = "drift", "Drift"
        PENDING = "pending", "Not checked yet"
        FAILED = "failed", "Could not check"

    provider = models.ForeignKey("providers.Provider", on_delete=models.CASCADE, related_name="day_checks")
    day = models.DateField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    message = models.CharField(max_length=300, blank=True)
    cost_scope = models.CharField(max_length=200, blank=True)
    ledger_cost = models.DecimalField(max_digits=22, decimal_places=10, default=0)
    provider_cost = models.DecimalField(max_digits=22, decimal_places=10, null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # Set once, by whoever flips it first: a drift alerts once per provider and day, however often it is checked.
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["provider", "-day"]
        constraints = [models.UniqueConstraint(fields=["provider", "day"], name="reconcile_day_once")]

    def __str__(self) -> str:
        return f"{self.provider} {self.day}: {self.state}"


class Comparison(models.Model):
    """The ledger beside the provider for one model on one day."""

    class Status(models.TextChoices):
        MATCH = "match", "Matches"
        DRIFT = "drift", "Drift"
        MISSING_IN_LEDGER = "missing_in_ledger", "Missing in the ledger"
        MISSING_AT_PROVIDER = "missing_at_provider", "Missing at the provider"

    day_check = models.ForeignKey(DayCheck, on_delete=models.CASCADE, related_name="comparisons")
    model_name = models.CharField(max_length=200)
    status = models.CharField(max_length=24, choices=Status.choices)
    # Tokens match and the cost does not: the price is the likely cause.
    price_drift = models.BooleanField(default=False)
    ledger_requests = models.PositiveIntegerField(default=0)
    provider_requests = models.PositiveIntegerField(null=True, blank=True, help_text="Where the provider reports them.")
    ledger_input_tokens = models.PositiveBigIntegerField(default=0)
    provider_input_tokens = models.PositiveBigIntegerField(default=0)
    ledger_cache_read_tokens = models.PositiveBigIntegerField(default=0)
    provider_cache_read_tokens = models.PositiveBigIntegerField(default=0)
    ledger_cache_write_tokens = models.PositiveBigIntegerField(default=0)
    provider_cache_write_tokens = models.PositiveBigIntegerField(default=0)
    ledger_cache_write_1h_tokens = models.PositiveBigIntegerField(default=0)
    provider_cache_write_1h_tokens = models.PositiveBigIntegerField(default=0)
    ledger_output_tokens = models.PositiveBigIntegerField(default=0)
    provider_output_tokens = models.PositiveBigIntegerField(default=0)
    ledger_cost = models.DecimalField(max_digits=22, decimal_places=10, default=0)
    provider_cost = models.DecimalField(max_digits=22, decimal_places=10, null=True, blank=True)

    class Meta:
        ordering = ["day_check", "model_name"]
        constraints = [models.UniqueConstraint(fields=["day_check", "model_name"], name="reconcile_model_once")]

    def __str__(self) -> str:
        return f"{self.model_name}: {self.status}"

    @property
    def difference(self) -> Decimal | None:
        return None if self.provider_cost is None else self.provider_cost - self.ledger_cost
