import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class UsageRecord(models.Model):
    """One call to a provider, whatever its outcome. Provider and model names are copied so the
    ledger stays readable after a rename; the foreign keys protect history from deletion."""

    class Source(models.TextChoices):
        PLAYGROUND = "playground"
        GATEWAY = "gateway"
        CLI = "cli"

    class Status(models.TextChoices):
        OK = "ok"
        ERROR = "error"
        CANCELLED = "cancelled"

    request_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source = models.CharField(max_length=16, choices=Source.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    error_kind = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=500, blank=True, help_text="Plain words; never a secret.")
    finish_reason = models.CharField(max_length=32, blank=True)

    api_key = models.ForeignKey("providers.ApiKey", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="usage_records")
    provider = models.ForeignKey("providers.Provider", null=True, on_delete=models.PROTECT,
                                 related_name="usage_records")
    model = models.ForeignKey("providers.Model", null=True, on_delete=models.PROTECT,
                              related_name="usage_records")
    price = models.ForeignKey("providers.Price", null=True, blank=True, on_delete=models.PROTECT)
    provider_name = models.CharField(max_length=64)
    model_name = models.CharField(max_length=200)

    input_tokens = models.PositiveIntegerField(default=0, help_text="Uncached input tokens.")
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0, help_text="Output tokens, reasoning included.")
    reasoning_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=18, decimal_places=10, default=0)
    # What the provider itself said the call cost, where it says (the Claude CLI does).
    reported_cost = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    # Answered from the gateway's response cache: no provider was called.
    cached = models.BooleanField(default=False)

    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            models.Index(fields=["provider", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.provider_name}/{self.model_name} {self.status} {self.created_at:%Y-%m-%d %H:%M}"
