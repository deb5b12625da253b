"""Hard limits held in Redis (budgets/redisholds.py), the production profile's way: a covered call holds on
the event loop with no query and no thread once its periods are known, a call is charged to Redis once
however often its record is written, and the sweep gives back what crashed calls held and raises counters
to what the period rows say. Run against the real Redis of the PostgreSQL + Redis suite."""

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from budgets import holds, redisholds, services
from budgets.models import BudgetPeriod
from providers import calls
from providers.adapters.base import ChatRequest, Message
from providers.models import Model
from tests.budgets_support import held, make_budget, make_model, period_of
from usage import services as usage_services

pytestmark = pytest.mark.skipif(settings.BUDGET_HOLDS != "redis",
                                reason="hard limits are held in Redis only with REDIS_URL (the production profile)")

CALLER = calls.Caller(source="cli")


def _request(model: Model, max_tokens: int = 10) -> ChatRequest:
    return ChatRequest(model=f"{model.provider.name}/{model.name}", messages=(Message("user", "hi"),),
                       max_tokens=max_tokens)


def _prepare(model: Model, record: calls.CallRecord, max_tokens: int = 10) -> calls.Prepared:
    return async_to_sync(calls.aprepare)(_request(model, max_tokens), caller=CALLER, record=record)


@pytest.mark.django_db(transaction=True)  # the periods' ids are kept once their rows are committed
def test_a_covered_call_holds_in_redis_on_the_event_loop_without_a_query_or_a_thread(hops: list[str]) -> None:
    model = make_model()
    budgets = [make_budget(f"Hard {n}", amount=Decimal(10), hard_limit=True) for n in range(5)]
    _prepare(model, calls.CallRecord())  # the first call of the period opens its rows and loads their counters
    hops.clear()

    record = calls.CallRecord()
    with CaptureQueriesContext(connection) as queries:
        prepared = _prepare(model, record)

    assert prepared.refused is None
    assert queries.captured_queries == [] and hops == []
    assert record.held == {period_of(budget).pk for budget in budgets}
    worst = held(record.request_id)
    assert len(worst) == 5 and len(set(worst)) == 1 and worst[0] > 0
    # Nothing is held in the period rows: Redis holds it, and the pages read it from there.
    assert not BudgetPeriod.objects.filter(reserved__gt=0).exists()
    assert period_of(budgets[0]).reserved == 2 * worst[0]


def test_the_record_settles_the_hold_and_charges_redis_once_however_often_it_is_written(db: None) -> None:
    model = make_model()
    budget = make_budget(amount=Decimal(10), hard_limit=True)
    record = calls.CallRecord()
    _prepare(model, record)
    fields: dict[str, Any] = {"provider": model.provider, "model": model, "source": "cli", "status": "ok",
                              "input_tokens": 20, "output_tokens": 5}
    row = usage_services.usage_record_create(request_id=record.request_id, **fields)

    period = period_of(budget)
    assert row.cost > 0 and held() == []
    assert redisholds.counters(period.pk) == (row.cost, Decimal(0)) == (period.spent, period.reserved)
    # The same call's record written again (a batch retried, a journal replayed) adds nothing in Redis.
    redisholds.settle([(record.request_id, {period.pk: row.cost})])
    assert redisholds.counters(period.pk) == (row.cost, Decimal(0))


def test_a_call_that_does_not_fit_is_refused_by_redis_naming_the_budget(db: None) -> None:
    model = make_model()
    make_budget("Roomy", amount=Decimal(10), hard_limit=True)
    tight = make_budget("Tight", scope="model", model=model, amount=Decimal("0.0001"), hard_limit=True)
    _prepare(model, calls.CallRecord(), max_tokens=1)  # fits: 20 + 1 tokens at $1 and $5 per 1M
    services.BudgetPeriod.objects.filter(budget=tight).update(spent=Decimal("0.0001"))
    redisholds.forget([period_of(tight).pk])  # reloaded from the row, which now says it is spent

    record = calls.CallRecord()
    prepared = _prepare(model, record, max_tokens=1000)

    assert prepared.refused is not None and prepared.refused.code == "budget_exceeded"
    assert "Tight" in prepared.refused.message
    assert held(record.request_id) == [] and record.held == set()


def test_the_sweep_gives_back_crashed_calls_holds_and_raises_counters_to_the_rows(db: None) -> None:
    model = make_model()
    budget = make_budget(amount=Decimal(1), hard_limit=True)
    now = timezone.now()
    crashed, live = uuid.uuid4(), uuid.uuid4()
    for request_id, cost, when in ((crashed, "0.5", now - timedelta(hours=1)), (live, "0.25", now)):
        holds.budget_reserve(request_id=request_id, provider=model.provider, model=model, user=None, api_key=None,
                             cost=Decimal(cost), ttl=timedelta(minutes=15), now=when)
    period = period_of(budget)
    assert period.reserved == Decimal("0.75")
    # A cost the row has and Redis missed (a worker that died between its answer and its charge).
    BudgetPeriod.objects.filter(pk=period.pk).update(spent=Decimal("0.125"))

    result = services.budgets_sweep()

    assert result.released == 1
    assert held(crashed) == [] and held(live) == [Decimal("0.25")]
    assert redisholds.counters(period.pk) == (Decimal("0.125"), Decimal("0.25"))
    # Never lowered: a row behind Redis (a batch being written) does not take back what Redis counted.
    BudgetPeriod.objects.filter(pk=period.pk).update(spent=Decimal("0.0625"))
    services.budgets_sweep()
    assert redisholds.counters(period.pk) == (Decimal("0.125"), Decimal("0.25"))


def test_the_sweep_forgets_the_counters_of_periods_that_are_gone(db: None) -> None:
    model = make_model()
    budget = make_budget(amount=Decimal(1), hard_limit=True)
    _prepare(model, calls.CallRecord())
    gone = period_of(budget).pk
    assert redisholds.counters(gone) is not None
    budget.delete()

    services.budgets_sweep()

    assert redisholds.counters(gone) is None and gone not in redisholds.loaded_periods()


def test_amounts_cross_redis_exactly_to_the_ledgers_places() -> None:
    for value in ("0", "0.0000000001", "0.1", "12345.6789012345", "900000"):
        assert redisholds.amount(redisholds.units(Decimal(value))) == Decimal(value)
    # A hold is rounded up to the ledger's places, never down.
    assert redisholds.units(Decimal("0.00000000001"), up=True) == 1
