"""Prometheus metrics for every app, served at GET /metrics (aspweb/ops.py).

    metrics.call_observed(provider=..., model=..., source=..., status=..., ...)   # the call path, once per call
    metrics.response_cache_hit(provider=..., model=..., source=...)   # an answer the response cache replayed

Several uvicorn workers: set PROMETHEUS_MULTIPROC_DIR to an empty directory writable by every worker (wiped
before the server starts). prometheus-client then keeps each process's figures in memory-mapped files there,
and /metrics, whichever worker answers it, adds up every process's. Without it the figures are the answering
process's own, right for one worker. The variable is read once, when prometheus-client is first imported.

Updates run on every call: the label children of a (provider, model, source) are looked up once and kept, so
a call costs one dict lookup and a handful of increments. Figures that live in shared state (circuit
breakers, in the cache) are not counted as they change but read when /metrics is scraped, by collectors the
apps above register (`scrape_register`).
"""

import os
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# The `_created` series: not kept in multiprocess mode, so kept in neither, for one set of names.
disable_created_metrics()
_registry = CollectorRegistry(auto_describe=True)
_CALL = ("provider", "model", "source")
# Seconds: gateway calls answered from memory take milliseconds, long generations minutes.
_TIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)

CALLS = Counter("aspweb_calls", "Calls by outcome (ok, error, cancelled) and error kind (empty when none).",
                [*_CALL, "outcome", "error_kind"], registry=_registry)
LATENCY = Histogram("aspweb_call_latency_seconds", "Whole-call latency, from admission to the last chunk.",
                    _CALL, buckets=_TIME_BUCKETS, registry=_registry)
TTFT = Histogram("aspweb_call_ttft_seconds", "Time to the first token reaching the caller.",
                 _CALL, buckets=_TIME_BUCKETS, registry=_registry)
TOKENS = Counter("aspweb_call_tokens", "Tokens by class: input (not cached), cache_read, cache_write, output "
                 "(reasoning included) and reasoning.", [*_CALL, "kind"], registry=_registry)
COST = Counter("aspweb_call_cost_usd", "Cost in USD as the ledger records it (unpriced calls add nothing).",
               _CALL, registry=_registry)
UNPRICED = Counter("aspweb_call_unpriced", "Calls of unknown cost: no price, or their record not written.",
                   _CALL, registry=_registry)
BUDGET_REFUSALS = Counter("aspweb_budget_refusals", "Calls a hard-limit budget refused before they started.",
                          _CALL, registry=_registry)
LEDGER_BATCH = Histogram("aspweb_ledger_batch_records", "Usage records written per ledger transaction.",
                         buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=_registry)
LEDGER_LAG = Histogram("aspweb_ledger_write_lag_seconds", "From a usage record queued to its batch committed.",
                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
                       registry=_registry)
LEDGER_FAILURES = Counter("aspweb_ledger_write_failures", "Usage records a batch could not write.",
                          registry=_registry)
RESPONSE_CACHE = Counter("aspweb_response_cache_lookups", "Gateway response-cache lookups by result (hit, miss).",
                         ["result"], registry=_registry)
GATEWAY_ERRORS = Counter("aspweb_gateway_errors", "Error answers of /v1 by HTTP status and code: refusals before any "
                         "provider (a wrong key, a rate limit, bad input) and provider failures alike.",
                         ["status", "code"], registry=_registry)
CACHE_HITS = Counter("aspweb_response_cache_hits", "Answers served from the gateway's response cache, as the "
                     "ledger records them (cost 0, no provider called).", _CALL, registry=_registry)

_TOKEN_KINDS = ("input", "cache_read", "cache_write", "output", "reasoning")
_children: dict[tuple[str, str, str], tuple[Any, ...]] = {}
_children_lock = threading.Lock()


_outcomes: dict[tuple[str, str, str, str, str], Any] = {}


def _for_call(key: tuple[str, str, str]) -> tuple[Any, ...]:
    children = _children.get(key)
    if children is None:
        with _children_lock:
            children = (LATENCY.labels(*key), TTFT.labels(*key), COST.labels(*key),
                        *(TOKENS.labels(*key, kind) for kind in _TOKEN_KINDS))
            _children[key] = children
    return children


def _for_outcome(key: tuple[str, str, str, str, str]) -> Any:
    child = _outcomes.get(key)
    if child is None:
        child = _outcomes[key] = CALLS.labels(*key)
    return child


def call_observed(*, provider: str, model: str, source: str, status: str, error_kind: str = "",
                  latency_ms: float | None = None, ttft_ms: float | None = None, input_tokens: int = 0,
                  cache_read_tokens: int = 0, cache_write_tokens: int = 0, output_tokens: int = 0,
                  reasoning_tokens: int = 0, cost: Decimal | None = None) -> None:
    """Count one call as the ledger records it: `input_tokens` excludes cache reads and writes, `output_tokens`
    includes reasoning."""
    key = (provider, model, source)
    latency, ttft, cost_usd, *tokens = _for_call(key)
    _for_outcome((*key, status, error_kind)).inc()
    if error_kind == "budget_exceeded":
        BUDGET_REFUSALS.labels(*key).inc()
    if latency_ms is not None:
        latency.observe(latency_ms / 1000)
    if ttft_ms is not None:
        ttft.observe(ttft_ms / 1000)
    for counter, value in zip(tokens, (input_tokens, cache_read_tokens, cache_write_tokens, output_tokens,
                                       reasoning_tokens), strict=True):
        if value:
            counter.inc(value)
    if cost is None:
        UNPRICED.labels(*key).inc()
    elif cost:
        cost_usd.inc(float(cost))


def ledger_batch_written(size: int, lags: Iterable[float], failures: int = 0) -> None:
    LEDGER_BATCH.observe(size)
    for lag in lags:
        LEDGER_LAG.observe(lag)
    if failures:
        LEDGER_FAILURES.inc(failures)


def response_cache_looked_up(hit: bool) -> None:
    RESPONSE_CACHE.labels("hit" if hit else "miss").inc()


def gateway_error_answered(status: int, code: str) -> None:
    GATEWAY_ERRORS.labels(str(status), code).inc()


_hits: dict[tuple[str, str, str], Any] = {}


def response_cache_hit(*, provider: str, model: str, source: str) -> None:
    """Count one answer replayed from the response cache once its usage record is written: the call metrics
    leave it out (no provider was called), so that they and these add up to the ledger."""
    key = (provider, model, source)
    child = _hits.get(key)
    if child is None:
        child = _hits[key] = CACHE_HITS.labels(*key)
    child.inc()


# -- scraping ---------------------------------------------------------------------------------------

_scraped: list[Callable[[], Iterable[Metric]]] = []


class _ScrapeTime(Collector):
    """Figures read from shared state when /metrics is scraped, from the collectors apps registered."""

    def collect(self) -> Iterable[Metric]:
        for collect in _scraped:
            yield from collect()

    def describe(self) -> Iterable[Metric]:
        return []


def scrape_register(collect: Callable[[], Iterable[Metric]]) -> None:
    """Add a function yielding metric families (prometheus_client.core's) read at scrape time. It runs in the
    scraping request's thread and may use the database and the cache."""
    if collect not in _scraped:
        _scraped.append(collect)


_registry.register(_ScrapeTime())


def render() -> bytes:
    """The exposition text: every process's figures with PROMETHEUS_MULTIPROC_DIR, else this process's."""
    if not MULTIPROCESS:
        return generate_latest(_registry)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(_ScrapeTime())
    return generate_latest(registry)

