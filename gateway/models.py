"""What applications call the gateway with: API keys, and routes (a public model name served by one of
several catalog models, its deployments)."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from aspweb.forms import bounded_validators
from providers.models import Model

# A route's answers may be cached for up to 30 days.
CACHE_TTL_RANGE = (0, 30 * 86_400)
PRIORITY_RANGE = (0, 1_000)
WEIGHT_RANGE = (1, 1_000)
# An API key's limits: far above any one application's traffic, and within a 32-bit column.
RPM_RANGE = (1, 1_000_000)
TPM_RANGE = (1, 1_000_000_000)
ROUTE_NAME_MAX = 100


class ApiKey(models.Model):
    """A key an application (or a person's script) uses to call the gateway. Only a hash is stored;
    the full key is shown once, when it is made. `prefix` is the visible part that names it in lists."""

    name = models.CharField(max_length=100)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="api_keys", help_text="The person the key belongs to or acts for.")
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="api_keys", help_text="The team its calls are counted for.")
    prefix = models.CharField(max_length=24, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    allowed_models = models.JSONField(default=list, blank=True,
                                      help_text="Model addresses and route names it may use; empty: all.")
    rpm_limit = models.PositiveIntegerField(null=True, blank=True, validators=bounded_validators(*RPM_RANGE),
                                            help_text="Requests per minute.")
    tpm_limit = models.PositiveIntegerField(null=True, blank=True, validators=bounded_validators(*TPM_RANGE),
                                            help_text="Tokens per minute.")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    log_bodies = models.BooleanField(default=False, db_default=False, verbose_name="log prompts and answers",
                                     help_text="Keep each call's prompt and answer, redacted and encrypted "
                                               "(usage/bodies.py).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


route_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
    "Use letters, digits, dots, colons, dashes and underscores, and no slash (a slash means PROVIDER/MODEL).",
)


class Route(models.Model):
    """A public model name that applications ask for, served by one of several deployments."""

    class Strategy(models.TextChoices):
        PRIORITY = "priority", "Priority, with fallback"
        WEIGHTED = "weighted", "Weighted round-robin"
        LATENCY = "latency", "Lowest latency (moving average)"
        COST = "cost", "Lowest cost"

    name = models.CharField(max_length=ROUTE_NAME_MAX, unique=True, validators=[route_name_validator],
                            help_text="What applications put in “model”, e.g. fast-chat.")
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.PRIORITY)
    enabled = models.BooleanField(default=True)
    cache_ttl_seconds = models.PositiveIntegerField(
        default=0, validators=bounded_validators(*CACHE_TTL_RANGE),
        help_text="Answer identical requests from the cache for this many seconds (at most 30 days, "
                  "2,592,000); 0 turns caching off.",
    )
    description = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Deployment(models.Model):
    """One catalog model serving a route. Lower priority numbers are tried first."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="deployments")
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="deployments")
    priority = models.PositiveSmallIntegerField(default=1, validators=bounded_validators(*PRIORITY_RANGE),
                                                help_text="0 to 1,000; lower numbers are tried first.")
    weight = models.PositiveSmallIntegerField(default=1, validators=bounded_validators(*WEIGHT_RANGE),
                                              help_text="Share of traffic under weighted round-robin, 1 to 1,000.")

    class Meta:
        ordering = ["route", "priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["route", "model"], name="deployment_unique_per_route",
                                    violation_error_message="This model already serves the route."),
        ]

    def __str__(self) -> str:
        return f"{self.route.name} -> {self.model}"
