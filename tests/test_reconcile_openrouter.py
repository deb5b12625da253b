"""Reconciliation with OpenRouter, whose reports are per generation: each of aspweb's calls looked up by the id
OpenRouter gave its answer (`GET /api/v1/generation?id=`), against a fake speaking the documented shape;
matching and drifting days, generations OpenRouter does not know, rate limits, the bound on lookups, and a
gateway call whose id the ledger keeps and the reconciliation then finds."""

from datetime import timedelta
from decimal import Decimal

import pytest

from reconcile import services
from reconcile.models import Comparison, DayCheck
from tests import gateway_support
from tests.fakes.reports import OPENROUTER_KEY, FakeReports
from tests.fakes.upstream import FakeUpstream
from tests.reconcile_support import DAY, LATER, call, openrouter_provider, priced, run
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db

MODEL = "openai/gpt-4o-mini"


def _calls(fake: FakeReports, model, n: int = 2, *, cost: float = 0.75, total_cost: float | None = None,
           **generation) -> list[UsageRecord]:
    """n calls in the ledger of 500k prompt tokens (100k read from the cache) and 250k output, each charged
    $0.75 by OpenRouter as its answer said, and OpenRouter's stats of each generation (`total_cost` when it
    charged otherwise)."""
    records = []
    for i in range(n):
        upstream_id = f"gen-1762084800-{model.pk:02d}{i:04d}"
        records.append(call(model, input_tokens=400_000, cache_read_tokens=100_000, output_tokens=250_000,
                            reported_cost=Decimal(str(cost)), upstream_id=upstream_id))
        fake.add_generation(upstream_id, model=model.name, native_tokens_prompt=500_000, native_tokens_cached=100_000,
                            native_tokens_completion=250_000,
                            total_cost=cost if total_cost is None else total_cost, **generation)
    return records


def test_a_day_that_matches_looks_up_each_call_with_the_providers_key(reports_server: FakeReports) -> None:
    provider = openrouter_provider(reports_server)
    model = priced(provider, MODEL)
    records = _calls(reports_server, model)
    call(model, input_tokens=10, cached=True)  # answered from aspweb's cache: OpenRouter never saw it
    [check] = run(provider)
    assert (check.state, check.message) == (DayCheck.State.MATCH, "")
    [row] = check.comparisons.all()
    assert (row.model_name, row.status) == (MODEL, Comparison.Status.MATCH)
    assert (row.ledger_requests, row.provider_requests) == (2, 2)
    assert (row.ledger_input_tokens, row.provider_input_tokens) == (800_000, 800_000)
    assert (row.ledger_cache_read_tokens, row.provider_cache_read_tokens) == (200_000, 200_000)
    assert (row.ledger_output_tokens, row.provider_output_tokens) == (500_000, 500_000)
    assert (row.ledger_cost, row.provider_cost) == (Decimal("1.5"), Decimal("1.5"))
    assert (check.ledger_cost, check.provider_cost) == (Decimal("1.5"), Decimal("1.5"))
    # The documented request: the generation's id, the provider's own API key as a bearer token.
    assert reports_server.paths() == ["/api/v1/generation"] * 2
    assert [query["id"] for _, query, _ in reports_server.requests] == [[r.upstream_id] for r in records]
    assert {headers["Authorization"] for _, _, headers in reports_server.requests} == {f"Bearer {OPENROUTER_KEY}"}


def test_a_reporting_key_set_for_the_provider_is_used_instead_of_its_own(reports_server: FakeReports) -> None:
    provider = openrouter_provider(reports_server, api_key="sk-or-v1-calls-only-key", admin_key=OPENROUTER_KEY)
    _calls(reports_server, priced(provider, MODEL), 1)
    [check] = run(provider)
    assert check.state == DayCheck.State.MATCH
    assert reports_server.requests[0][2]["Authorization"] == f"Bearer {OPENROUTER_KEY}"


def test_a_wrong_key_is_said_in_plain_words(reports_server: FakeReports) -> None:
    provider = openrouter_provider(reports_server, api_key="sk-or-v1-revoked-key-0000")
    _calls(reports_server, priced(provider, MODEL), 1)
    [check] = run(provider)
    assert check.state == DayCheck.State.FAILED
    assert check.message == "OpenRouter refused the API key: it is wrong, revoked, or out of credits (HTTP 401)."
    provider.reporting.refresh_from_db()
    assert provider.reporting.last_error == check.message


def test_a_drift_in_what_openrouter_charged(reports_server: FakeReports) -> None:
    provider = openrouter_provider(reports_server)
    _calls(reports_server, priced(provider, MODEL), total_cost=0.80)  # charged more than its answers said
    [check] = run(provider)
    assert check.state == DayCheck.State.DRIFT
    [row] = check.comparisons.all()
    assert (row.status, row.price_drift, row.difference) == (Comparison.Status.DRIFT, True, Decimal("0.1"))


def test_a_drift_in_tokens(reports_server: FakeReports) -> None:
    provider = openrouter_provider(reports_server)
    _calls(reports_server, priced(provider, MODEL), 1)
    reports_server.generations[next(iter(reports_server.generations))]["native_tokens_completion"] = 300_000
    [check] = run(provider)
    [row] = check.comparisons.all()
    assert (row.status, row.price_drift, row.provider_output_tokens) == (Comparison.Status.DRIFT, False, 300_000)


def test_generations_openrouter_does_not_know_are_missing_at_the_provider(reports_server: FakeReports) -> None:
    provider = openrouter_provider(reports_server)
    _calls(reports_server, priced(provider, MODEL))
    lost = call(priced(provider, "anthropic/claude-3-haiku"), input_tokens=1000, output_tokens=10,
                upstream_id="gen-1762084800-unknown1")
    [check] = run(provider)
    statuses = dict(check.comparisons.values_list("model_name", "status"))
    assert statuses == {MODEL: Comparison.Status.MATCH,
                        "anthropic/claude-3-haiku": Comparison.Status.MISSING_AT_PROVIDER}
    assert check.state == DayCheck.State.DRIFT
    assert check.message == (f"1 of the 3 calls looked up are unknown to OpenRouter (missing at the provider): "
                             f"{lost.upstream_id}")


def test_calls_without_openrouter_s_id_are_said_and_left_out(reports_server: FakeReports) -> None:
    provider = openrouter_provider(reports_server)
    model = priced(provider, MODEL)
    _calls(reports_server, model)
    call(model, status="error", input_tokens=1000)  # estimated, cut before OpenRouter named the generation
    call(model, status="error")  # refused before any token: nothing to say about it
    [check] = run(provider)
    assert check.state == DayCheck.State.MATCH
    assert check.message == "1 call without OpenRouter's id could not be looked up"
    assert check.comparisons.get().ledger_requests == 2


def test_a_rate_limit_leaves_the_day_not_checked_yet_and_the_beat_retries_it(reports_server: FakeReports,
                                                                              settings) -> None:
    settings.RECONCILE_LOOKBACK_DAYS = (LATER.date() - DAY).days
    provider = openrouter_provider(reports_server)
    _calls(reports_server, priced(provider, MODEL))
    reports_server.fail_next.append(429)
    [check] = run(provider)
    assert (check.state, check.get_state_display()) == (DayCheck.State.PENDING, "Not checked yet")
    assert "rate-limiting" in check.message
    assert DAY in [c.day for c in services.reconcile_completed_days(now=LATER)]
    assert DayCheck.objects.get(provider=provider, day=DAY).state == DayCheck.State.MATCH


def test_the_beat_task_is_idempotent(reports_server: FakeReports, settings) -> None:
    settings.RECONCILE_LOOKBACK_DAYS = (LATER.date() - DAY).days
    provider = openrouter_provider(reports_server)
    _calls(reports_server, priced(provider, MODEL), total_cost=0.80)
    for _ in range(2):
        services.reconcile_completed_days(now=LATER)
    assert DayCheck.objects.filter(provider=provider, day=DAY).count() == 1
    assert Comparison.objects.filter(day_check__day=DAY).count() == 1
    assert DayCheck.objects.get(day=DAY).state == DayCheck.State.DRIFT
    assert len(reports_server.requests) == 2  # a settled day is not looked up again


def test_the_lookups_of_a_day_are_bounded_and_compared_like_for_like(reports_server: FakeReports,
                                                                      settings) -> None:
    settings.RECONCILE_OPENROUTER_LOOKUPS = 2
    provider = openrouter_provider(reports_server)
    _calls(reports_server, priced(provider, MODEL), 5)
    [check] = run(provider)
    assert len(reports_server.requests) == 2
    assert check.state == DayCheck.State.MATCH
    assert check.message == "a sample of 2 of the day's 5 calls was looked up"
    row = check.comparisons.get()
    assert (row.ledger_requests, row.provider_requests, row.ledger_cost) == (2, 2, Decimal("1.5"))


def test_cache_writes_and_the_customers_own_key(reports_server: FakeReports) -> None:
    # OpenRouter's stats do not count cache writes apart: the ledger's are taken out of the prompt. With the
    # customer's own key (`is_byok`), the call costs OpenRouter's fee and the upstream provider's charge.
    provider = openrouter_provider(reports_server)
    model = priced(provider, "anthropic/claude-3-haiku")
    call(model, input_tokens=1000, cache_read_tokens=8000, cache_write_tokens=1000, output_tokens=200,
         reported_cost=Decimal("0.002802"), upstream_id="gen-1762084800-byok0001")
    reports_server.add_generation("gen-1762084800-byok0001", model=model.name, native_tokens_prompt=10_000,
                                  native_tokens_cached=8000, native_tokens_completion=200, total_cost=0.000052,
                                  is_byok=True, upstream_inference_cost=0.00275)
    [check] = run(provider)
    row = check.comparisons.get()
    assert check.state == DayCheck.State.MATCH, row.__dict__
    assert (row.provider_input_tokens, row.provider_cache_write_tokens) == (1000, 1000)
    assert row.provider_cost == Decimal("0.002802")


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_a_gateway_call_keeps_openrouter_s_id_and_the_reconciliation_finds_it(
        upstream: FakeUpstream, reports_server: FakeReports, make_user, stream: bool) -> None:
    upstream.usage_style = "openrouter"
    upstream.raw_usage = {
        "prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280, "cost": 0.000228, "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 200}, "completion_tokens_details": {"reasoning_tokens": 0},
        "cost_details": {"upstream_inference_cost": None},
    }
    provider = openrouter_provider(reports_server, api_key=OPENROUTER_KEY)
    provider.base_url = upstream.openai_base_url
    provider.save()
    priced(provider, MODEL)
    key = gateway_support.make_key(make_user("member"))[1]

    answer = gateway_support.call("/v1/chat/completions", gateway_support.chat_body(f"router/{MODEL}", stream=stream),
                                  key=key)

    assert answer.status == 200, answer.content
    record = UsageRecord.objects.get()
    assert record.upstream_id.startswith("gen-")  # the id of every chunk OpenRouter sent
    # What OpenRouter then says of that generation: its native counts and its charge, as in the answer.
    reports_server.add_generation(record.upstream_id, model=MODEL, native_tokens_prompt=1200,
                                  native_tokens_cached=200, native_tokens_completion=80, total_cost=0.000228)
    provider.base_url = f"{reports_server.base_url}/api/v1"  # the same provider, its stats on the fake
    provider.save()
    day = record.created_at.date()
    later = record.created_at + timedelta(days=2)
    [check] = services.reconcile(provider=provider, since=day, until=day, now=later)
    assert check.state == DayCheck.State.MATCH, list(check.comparisons.values())
    assert reports_server.requests[0][1]["id"] == [record.upstream_id]
    row = check.comparisons.get()
    assert (row.ledger_input_tokens, row.ledger_cache_read_tokens, row.ledger_output_tokens) == (1000, 200, 80)
    assert row.ledger_cost == row.provider_cost == Decimal("0.000228")


# -- pages ------------------------------------------------------------------------------------------


def test_the_settings_need_no_key_and_ask_for_no_key_or_project_id(client_as, reports_server: FakeReports) -> None:
    provider = openrouter_provider(reports_server)
    provider.reporting.delete()
    admin = client_as("admin")
    assert "Save the reporting key settings to turn it on" in admin.get("/reconciliation/").content.decode()
    page = admin.get(f"/reconciliation/{provider.pk}/settings/").content.decode()
    assert 'name="api_key_id"' not in page and 'name="project_id"' not in page
    assert "left blank, the provider&#x27;s own API key reads them" in page
    response = admin.post(f"/reconciliation/{provider.pk}/settings/", {"admin_key": "", "tolerance_percent": "2"})
    assert response.status_code == 302
    assert (provider.reporting.__class__.objects.get(provider=provider).tolerance_percent) == 2
    assert "the provider's API key reads the reports" in admin.get(f"/providers/{provider.pk}/").content.decode()


def test_the_pages_say_what_cannot_be_reconciled(client_as, reports_server: FakeReports) -> None:
    provider = openrouter_provider(reports_server)
    _calls(reports_server, priced(provider, MODEL))
    run(provider)
    finance = client_as("finance")
    month = finance.get(f"/reconciliation/?month={DAY:%Y-%m}").content.decode()
    assert "aspweb recorded <strong>$1.50</strong>; the provider reports <strong>$1.50</strong>" in month
    assert "Calls missing from the ledger cannot be found this way" in month
    day = finance.get(f"/reconciliation/{provider.pk}/{DAY.isoformat()}/").content.decode()
    assert 'id="recon-openrouter-note"' in day and "(missing in the ledger) cannot be found" in day
    assert "each looked up by its generation id" in day
