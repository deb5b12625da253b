import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from providers.crypto import EncryptedField

from .attribution import END_USER_LENGTH_MAX, TAG_LENGTH_MAX, TAGS_FIELD_LENGTH, tags_of

# What went wrong, in words, by a failed call's error_kind (the CSV keeps the codes): the provider's
# failures (providers.adapters.base.ErrorKind), then the calls aspweb refused to start.
ERROR_KIND_LABELS = {
    "auth": "provider key refused",
    "rate_limit": "rate limited",
    "quota": "provider quota used up",
    "timeout": "timed out",
    "network": "provider unreachable",
    "server": "provider error",
    "model_not_found": "model not found",
    "invalid_request": "refused as invalid",
    "content_filter": "content filtered",
    "not_found": "model not found",
    "disabled": "model disabled",
    "budget_exceeded": "over budget",
    "unpriced": "model without a price",
    "internal": "aspweb error",
}


UPSTREAM_ID_LENGTH = 200


class UsageRecord(models.Model):
    """One call to a provider, whatever its outcome. Provider and model names are copied so the
    ledger stays readable after a rename; the foreign keys protect history from deletion."""

    class Source(models.TextChoices):
        PLAYGROUND = "playground", "Playground"
        GATEWAY = "gateway", "Gateway"
        CLI = "cli", "CLI"

    class Status(models.TextChoices):
        OK = "ok", "OK"
        ERROR = "error", "Error"
        CANCELLED = "cancelled", "Cancelled"

    request_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source = models.CharField(max_length=16, choices=Source.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    error_kind = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=500, blank=True, help_text="Plain words; never a secret.")
    finish_reason = models.CharField(max_length=32, blank=True)
    # The provider's own id of the answer (OpenAI chatcmpl-…, OpenRouter gen-…, Anthropic msg_…), where it gave
    # one: what its support asks for, and what OpenRouter's reconciliation looks each call up by.
    upstream_id = models.CharField(max_length=UPSTREAM_ID_LENGTH, blank=True, default="", db_default="")

    api_key = models.ForeignKey("gateway.ApiKey", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="usage_records")
    # Attribution (usage/attribution.py): the key's team, or the one the person picked in the playground; the
    # caller's tags, comma-separated; the application's end user.
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="usage_records", db_index=False)
    tags = models.CharField(max_length=TAGS_FIELD_LENGTH, blank=True, default="", db_default="")
    end_user = models.CharField(max_length=END_USER_LENGTH_MAX, blank=True, default="", db_default="")
    provider = models.ForeignKey("providers.Provider", null=True, on_delete=models.PROTECT,
                                 related_name="usage_records")
    model = models.ForeignKey("providers.Model", null=True, on_delete=models.PROTECT,
                              related_name="usage_records")
    price = models.ForeignKey("providers.Price", null=True, blank=True, on_delete=models.PROTECT)
    provider_name = models.CharField(max_length=64)
    model_name = models.CharField(max_length=200)

    input_tokens = models.PositiveIntegerField(default=0, help_text="Uncached input tokens.")
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0, help_text="Written to the cache for 5 minutes "
                                                                          "(or the provider's only duration).")
    cache_write_1h_tokens = models.PositiveIntegerField(default=0, db_default=0,
                                                        help_text="Written to the cache for 1 hour.")
    output_tokens = models.PositiveIntegerField(default=0, help_text="Output tokens, reasoning included.")
    reasoning_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    # What the call costs: the provider's reported charge where the provider is the billing party and
    # reports one (OpenRouter, the Claude CLI), else `computed_cost`.
    cost = models.DecimalField(max_digits=18, decimal_places=10, default=0)
    # aspweb's own computation: the tokens at the price version in force; None without a price.
    computed_cost = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    # What the provider itself said the call cost, where it says.
    reported_cost = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    # Tokens were used but nothing prices them: no price version, no reported charge. Such a call is
    # counted apart in every total, never silently free.
    unpriced = models.BooleanField(default=False, db_default=False)
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
            models.Index(fields=["team", "-created_at"]),
            models.Index(fields=["end_user", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.provider_name}/{self.model_name} {self.status} {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def tag_list(self) -> tuple[str, ...]:
        return tags_of(self.tags)

    @property
    def error_kind_label(self) -> str:
        return ERROR_KIND_LABELS.get(self.error_kind, self.error_kind.replace("_", " "))

    @property
    def prompt_tokens(self) -> int:
        """All input tokens, cached or not."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens + self.cache_write_1h_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def cost_difference(self) -> "Decimal | None":
        """The provider's reported charge less aspweb's own computation, where both exist."""
        if self.reported_cost is None or self.computed_cost is None:
            return None
        return self.reported_cost - self.computed_cost

    @property
    def tokens_per_second(self) -> float | None:
        """Output speed: see `tokens_per_second`."""
        return tokens_per_second(self.output_tokens, self.latency_ms, self.ttft_ms)


# A generation shorter than this says more about how the provider batches its chunks than about its speed:
# 26 tokens arriving in one 1 ms burst are not 26,000 tokens a second.
MIN_GENERATION_MS = 100


def tokens_per_second(output_tokens: int | None, latency_ms: float | None, ttft_ms: float | None) -> float | None:
    """A call's output speed, the one definition aspweb shows (the calls list, a call's page, the playground's
    answers): the output tokens over the generation time, which is the whole call's latency less the time to
    its first token, so that queueing and reading the prompt do not count against the model.

    None (shown as "—") where it would mean nothing: no output tokens, a call that was not streamed (no time
    to first token, so no generation time apart from the wait), and a generation shorter than
    MIN_GENERATION_MS."""
    if not output_tokens or latency_ms is None or ttft_ms is None:
        return None
    generating_ms = latency_ms - ttft_ms
    if generating_ms < MIN_GENERATION_MS:
        return None
    return output_tokens * 1000 / generating_ms


class Rollup(models.Model):
    """The ledger summed per day (in settings.TIME_ZONE) and per the values of the table's `DIMENSIONS`, so
    that dashboards never scan raw records. Written only by usage.services, in the same transaction as the
    records it sums, so that every rollup table always equals the raw records.

    `key` spells out the day and the whole dimension tuple (an absent user or key as 0): NULLs never
    collide in a UNIQUE constraint, so the nullable foreign keys cannot be the constraint themselves.
    Averages: latency is `latency_ms_sum / latency_count`, time to first token `ttft_ms_sum / ttft_count`.
    """

    # The summable columns, for aggregate(**{name: Sum(name) for name in SUM_FIELDS}).
    SUM_FIELDS = (
        "requests", "errors", "cancelled", "estimated",
        "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
        "cost", "latency_ms_sum", "latency_count", "ttft_ms_sum", "ttft_count",
        "cache_write_1h_tokens", "unpriced", "unpriced_tokens",
    )
    # The record's columns a row is per, besides its day, in the order `key` spells them.
    DIMENSIONS: tuple[str, ...] = ()

    key = models.CharField(max_length=120, unique=True)
    day = models.DateField()

    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    cancelled = models.BigIntegerField(default=0)
    estimated = models.BigIntegerField(default=0, help_text="Records whose token counts were estimated.")
    input_tokens = models.BigIntegerField(default=0, help_text="Uncached input tokens.")
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0, help_text="Cache writes kept 5 minutes.")
    cache_write_1h_tokens = models.BigIntegerField(default=0, db_default=0, help_text="Cache writes kept 1 hour.")
    output_tokens = models.BigIntegerField(default=0, help_text="Output tokens, reasoning included.")
    reasoning_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=22, decimal_places=10, default=0)
    unpriced = models.BigIntegerField(default=0, db_default=0,
                                      help_text="Records that used tokens with nothing to price them.")
    unpriced_tokens = models.BigIntegerField(default=0, db_default=0,
                                             help_text="All the tokens of the unpriced records.")
    latency_ms_sum = models.BigIntegerField(default=0)
    latency_count = models.BigIntegerField(default=0)
    ttft_ms_sum = models.BigIntegerField(default=0)
    ttft_count = models.BigIntegerField(default=0)

    class Meta:
        abstract = True
        ordering = ["-day"]

    def __str__(self) -> str:
        return self.key


class DailyUsage(Rollup):
    """The full rollup: per day and (provider, model, user, API key, source, team). It answers any view but
    those by tag or end user; the narrow tables below answer most of them from far fewer rows."""

    DIMENSIONS = ("provider_id", "model_id", "user_id", "api_key_id", "source", "team_id")

    provider = models.ForeignKey("providers.Provider", null=True, on_delete=models.PROTECT, related_name="+")
    model = models.ForeignKey("providers.Model", null=True, on_delete=models.PROTECT, related_name="+")
    # A deleted user's rows keep their key and lose the user, as the user's records do.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    api_key = models.ForeignKey("gateway.ApiKey", null=True, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=16, choices=UsageRecord.Source.choices)
    team = models.ForeignKey("accounts.Team", null=True, on_delete=models.SET_NULL, related_name="+",
                             db_index=False)

    class Meta(Rollup.Meta):
        verbose_name_plural = "daily usage"
        # A range of days, everyone's: the first. One person's, key's or team's days ("My usage", a filter, a
        # budget): the others, led by the person, key or team, so that they read those rows only, not every
        # row of the range.
        indexes = [
            models.Index(fields=["day", "provider", "model"]),
            models.Index(fields=["user", "day"]),
            models.Index(fields=["api_key", "day"]),
            models.Index(fields=["team", "day"]),
        ]


class DailyModelUsage(Rollup):
    """Per day and (provider, model, source): at most a row per model and source a day, however many people
    call them. Totals, the daily chart and every grouping by provider, model, source or day read this."""

    DIMENSIONS = ("provider_id", "model_id", "source")

    provider = models.ForeignKey("providers.Provider", null=True, on_delete=models.PROTECT, related_name="+")
    model = models.ForeignKey("providers.Model", null=True, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=16, choices=UsageRecord.Source.choices)

    class Meta(Rollup.Meta):
        verbose_name_plural = "daily usage per model"
        indexes = [models.Index(fields=["day", "provider", "model"])]


class DailyUserUsage(Rollup):
    """Per day and person: the "top users" chart and the grouping by user."""

    DIMENSIONS = ("user_id",)

    # Indexed by (user, day) below, which serves what an index of its own would.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+",
                             db_index=False)

    class Meta(Rollup.Meta):
        verbose_name_plural = "daily usage per user"
        indexes = [models.Index(fields=["day"]), models.Index(fields=["user", "day"])]


class DailyApiKeyUsage(Rollup):
    """Per day and API key (calls without one in one row a day): the "top API keys" chart and the grouping
    by key."""

    DIMENSIONS = ("api_key_id",)

    # Indexed by (api_key, day) below, which serves what an index of its own would.
    api_key = models.ForeignKey("gateway.ApiKey", null=True, on_delete=models.PROTECT, related_name="+",
                                db_index=False)

    class Meta(Rollup.Meta):
        verbose_name_plural = "daily usage per API key"
        indexes = [models.Index(fields=["day"]), models.Index(fields=["api_key", "day"])]


class DailyTeamUsage(Rollup):
    """Per day and team (calls of no team in one row a day): the "top teams" chart and the grouping by team."""

    DIMENSIONS = ("team_id",)

    team = models.ForeignKey("accounts.Team", null=True, on_delete=models.SET_NULL, related_name="+",
                             db_index=False)

    class Meta(Rollup.Meta):
        verbose_name_plural = "daily usage per team"
        indexes = [models.Index(fields=["day"]), models.Index(fields=["team", "day"])]


# The dimensions of the end-user and tag tables besides their own: every filter of the dashboards.
_ATTRIBUTED = ("provider_id", "model_id", "user_id", "api_key_id", "source", "team_id")


class AttributedRollup(Rollup):
    """A rollup per day, per the full table's dimensions and per one more text column (`end_user`, `tag`),
    so that any filter combines with it. Its key ends with that text, which may be long: a wider column."""

    # Read by their end user or tag and day (the indexes of each table): the foreign keys need none of their own.
    key = models.CharField(max_length=320, unique=True)
    provider = models.ForeignKey("providers.Provider", null=True, on_delete=models.PROTECT, related_name="+",
                                 db_index=False)
    model = models.ForeignKey("providers.Model", null=True, on_delete=models.PROTECT, related_name="+",
                              db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+",
                             db_index=False)
    api_key = models.ForeignKey("gateway.ApiKey", null=True, on_delete=models.PROTECT, related_name="+",
                                db_index=False)
    source = models.CharField(max_length=16, choices=UsageRecord.Source.choices)
    team = models.ForeignKey("accounts.Team", null=True, on_delete=models.SET_NULL, related_name="+",
                             db_index=False)

    class Meta(Rollup.Meta):
        abstract = True


class DailyEndUserUsage(AttributedRollup):
    """Per day, end user and the full table's dimensions, for the calls that name an end user (the others are
    in no row here): the grouping by end user, the end-user filter and end-user budgets."""

    DIMENSIONS = (*_ATTRIBUTED, "end_user")

    # Never empty in a row; nullable only as the text columns of ATTRIBUTED rows are read alike.
    end_user = models.CharField(max_length=END_USER_LENGTH_MAX, null=True)  # noqa: DJ001

    class Meta(AttributedRollup.Meta):
        verbose_name_plural = "daily usage per end user"
        indexes = [models.Index(fields=["day"]), models.Index(fields=["end_user", "day"])]


class DailyTagUsage(AttributedRollup):
    """Per day, tag and the full table's dimensions: a call adds to the row of each of its tags (a call
    without tags to none), so that a tag's rows sum exactly its calls. Groups by tag overlap (a call with two
    tags counts in both), so this table answers only questions about tags."""

    DIMENSIONS = (*_ATTRIBUTED, "tag")

    tag = models.CharField(max_length=TAG_LENGTH_MAX, null=True)  # noqa: DJ001 - as end_user above

    class Meta(AttributedRollup.Meta):
        verbose_name_plural = "daily usage per tag"
        indexes = [models.Index(fields=["day"]), models.Index(fields=["tag", "day"])]


class DailyEndUserTotal(Rollup):
    """Per day and end user alone, for the calls that name one: the grouping by end user over every call
    (no other filter), which would otherwise sum the end-user table's rows of every model, person and key
    (several times as many: 155,000 rather than 85,000 for 30 days of 5,000 end users, docs/benchmarks.md)."""

    DIMENSIONS = ("end_user",)

    key = models.CharField(max_length=320, unique=True)
    end_user = models.CharField(max_length=END_USER_LENGTH_MAX, null=True)  # noqa: DJ001 - as DailyEndUserUsage's

    class Meta(Rollup.Meta):
        verbose_name_plural = "daily usage per end user alone"
        indexes = [models.Index(fields=["day"]), models.Index(fields=["end_user", "day"])]


class DailyTagTotal(Rollup):
    """Per day and tag alone: the grouping by tag and a tag's totals and daily chart over every call (no
    other filter), a few hundred rows a day instead of the tag table's thousands."""

    DIMENSIONS = ("tag",)

    key = models.CharField(max_length=320, unique=True)
    tag = models.CharField(max_length=TAG_LENGTH_MAX, null=True)  # noqa: DJ001 - as DailyTagUsage's

    class Meta(Rollup.Meta):
        verbose_name_plural = "daily usage per tag alone"
        indexes = [models.Index(fields=["day"]), models.Index(fields=["tag", "day"])]


# Every rollup table, narrowest first (fewest rows a day in a typical ledger): the order in which the
# dashboards pick the table that answers a view, and the one order in which writers lock their rows. Each
# end-user and tag table comes after the full one and after its narrower twin, which answers what needs no
# other dimension; the tag tables come last: they are the only ones a call adds to more than once, and only
# a question about tags reads them.
ROLLUPS: tuple[type[Rollup], ...] = (DailyModelUsage, DailyApiKeyUsage, DailyUserUsage, DailyTeamUsage, DailyUsage,
                                     DailyEndUserTotal, DailyEndUserUsage, DailyTagTotal, DailyTagUsage)


def api_key_model() -> Any:
    """The gateway's API key model, which the ledger points at. The gateway sits above the ledger (its calls
    write here), so the ledger names the model only by its label in the foreign keys above, and code below
    the gateway reaches it through them, as apps reach the user model through AUTH_USER_MODEL."""
    return UsageRecord._meta.get_field("api_key").related_model


class CallBody(models.Model):
    """A call's prompt and answer, logged when logging is on for it (usage/bodies.py): redacted, capped and
    encrypted at rest, in a table of its own (never in the rollups), deleted LOG_BODIES_RETENTION_DAYS after the
    call. Shown only to admins and to the call's owner, each view audited."""

    record = models.OneToOneField(UsageRecord, on_delete=models.CASCADE, related_name="body")
    created_at = models.DateTimeField(db_index=True, help_text="When the call started, for retention.")
    # JSON: {"request": {"system", "messages", "parameters", "tools"}, "answer": {"text", "reasoning", "tool_calls"}}
    content = EncryptedField()
    truncated = models.BooleanField(default=False)
    # Keyed hashes of the words of the (redacted) body, for search: see usage/bodies.py.
    search_tokens = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"body of call {self.record_id}"
