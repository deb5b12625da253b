"""aspweb without what each call leaves besides its record (its metrics and its log line), nor the ledger
writer's and the response cache's metrics: the baseline of docs/benchmarks.md's "Observability" runs.

    .venv/bin/python -m bench.gateway_bench latency --requests 300 --app bench.without_observability:application
"""

from aspweb import metrics
from aspweb.asgi import application
from providers import observe

observe.call_finished = lambda fields, row, request=None: None
metrics.response_cache_looked_up = lambda hit: None
metrics.response_cache_hit = lambda **labels: None
metrics.ledger_batch_written = lambda *args, **kwargs: None

__all__ = ["application"]
