"""Route strategies and the circuit breaker, with state in Django's cache (Redis under REDIS_URL)."""

from collections import Counter
from decimal import Decimal

import pytest
from django.core.cache import cache

from gateway import routing
from gateway.models import Deployment, Route
from providers.models import Model, Price, Provider

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    cache.clear()


@pytest.fixture
def route() -> Route:
    provider = Provider.objects.create(name="p", kind="ollama")
    route = Route.objects.create(name="chat")
    for priority, (name, price_in, price_out) in enumerate([("a", "3", "15"), ("b", "0.1", "0.4"),
                                                            ("c", None, None)], start=1):
        model = Model.objects.create(provider=provider, name=name)
        if price_in is not None:
            Price.objects.create(model=model, input=Decimal(price_in), output=Decimal(price_out))
        Deployment.objects.create(route=route, model=model, priority=priority, weight=priority)
    return route


def _names(deployments: list[Deployment]) -> list[str]:
    return [d.model.name for d in deployments]


def _deployments(route: Route) -> list[Deployment]:
    return list(route.deployments.select_related("model"))


def test_priority_order(route: Route) -> None:
    assert _names(routing.order(route, _deployments(route))) == ["a", "b", "c"]


def test_cost_order_puts_unpriced_last(route: Route) -> None:
    route.strategy = Route.Strategy.COST
    assert _names(routing.order(route, _deployments(route))) == ["b", "a", "c"]


def test_latency_order_measures_unmeasured_first_then_fastest(route: Route) -> None:
    route.strategy = Route.Strategy.LATENCY
    a, b, c = _deployments(route)
    routing.latency_observe(a.model_id, 900)
    routing.latency_observe(b.model_id, 100)
    assert _names(routing.order(route, _deployments(route))) == ["c", "b", "a"]
    routing.latency_observe(c.model_id, 500)
    assert _names(routing.order(route, _deployments(route))) == ["b", "c", "a"]


def test_latency_is_a_moving_average() -> None:
    routing.latency_observe(7, 100)
    routing.latency_observe(7, 200)
    assert routing.latency_average(7) == pytest.approx(120)


def test_weighted_round_robin_follows_the_weights(route: Route) -> None:
    route.strategy = Route.Strategy.WEIGHTED
    firsts = Counter(routing.order(route, _deployments(route))[0].model.name for _ in range(60))
    assert firsts == {"a": 10, "b": 20, "c": 30}  # weights 1, 2, 3
    # The others stay behind as fallbacks, by priority.
    assert len(routing.order(route, _deployments(route))) == 3


def test_circuit_opens_after_consecutive_failures_and_closes_after_a_good_trial(
    settings: object, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.CIRCUIT_FAILURE_THRESHOLD = 3
    settings.CIRCUIT_COOLDOWN_SECONDS = 30
    now = [1000.0]
    monkeypatch.setattr(routing.time, "time", lambda: now[0])
    for _ in range(2):
        routing.record_failure(1)
    assert routing.circuit(1).state == "closed" and routing.admit(1)
    routing.record_failure(1)
    assert routing.circuit(1) == routing.Circuit("open", 3, 30.0)
    assert not routing.admit(1)
    now[0] += 31
    assert routing.circuit(1).state == "half-open"
    assert routing.admit(1)  # one trial call...
    assert not routing.admit(1)  # ...at a time
    routing.record_success(1)
    assert routing.circuit(1) == routing.Circuit("closed", 0, 0.0)


def test_a_failed_trial_opens_the_circuit_again(settings: object, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    now = [0.0]
    monkeypatch.setattr(routing.time, "time", lambda: now[0])
    routing.record_failure(2)
    routing.record_failure(2)
    now[0] += settings.CIRCUIT_COOLDOWN_SECONDS + 1
    assert routing.admit(2)
    routing.record_failure(2)
    assert routing.circuit(2).state == "open" and not routing.admit(2)


def test_a_success_resets_the_count(settings: object) -> None:
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    routing.record_failure(3)
    routing.record_success(3)
    routing.record_failure(3)
    assert routing.circuit(3).state == "closed"
