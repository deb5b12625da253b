"""Reconciliation against fake OpenAI and Anthropic report servers speaking the documented shapes: each
verdict, the tolerance, key and project filtering, paging, open days, bad keys, outages and idempotence."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail

from budgets.models import Notification
from reconcile import reports, services
from reconcile.models import Comparison, DayCheck
from tests.budgets_support import allow_loopback_webhooks, ensure_role_groups, receiver
from tests.fakes.reports import FakeReports
from tests.reconcile_support import (
    DAY,
    LATER,
    OTHER_KEY,
    OUR_ANTHROPIC_KEY,
    OUR_KEY,
    OUR_PROJECT,
    OUR_WORKSPACE,
    anthropic_provider,
    call,
    openai_provider,
    priced,
    run,
)

pytestmark = pytest.mark.django_db


def _openai_day(fake: FakeReports, day=DAY, *, requests: int = 2, input_tokens: int = 1_200_000,
                cached: int = 200_000, output: int = 500_000, cost_input: float = 1.1, cost_output: float = 1.0,
                key: str = OUR_KEY, model: str = "gpt-4o-mini-2024-07-18") -> None:
    """What OpenAI reports for two calls of 600k prompt tokens (100k cached) and 250k output each."""
    fake.add_usage("openai", day, model=model, api_key_id=key, project_id=OUR_PROJECT, input_tokens=input_tokens,
                   input_cached_tokens=cached, output_tokens=output, num_model_requests=requests)
    fake.add_cost("openai", day, line_item=f"{model}, input", project_id=OUR_PROJECT, value=cost_input)
    fake.add_cost("openai", day, line_item=f"{model}, output", project_id=OUR_PROJECT, value=cost_output)


def _ledger_day(model, day=DAY) -> None:
    # 1M uncached at $1, 200k cached at $0.50, 500k output at $2: $1.10 + $1.00
    for _ in range(2):
        call(model, day=day, input_tokens=500_000, cache_read_tokens=100_000, output_tokens=250_000)


def test_a_day_that_matches(reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server)
    _ledger_day(priced(provider, "gpt-4o-mini"))
    _openai_day(reports_server)
    [check] = run(provider)
    assert check.state == DayCheck.State.MATCH
    [row] = check.comparisons.all()
    assert (row.model_name, row.status, row.price_drift) == ("gpt-4o-mini", Comparison.Status.MATCH, False)
    assert (row.ledger_requests, row.provider_requests) == (2, 2)
    assert (row.ledger_input_tokens, row.provider_input_tokens) == (1_000_000, 1_000_000)
    assert (row.ledger_cache_read_tokens, row.provider_cache_read_tokens) == (200_000, 200_000)
    assert (row.ledger_output_tokens, row.provider_output_tokens) == (500_000, 500_000)
    assert (row.ledger_cost, row.provider_cost) == (Decimal("2.1"), Decimal("2.1"))
    assert check.cost_scope == f"the project {OUR_PROJECT}"
    # The documented request shape: admin key as a bearer token, daily buckets, restricted to aspweb's key.
    path, query, headers = reports_server.requests[0]
    assert path == "/v1/organization/usage/completions"
    assert headers["Authorization"] == "Bearer sk-admin-fake-reporting-key-0123"
    assert query["bucket_width"] == ["1d"] and query["api_key_ids"] == [OUR_KEY]
    assert query["project_ids"] == [OUR_PROJECT] and "model" in query["group_by"]
    assert reports_server.paths()[1] == "/v1/organization/costs"


def test_openais_newer_usage_schema_with_cache_writes_and_a_bucket_named_result(reports_server: FakeReports) -> None:
    reports_server.openai_cache_writes, reports_server.bucket_results = True, "result"
    provider = openai_provider(reports_server)
    model = priced(provider, "gpt-4o-mini")
    # The ledger: 1M uncached, 200k cached and 100k written to the cache, 500k output.
    for _ in range(2):
        call(model, input_tokens=500_000, cache_read_tokens=100_000, cache_write_tokens=50_000, output_tokens=250_000)
    reports_server.add_usage("openai", DAY, model="gpt-4o-mini-2024-07-18", api_key_id=OUR_KEY,
                             project_id=OUR_PROJECT, input_tokens=1_300_000, input_cached_tokens=200_000,
                             input_cache_write_tokens=100_000, output_tokens=500_000, num_model_requests=2)
    [check] = run(provider)
    [row] = check.comparisons.all()
    assert (row.ledger_input_tokens, row.provider_input_tokens) == (1_000_000, 1_000_000)
    assert (row.ledger_cache_read_tokens, row.provider_cache_read_tokens) == (200_000, 200_000)
    assert (row.ledger_cache_write_tokens, row.provider_cache_write_tokens) == (100_000, 100_000)
    assert row.provider_requests == 2


def test_a_price_drift_is_told_apart(reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server)
    _ledger_day(priced(provider, "gpt-4o-mini"))
    _openai_day(reports_server, cost_output=1.5)  # the provider bills output dearer than aspweb's price
    [check] = run(provider)
    assert check.state == DayCheck.State.DRIFT
    [row] = check.comparisons.all()
    assert (row.status, row.price_drift, row.difference) == (Comparison.Status.DRIFT, True, Decimal("0.5"))


def test_calls_missing_from_the_ledger(reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server)
    _ledger_day(priced(provider, "gpt-4o-mini"))
    _openai_day(reports_server)
    reports_server.add_usage("openai", DAY, model="gpt-4o", api_key_id=OUR_KEY, project_id=OUR_PROJECT,
                             input_tokens=1000, output_tokens=100, num_model_requests=1)
    reports_server.add_cost("openai", DAY, line_item="gpt-4o-2024-08-06, input", project_id=OUR_PROJECT, value=0.01)
    [check] = run(provider)
    statuses = dict(check.comparisons.values_list("model_name", "status"))
    assert statuses == {"gpt-4o": Comparison.Status.MISSING_IN_LEDGER, "gpt-4o-mini": Comparison.Status.MATCH}
    assert check.state == DayCheck.State.DRIFT


def test_calls_missing_at_the_provider(reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server)
    _ledger_day(priced(provider, "gpt-4o-mini"))
    [check] = run(provider)
    [row] = check.comparisons.all()
    assert (row.status, row.provider_cost, row.ledger_cost) == (
        Comparison.Status.MISSING_AT_PROVIDER, Decimal(0), Decimal("2.1"))


def test_other_applications_traffic_under_another_key_is_left_out(reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server)
    _ledger_day(priced(provider, "gpt-4o-mini"))
    _openai_day(reports_server)
    _openai_day(reports_server, key=OTHER_KEY, cost_input=0, cost_output=0)  # same project, another key
    [check] = run(provider)
    [row] = check.comparisons.all()
    assert (row.status, row.provider_requests, row.provider_output_tokens) == (Comparison.Status.MATCH, 2, 500_000)


def test_a_server_that_ignores_the_key_filter_is_filtered_on_aspweb_side() -> None:
    credential = reports.Credential(kind="openai", base_url="", admin_key="x", api_key_id=OUR_KEY)
    assert reports._ours({"api_key_id": OTHER_KEY}, credential, workspace_field="project_id") is False
    assert reports._ours({"api_key_id": OUR_KEY}, credential, workspace_field="project_id") is True


def test_without_a_project_the_cost_of_other_keys_is_not_blamed_on_aspweb(reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server, project_id="")
    _ledger_day(priced(provider, "gpt-4o-mini"))
    _openai_day(reports_server, cost_output=50)  # the whole organisation's bill
    [check] = run(provider)
    [row] = check.comparisons.all()
    assert (check.state, check.cost_scope, check.provider_cost) == (DayCheck.State.MATCH, "", None)
    assert (row.provider_cost, row.provider_output_tokens) == (None, 500_000)
    assert "/v1/organization/costs" not in reports_server.paths()


@pytest.mark.parametrize(("tolerance", "state"), [("1", DayCheck.State.MATCH), ("0.1", DayCheck.State.DRIFT)])
def test_the_tolerance(reports_server: FakeReports, tolerance: str, state: str) -> None:
    provider = openai_provider(reports_server, tolerance_percent=Decimal(tolerance))
    _ledger_day(priced(provider, "gpt-4o-mini"))
    _openai_day(reports_server, output=502_500, cost_output=1.005)  # half a percent more output
    [check] = run(provider)
    assert check.state == state


def test_pagination_across_several_pages(reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server)
    model = priced(provider, "gpt-4o-mini")
    for n in range(7):
        _ledger_day(model, DAY + timedelta(days=n))
        _openai_day(reports_server, DAY + timedelta(days=n))
    reports_server.max_buckets = 2
    checks = run(provider, DAY, DAY + timedelta(days=6))
    assert [c.state for c in checks] == [DayCheck.State.MATCH] * 7
    usage_pages = [q for p, q, _ in reports_server.requests if p.endswith("/usage/completions")]
    assert len(usage_pages) == 4
    assert "page" not in usage_pages[0] and all("page" in q for q in usage_pages[1:])


def test_anthropic_tokens_per_class_and_cost_in_cents(reports_server: FakeReports) -> None:
    provider = anthropic_provider(reports_server)
    model = priced(provider, "claude-sonnet-4-5")
    call(model, input_tokens=1_000_000, cache_read_tokens=400_000, cache_write_tokens=200_000,
         cache_write_1h_tokens=100_000, output_tokens=250_000)
    # $1 + $0.20 + $0.25 + $0.20 + $0.50 = $2.15
    for key, workspace in ((OUR_ANTHROPIC_KEY, OUR_WORKSPACE), ("apikey_01other", OUR_WORKSPACE)):
        reports_server.add_usage("anthropic", DAY, model="claude-sonnet-4-5-20250929", api_key_id=key,
                                 workspace_id=workspace, uncached_input_tokens=1_000_000,
                                 cache_read_input_tokens=400_000, ephemeral_5m_input_tokens=200_000,
                                 ephemeral_1h_input_tokens=100_000, output_tokens=250_000)
    reports_server.add_cost("anthropic", DAY, model="claude-sonnet-4-5-20250929", workspace_id=OUR_WORKSPACE,
                            description="Claude Sonnet 4.5 Usage - Input Tokens", token_type="uncached_input_tokens",
                            cost_type="tokens", amount="215.0")
    reports_server.add_cost("anthropic", DAY, model="claude-sonnet-4-5-20250929", workspace_id="wrkspc_other",
                            description="Claude Sonnet 4.5 Usage - Input Tokens", token_type="uncached_input_tokens",
                            cost_type="tokens", amount="9999")
    [check] = run(provider)
    [row] = check.comparisons.all()
    assert check.state == DayCheck.State.MATCH, list(check.comparisons.values())
    assert (row.provider_cache_write_tokens, row.provider_cache_write_1h_tokens) == (200_000, 100_000)
    assert (row.provider_requests, row.provider_cost) == (None, Decimal("2.15"))
    path, query, headers = reports_server.requests[0]
    assert path == "/v1/organizations/usage_report/messages"
    assert headers["x-api-key"].startswith("sk-ant-admin") and headers["anthropic-version"] == "2023-06-01"
    assert query["api_key_ids[]"] == [OUR_ANTHROPIC_KEY] and query["starting_at"] == ["2026-11-02T00:00:00Z"]


def test_an_open_day_is_not_compared(reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server)
    [check] = services.reconcile(provider=provider, since=DAY, until=DAY, now=LATER.replace(day=3, hour=1))
    assert (check.state, check.comparisons.count(), reports_server.requests) == (DayCheck.State.PENDING, 0, [])


def test_a_wrong_key_is_said_in_plain_words(reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server)
    reports_server.fail_next.append(401)
    [check] = run(provider)
    assert check.state == DayCheck.State.FAILED
    assert "wrong, revoked, or not an admin key" in check.message
    provider.reporting.refresh_from_db()
    assert provider.reporting.last_error == check.message
    assert "sk-admin" not in check.message


@pytest.mark.parametrize("status", [429, 500])
def test_a_provider_down_or_rate_limited_is_retried_later(reports_server: FakeReports, status: int,
                                                          settings) -> None:
    settings.RECONCILE_LOOKBACK_DAYS = (LATER.date() - DAY).days
    provider = openai_provider(reports_server)
    _ledger_day(priced(provider, "gpt-4o-mini"))
    _openai_day(reports_server)
    reports_server.fail_next.append(status)
    [check] = run(provider)
    assert (check.state, check.get_state_display()) == (DayCheck.State.PENDING, "Not checked yet")
    # The beat's next pass tries the day again.
    assert DAY in [c.day for c in services.reconcile_completed_days(now=LATER)]
    assert DayCheck.objects.get(provider=provider, day=DAY).state == DayCheck.State.MATCH


def test_the_beat_task_is_idempotent_and_alerts_once(reports_server: FakeReports, settings, admin_user,
                                                     finance_user, member_user,
                                                     django_capture_on_commit_callbacks) -> None:
    ensure_role_groups()
    allow_loopback_webhooks(settings)
    with receiver() as hook:
        provider = openai_provider(reports_server, alert_emails=["books@example.com"], alert_webhook_url=hook.url)
        _ledger_day(priced(provider, "gpt-4o-mini"))
        _openai_day(reports_server, cost_output=2.0)
        settings.RECONCILE_LOOKBACK_DAYS = (LATER.date() - DAY).days
        for _ in range(2):
            with django_capture_on_commit_callbacks(execute=True):
                services.reconcile_completed_days(now=LATER)
                # A day settled is not fetched again by the beat: a re-check by hand is what could re-alert.
                run(provider)
        assert DayCheck.objects.filter(provider=provider, day=DAY).count() == 1
        assert Comparison.objects.filter(day_check__day=DAY).count() == 1
        assert DayCheck.objects.get(day=DAY).state == DayCheck.State.DRIFT
        assert len(mail.outbox) == 1 and "drift on 2026-11-02" in mail.outbox[0].subject
        assert len(hook.posts) == 1
        body = hook.posts[0]["json"]
        assert (body["event"], body["day"], body["ledger_cost"], body["provider_cost"]) == (
            "reconcile.drift", "2026-11-02", "2.1", "3.1")
    notified = set(Notification.objects.values_list("user__email", flat=True))
    assert notified == {admin_user.email, finance_user.email}
    assert "aspweb recorded $2.10" in Notification.objects.first().body
