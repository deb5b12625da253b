from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from providers.models import URLField
from usage.attribution import END_USER_LENGTH_MAX, TAG_LENGTH_MAX

from . import periods

DEFAULT_THRESHOLDS = (50, 80, 100)


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


def _no_target(but: str = "") -> dict[str, Any]:
    """The condition that every target field but `but` is empty."""
    empty: dict[str, Any] = {f"{name}__isnull": True for name in ("provider", "model", "user", "api_key", "team")}
    empty |= {"tag": "", "end_user": ""}
    return {name: value for name, value in empty.items() if name.split("__")[0] != but}


class Budget(models.Model):
    """An amount of money in USD that a scope of calls may spend per period, with alerts along the way and,
    where `hard_limit` is on, calls refused before they could go past it."""

    class Scope(models.TextChoices):
        GLOBAL = "global", "Every call"
        PROVIDER = "provider", "One provider"
        MODEL = "model", "One model"
        USER = "user", "One user"
        API_KEY = "api_key", "One API key"
        TEAM = "team", "One team"
        TAG = "tag", "One tag"
        END_USER = "end_user", "One end user"

    class Period(models.TextChoices):
        DAILY = periods.DAILY, "Daily"
        WEEKLY = periods.WEEKLY, "Weekly (from Monday)"
        MONTHLY = periods.MONTHLY, "Monthly (from the 1st)"
        TOTAL = periods.TOTAL, "Total (never resets)"

    # The target column each scope uses; every other target column stays empty (a check constraint).
    TARGETS = {Scope.PROVIDER: "provider", Scope.MODEL: "model", Scope.USER: "user", Scope.API_KEY: "api_key",
               Scope.TEAM: "team", Scope.TAG: "tag", Scope.END_USER: "end_user"}
    # Each target field's value as the budget, the usage records and the rollup rows hold it: an id, or text.
    COLUMNS = {"provider": "provider_id", "model": "model_id", "user": "user_id", "api_key": "api_key_id",
               "team": "team_id", "tag": "tag", "end_user": "end_user"}

    name = models.CharField(max_length=100, unique=True)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.GLOBAL)
    provider = models.ForeignKey("providers.Provider", null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="budgets")
    model = models.ForeignKey("providers.Model", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="budgets")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="budgets")
    api_key = models.ForeignKey("gateway.ApiKey", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="budgets")
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.CASCADE,
                             related_name="budgets")
    tag = models.CharField(max_length=TAG_LENGTH_MAX, blank=True, default="", db_default="",
                           help_text="Calls carrying this tag (tags are lower-case).")
    end_user = models.CharField(max_length=END_USER_LENGTH_MAX, blank=True, default="", db_default="",
                                help_text="Calls naming this end user, as the application sends it.")
    period = models.CharField(max_length=16, choices=Period.choices, default=Period.MONTHLY)
    amount = models.DecimalField(max_digits=16, decimal_places=6,
                                 validators=[MinValueValidator(Decimal("0.000001"), "A budget must be above $0.")],
                                 help_text="USD per period.")
    thresholds = models.JSONField(default=default_thresholds, blank=True,
                                  help_text="Percentages of the amount that raise an alert when spend reaches them.")
    forecast = models.BooleanField(default=False, help_text="Alert when the period's run-rate projects spend "
                                                            "above the amount.")
    hard_limit = models.BooleanField(default=False, help_text="Refuse calls that could take spend past the amount.")
    emails = models.JSONField(default=list, blank=True, help_text="Who gets alerts by e-mail.")
    webhook_url = URLField(max_length=500, blank=True, help_text="Slack-compatible incoming webhook for alerts.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                name="budget_target_matches_scope_v2",
                condition=(
                    Q(scope="global", **_no_target())
                    | Q(scope="provider", provider__isnull=False, **_no_target("provider"))
                    | Q(scope="model", model__isnull=False, **_no_target("model"))
                    | Q(scope="user", user__isnull=False, **_no_target("user"))
                    | Q(scope="api_key", api_key__isnull=False, **_no_target("api_key"))
                    | Q(scope="team", team__isnull=False, **_no_target("team"))
                    | (Q(scope="tag", **_no_target("tag")) & ~Q(tag=""))
                    | (Q(scope="end_user", **_no_target("end_user")) & ~Q(end_user=""))
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> Any:
        """The object (or, for a tag or an end user, the text) the budget covers; None for every call."""
        column = self.TARGETS.get(self.scope)
        return getattr(self, column) if column else None

    @property
    def target_column(self) -> str | None:
        """The column of records and rollup rows that says whether they fall under the budget."""
        column = self.TARGETS.get(self.scope)
        return self.COLUMNS[column] if column else None

    @property
    def target_value(self) -> Any:
        """The target's value in `target_column`: an id, or a tag or end user's text."""
        column = self.target_column
        return getattr(self, column) if column else None

    @property
    def target_label(self) -> str:
        """What the budget covers, in words: 'every call', 'provider openai', 'user ana@example.com'."""
        target = self.target
        if target is None:
            return "every call"
        if self.scope == self.Scope.USER:
            return f"user {target.email}"
        if self.scope == self.Scope.API_KEY:
            return f"API key {target}"
        if self.scope == self.Scope.END_USER:
            return f"end user {target}"
        return f"{self.scope.replace('_', ' ')} {target}"

    def span_at(self, when: datetime) -> periods.Span:
        return periods.span_at(self.period, when)

    def ledger_filter(self) -> Q:
        """The rollup rows this budget counts (of the table usage.rollups.table_for picks for its column)."""
        column = self.target_column
        return Q(**{column: self.target_value}) if column else Q()

    @property
    def webhook_host(self) -> str:
        """The webhook's host, for pages: the whole URL is a credential (Slack's are)."""
        return self.webhook_url.split("//", 1)[-1].split("/", 1)[0] if self.webhook_url else ""


class BudgetPeriod(models.Model):
    """A budget's counters for one period. `spent` is the cost of the usage records in the period that the
    budget covers (a hard limit's: added in each record's transaction; a soft budget's: brought to the ledger's
    by each evaluation, seconds after usage; both reconciled by the sweep); `reserved` is the sum of the live
    reservations of calls still running."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="periods")
    start = models.DateField()
    end = models.DateField(null=True, blank=True, help_text="Exclusive; empty for a total budget.")
    spent = models.DecimalField(max_digits=22, decimal_places=10, default=0)
    reserved = models.DecimalField(max_digits=22, decimal_places=10, default=0)
    # The spend at which the period's next threshold alert fires; empty when every threshold has fired. The
    # evaluation after usage compares `spent` with it, and only a period at or past it is looked at closer.
    next_alert_at = models.DecimalField(max_digits=22, decimal_places=10, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["budget", "-start"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "start"], name="budget_period_unique_start"),
        ]

    def __str__(self) -> str:
        return f"{self.budget} {self.span.label()}"

    @property
    def span(self) -> periods.Span:
        return periods.Span(self.budget.period, self.start, self.end)


def next_alert_at(budget: Budget, fired: set[int]) -> Decimal | None:
    """The spend at which `budget`'s lowest threshold not in `fired` is reached; None when none is left."""
    left = sorted(set(budget.thresholds) - set(fired))
    return (budget.amount * left[0] / 100).quantize(Decimal("1e-10")) if left else None


class Reservation(models.Model):
    """Part of a hard-limit budget held for one running call: its worst-case cost. The call's usage record
    replaces it with the real cost in the same transaction; the sweep releases one whose call never
    recorded (a crashed worker) once it expires."""

    request_id = models.UUIDField(help_text="The call's request id, which its usage record carries too.")
    period = models.ForeignKey(BudgetPeriod, on_delete=models.CASCADE, related_name="reservations")
    amount = models.DecimalField(max_digits=22, decimal_places=10)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            # Also the index that settling a call's reservations by request id uses.
            models.UniqueConstraint(fields=["request_id", "period"], name="reservation_unique_per_call"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} for {self.request_id}"


class AlertEvent(models.Model):
    """An alert that fired: a threshold or the forecast, once per budget and period (a unique constraint,
    so concurrent evaluations cannot both fire it), or a test someone asked for."""

    class Kind(models.TextChoices):
        THRESHOLD = "threshold", "Threshold"
        FORECAST = "forecast", "Forecast"
        TEST = "test", "Test"

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period = models.ForeignKey(BudgetPeriod, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    threshold = models.PositiveSmallIntegerField(default=0, help_text="Percent, for threshold alerts.")
    spent = models.DecimalField(max_digits=22, decimal_places=10)
    amount = models.DecimalField(max_digits=16, decimal_places=6)
    projected = models.DecimalField(max_digits=22, decimal_places=10, null=True, blank=True)
    # Text, not a bounded string: it quotes the budget's name and target and the amounts, which together can
    # pass any round limit (a 100-character name on a model with a 200-character id).
    message = models.TextField()
    # False when a higher threshold crossed in the same evaluation was sent instead: one message, not three.
    notified = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "period", "kind", "threshold"], name="alert_fires_once",
                                    condition=~Q(kind="test")),
        ]

    def __str__(self) -> str:
        return self.message


class Delivery(models.Model):
    """One alert sent through one channel, with how it went."""

    class Channel(models.TextChoices):
        IN_APP = "in_app", "In-app"
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    alert = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["alert", "channel"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel"], name="delivery_unique_per_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.status}"


class Notification(models.Model):
    """An in-app message for one person: the bell counts the unread ones."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    alert = models.ForeignKey(AlertEvent, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="notifications")
    title = models.CharField(max_length=200)
    body = models.TextField()
    url = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"])]

    def __str__(self) -> str:
        return self.title
