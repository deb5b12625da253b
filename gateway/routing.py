"""Routes: which deployment serves a call, in what order, and which ones are cooling down.

State lives in Django's cache, so with REDIS_URL every worker and host shares the same circuit
breakers, latency averages and round-robin counters; the embedded default keeps them per process.
"""

import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from prometheus_client.core import GaugeMetricFamily, Metric

from providers.calls import CallError
from providers.models import Model, Price

from .models import Deployment, Route

LATENCY_WEIGHT = 0.2  # how much one new sample moves the moving average


def _key(*parts: object) -> str:
    return "aspweb:route:" + ":".join(str(p) for p in parts)


def resolve(name: str) -> tuple[Route, list[Deployment]]:
    """The route `name` and its deployments that can serve (enabled models of enabled, active providers), for
    the call path (providers.calls, which keeps the resolution)."""
    route = Route.objects.filter(name=name).first()
    if route is None:
        raise CallError("not_found", f"There is no route or model named {name!r} (models are PROVIDER/MODEL).")
    if not route.enabled:
        raise CallError("disabled", f"Route {name!r} is disabled.")
    deployments = [
        d for d in route.deployments.select_related("model__provider")
        if d.model.enabled and d.model.provider.enabled and d.model.provider.archived_at is None
    ]
    if not deployments:
        raise CallError("disabled", f"Route {name!r} has no enabled deployment.")
    return route, deployments


# -- ordering -------------------------------------------------------------------------------------


def order(route: Route, deployments: list[Deployment],
          prices: dict[int, Price | None] | None = None) -> list[Deployment]:
    """The deployments in the order to try them, by the route's strategy. Later ones are fallbacks.
    `prices`: each deployment's price in force by its id, when the caller has them (else they are read)."""
    by_priority = sorted(deployments, key=lambda d: (d.priority, d.pk))
    if route.strategy == Route.Strategy.WEIGHTED and by_priority:
        first = _weighted_pick(route, by_priority)
        return [first, *[d for d in by_priority if d is not first]]
    if route.strategy == Route.Strategy.LATENCY:
        # Unmeasured deployments go first, so every one gets measured.
        return sorted(by_priority, key=lambda d: latency_average(d.model_id) or 0.0)
    if route.strategy == Route.Strategy.COST:
        return sorted(by_priority, key=lambda d: _blended_price(
            prices[d.pk] if prices is not None and d.pk in prices else d.model.current_price()))
    return by_priority


def _weighted_pick(route: Route, deployments: list[Deployment]) -> Deployment:
    total = sum(d.weight for d in deployments)
    counter_key = _key("rr", route.pk)
    cache.add(counter_key, 0, timeout=None)
    try:
        ticket = cache.incr(counter_key)
    except ValueError:  # evicted between add and incr
        cache.set(counter_key, 1, timeout=None)
        ticket = 1
    slot = (ticket - 1) % total
    for deployment in deployments:
        if slot < deployment.weight:
            return deployment
        slot -= deployment.weight
    return deployments[0]


def _blended_price(price: Price | None) -> tuple[int, Decimal]:
    if price is None:
        return (1, Decimal(0))  # unpriced deployments last
    return (0, price.input + price.output)


# -- latency --------------------------------------------------------------------------------------


def latency_average(model_id: int) -> float | None:
    return cache.get(_key("latency", model_id))


def latency_observe(model_id: int, latency_ms: float) -> None:
    previous = latency_average(model_id)
    value = latency_ms if previous is None else previous + LATENCY_WEIGHT * (latency_ms - previous)
    cache.set(_key("latency", model_id), value, timeout=None)


# -- circuit breaker ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Circuit:
    state: str  # closed, open, half-open
    failures: int
    retry_in: float  # seconds until an open circuit lets a trial call through


def circuit(model_id: int) -> Circuit:
    failures = cache.get(_key("failures", model_id), 0)
    open_until = cache.get(_key("open_until", model_id))
    if open_until is None:
        return Circuit("closed", failures, 0.0)
    remaining = open_until - time.time()
    return Circuit("open", failures, remaining) if remaining > 0 else Circuit("half-open", failures, 0.0)


def admit(model_id: int) -> bool:
    """May a call go to this deployment now? Closed: yes. Open: no. Half-open: one trial call at a time."""
    state = circuit(model_id)
    if state.state == "closed":
        return True
    if state.state == "open":
        return False
    return cache.add(_key("trial", model_id), 1, timeout=settings.CIRCUIT_COOLDOWN_SECONDS)


def record_success(model_id: int) -> None:
    cache.delete_many([_key("failures", model_id), _key("open_until", model_id), _key("trial", model_id)])


def record_failure(model_id: int) -> None:
    failures_key = _key("failures", model_id)
    cache.add(failures_key, 0, timeout=None)
    try:
        failures = cache.incr(failures_key)
    except ValueError:
        cache.set(failures_key, 1, timeout=None)
        failures = 1
    if failures >= settings.CIRCUIT_FAILURE_THRESHOLD:
        cooldown = settings.CIRCUIT_COOLDOWN_SECONDS
        cache.set(_key("open_until", model_id), time.time() + cooldown, timeout=cooldown * 20)
        cache.delete(_key("trial", model_id))


_STATES = {"closed": 0, "half-open": 1, "open": 2}


def circuit_metrics() -> Iterable[Metric]:
    """The circuit of every model that serves a route, read from the shared cache when /metrics is scraped
    (aspweb/metrics.py): a breaker's state lives there, not in any one worker."""
    family = GaugeMetricFamily("aspweb_circuit_state", "Circuit breaker of each routed model: 0 closed, "
                               "1 half-open, 2 open.", labels=["provider", "model"])
    for model in Model.objects.filter(deployments__isnull=False).select_related("provider").distinct():
        family.add_metric([model.provider.name, model.name], _STATES[circuit(model.pk).state])
    yield family


def reset(model_id: int) -> None:
    """An admin closes a circuit by hand."""
    record_success(model_id)
