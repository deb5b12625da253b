"""Helpers for the reconciliation tests: providers pointed at the fake report server, models with prices,
and ledger records on a given UTC day."""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from providers.models import Model, Price, Provider
from reconcile import services
from reconcile.models import ReportingCredential
from tests.fakes.reports import ADMIN_KEY, ANTHROPIC_ADMIN_KEY, OPENROUTER_KEY, FakeReports
from usage import services as usage_services
from usage.models import UsageRecord

DAY = date(2026, 11, 2)
# Well after DAY closed and settled.
LATER = datetime(2026, 11, 10, 12, tzinfo=UTC)
OUR_KEY, OTHER_KEY = "key_aspweb0001", "key_someone_else"
OUR_PROJECT = "proj_aspweb"
OUR_ANTHROPIC_KEY, OUR_WORKSPACE = "apikey_01aspweb", "wrkspc_01aspweb"


def openai_provider(fake: FakeReports, *, api_key_id: str = OUR_KEY, project_id: str = OUR_PROJECT,
                    **fields: Any) -> Provider:
    provider = Provider.objects.create(name="openai-prod", kind="openai", base_url=f"{fake.base_url}/v1",
                                       api_key="sk-proj-calls-key-9999")
    ReportingCredential.objects.create(provider=provider, admin_key=ADMIN_KEY, api_key_id=api_key_id,
                                       project_id=project_id, **fields)
    return provider


def anthropic_provider(fake: FakeReports, *, api_key_id: str = OUR_ANTHROPIC_KEY,
                       project_id: str = OUR_WORKSPACE, **fields: Any) -> Provider:
    provider = Provider.objects.create(name="claude", kind="anthropic", base_url=fake.base_url,
                                       api_key="sk-ant-api03-calls-key-7777")
    ReportingCredential.objects.create(provider=provider, admin_key=ANTHROPIC_ADMIN_KEY, api_key_id=api_key_id,
                                       project_id=project_id, **fields)
    return provider


def openrouter_provider(fake: FakeReports, *, api_key: str = OPENROUTER_KEY, admin_key: str = "",
                        **fields: Any) -> Provider:
    """An OpenRouter provider on the fake's /api/v1, reconciled with its own API key unless `admin_key` is set."""
    provider = Provider.objects.create(name="router", kind="openrouter", base_url=f"{fake.base_url}/api/v1",
                                       api_key=api_key)
    ReportingCredential.objects.create(provider=provider, admin_key=admin_key, **fields)
    return provider


def priced(provider: Provider, name: str, *, input: str = "1", output: str = "2", cache_read: str = "0.5",
           cache_write: str = "1.25", cache_write_1h: str = "2") -> Model:
    """A model at $1 input, $2 output, $0.50 cache read, $1.25 and $2 cache writes per 1M tokens."""
    model = Model.objects.create(provider=provider, name=name)
    Price.objects.create(model=model, effective_from=datetime(2020, 1, 1, tzinfo=UTC), input=Decimal(input),
                         output=Decimal(output), cache_read=Decimal(cache_read), cache_write=Decimal(cache_write),
                         cache_write_1h=Decimal(cache_write_1h))
    return model


def call(model: Model, *, day: date = DAY, hour: int = 12, status: str = "ok", **tokens: Any) -> UsageRecord:
    return usage_services.usage_record_create(
        provider=model.provider, model=model, source="gateway", status=status,
        created_at=datetime(day.year, day.month, day.day, hour, tzinfo=UTC), **tokens)


def run(provider: Provider, since: date = DAY, until: date | None = None) -> list:
    return services.reconcile(provider=provider, since=since, until=until or since, now=LATER)
