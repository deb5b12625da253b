"""Routes through the call path: fallback before the first token, the circuit breaker, one record per call."""

from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache

from gateway import routing
from gateway.models import Deployment, Route
from providers import calls
from providers.adapters.base import ChatRequest, Message, ProviderError
from providers.models import Model, Provider
from tests.fakes.upstream import FakeUpstream
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

CALLER = calls.Caller(source="gateway")


@pytest.fixture
def second() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def route(upstream: FakeUpstream, second: FakeUpstream) -> Route:
    cache.clear()
    route = Route.objects.create(name="chat")
    for priority, (name, fake) in enumerate([("one", upstream), ("two", second)], start=1):
        provider = Provider.objects.create(name=name, kind="openai_compatible", base_url=fake.openai_base_url,
                                           max_retries=2)
        model = Model.objects.create(provider=provider, name="fake-model-a")
        Deployment.objects.create(route=route, model=model, priority=priority)
    return route


def _call(record: calls.CallRecord, address: str = "chat") -> str:
    async def go() -> str:
        request = ChatRequest(model=address, messages=(Message("user", "hi"),))
        chunks = [c async for c in calls.stream_chat(request, caller=CALLER, record=record)]
        return "".join(c.text for c in chunks)

    return async_to_sync(go)()


@pytest.mark.parametrize("fault", ["500", "429"])
def test_a_failing_first_deployment_falls_back_at_once(route: Route, upstream: FakeUpstream, second: FakeUpstream,
                                                       fault: str) -> None:
    upstream.mode = fault
    record = calls.CallRecord()
    assert _call(record) == second.reply
    assert (record.provider, record.route, record.attempts) == ("two", "chat", 2)
    assert len(upstream.requests) == 1  # no retries on a deployment that has a fallback behind it
    row = UsageRecord.objects.get()
    assert (row.provider_name, row.status, row.attempts) == ("two", "ok", 2)


def test_an_error_after_the_first_token_does_not_fall_back(route: Route, upstream: FakeUpstream,
                                                           second: FakeUpstream) -> None:
    upstream.fail_next("cut", cut_after=2)
    with pytest.raises(ProviderError):
        _call(calls.CallRecord())
    assert second.requests == []


def test_a_non_retryable_error_does_not_fall_back(route: Route, upstream: FakeUpstream,
                                                  second: FakeUpstream) -> None:
    upstream.fail_next("401")
    with pytest.raises(ProviderError) as caught:
        _call(calls.CallRecord())
    assert caught.value.kind == "auth" and second.requests == []


def test_the_circuit_opens_skips_the_deployment_then_lets_a_trial_through(
    route: Route, upstream: FakeUpstream, second: FakeUpstream, settings: object, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    now = [1000.0]
    monkeypatch.setattr(routing.time, "time", lambda: now[0])
    upstream.mode = "500"
    for _ in range(2):
        _call(calls.CallRecord())
    assert len(upstream.requests) == 2
    record = calls.CallRecord()
    _call(record)
    assert len(upstream.requests) == 2  # skipped while open
    assert record.skipped == ["one/fake-model-a"] and record.provider == "two"

    now[0] += settings.CIRCUIT_COOLDOWN_SECONDS + 1
    upstream.mode = "ok"
    record = calls.CallRecord()
    assert _call(record) == upstream.reply  # the half-open trial succeeds...
    one = Model.objects.get(provider__name="one")
    assert routing.circuit(one.pk).state == "closed"  # ...and closes the circuit


def test_every_deployment_cooling_down_is_a_clear_error(route: Route, upstream: FakeUpstream, second: FakeUpstream,
                                                        settings: object) -> None:
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    upstream.mode = second.mode = "500"
    with pytest.raises(ProviderError):
        _call(calls.CallRecord())
    with pytest.raises(ProviderError) as caught:
        _call(calls.CallRecord())
    assert "Every deployment of route 'chat' is cooling down" in caught.value.message
    assert caught.value.retry_after and caught.value.retry_after > 1


def test_lowest_latency_learns_from_calls(route: Route, upstream: FakeUpstream, second: FakeUpstream) -> None:
    Route.objects.filter(pk=route.pk).update(strategy=Route.Strategy.LATENCY)
    upstream.chunk_delay = 0.3
    for _ in range(2):
        _call(calls.CallRecord())  # each deployment gets measured once: unmeasured ones go first
    records = [calls.CallRecord() for _ in range(3)]
    for record in records:
        _call(record)
    assert {r.provider for r in records} == {"two"}


@pytest.mark.parametrize(("change", "words"), [("disable_route", "Route 'chat' is disabled"),
                                               ("disable_models", "has no enabled deployment")])
def test_routes_that_cannot_serve(route: Route, change: str, words: str) -> None:
    if change == "disable_route":
        Route.objects.filter(pk=route.pk).update(enabled=False)
    else:
        Model.objects.update(enabled=False)
    with pytest.raises(calls.CallError) as caught:
        _call(calls.CallRecord())
    assert words in caught.value.message


def test_a_fallback_deployment_is_held_to_its_own_hard_budget(route: Route, upstream: FakeUpstream,
                                                               second: FakeUpstream) -> None:
    from decimal import Decimal

    from budgets.models import Budget
    from providers.models import Price

    two = Model.objects.get(provider__name="two")
    Price.objects.create(model=two, input=Decimal(1), output=Decimal(1))
    Budget.objects.create(name="two only", scope=Budget.Scope.PROVIDER, provider=two.provider,
                          period=Budget.Period.DAILY, amount=Decimal("0.000001"), hard_limit=True)
    upstream.mode = "500"
    with pytest.raises(calls.CallError) as caught:
        _call(calls.CallRecord())
    assert caught.value.code == "budget_exceeded" and "two only" in caught.value.message
    assert second.requests == []
