"""What every call leaves besides its usage record: its figures in the metrics (aspweb/metrics.py), a span
when OpenTelemetry is on (aspweb/otel.py), and one log line on the `aspweb.calls` logger (INFO), with the
request id, who called (user id, or the API key's prefix), provider, model, source, status, error kind,
latency, time to first token, tokens and cost.

Never the prompt, the answer, an error's text or a key: a provider's error message may quote the request.
"""

import logging
import time
from decimal import Decimal
from typing import Any

from aspweb import metrics, otel

logger = logging.getLogger("aspweb.calls")


def call_finished(fields: dict[str, Any], row: Any, request: Any = None) -> None:
    """Count and log one call from its usage record's fields (usage_record_create's arguments) and the record
    the ledger made of them (None: it could not be written, so its cost is unknown)."""
    cost: Decimal | None = None if row is None or row.unpriced else row.cost
    metrics.call_observed(
        provider=fields["provider"].name, model=fields["model"].name, source=fields["source"],
        status=fields["status"], error_kind=fields["error_kind"], latency_ms=fields["latency_ms"],
        ttft_ms=fields["ttft_ms"], input_tokens=fields["input_tokens"], cache_read_tokens=fields["cache_read_tokens"],
        cache_write_tokens=fields["cache_write_tokens"] + fields["cache_write_1h_tokens"],
        output_tokens=fields["output_tokens"], reasoning_tokens=fields["reasoning_tokens"], cost=cost)
    call_logged(fields, cost)
    if otel.enabled():
        _span(fields, cost, request)


# OpenTelemetry's GenAI names of the providers aspweb's kinds call (gen_ai.provider.name); others go by kind.
_GENAI_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "claude_cli": "anthropic",
                    "azure_openai": "azure.ai.openai", "gemini": "gcp.gemini", "groq": "groq", "cohere": "cohere"}


def _span(fields: dict[str, Any], cost: Decimal | None, request: Any) -> None:
    """The call as a span with OpenTelemetry's GenAI attributes: names, parameters and counts, never content."""
    provider, model = fields["provider"], fields["model"]
    start_ns = int(fields["created_at"].timestamp() * 1e9) if fields.get("created_at") else time.time_ns()
    end_ns = start_ns + int((fields["latency_ms"] or 0) * 1e6)
    error = fields["error_kind"] if fields["status"] == "error" else None
    operation = "embeddings" if getattr(request, "model_type", "chat") == "embedding" else "chat"
    otel.span_finished(name=f"{operation} {model.name}", start_ns=start_ns, end_ns=end_ns, error=error, attributes={
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": _GENAI_PROVIDERS.get(provider.kind, provider.kind),
        "gen_ai.request.model": model.name, "gen_ai.response.model": model.name,
        "gen_ai.request.max_tokens": getattr(request, "max_tokens", None),
        "gen_ai.request.temperature": getattr(request, "temperature", None),
        "gen_ai.request.top_p": getattr(request, "top_p", None),
        "gen_ai.usage.input_tokens": fields["input_tokens"] + fields["cache_read_tokens"]
        + fields["cache_write_tokens"] + fields["cache_write_1h_tokens"],
        "gen_ai.usage.output_tokens": fields["output_tokens"],
        "gen_ai.response.finish_reasons": [fields["finish_reason"]] if fields.get("finish_reason") else None,
        "gen_ai.response.id": fields.get("upstream_id") or None,
        "error.type": error,
        "aspweb.provider": provider.name, "aspweb.source": fields["source"], "aspweb.status": fields["status"],
        "aspweb.request_id": str(fields["request_id"]), "aspweb.ttft_ms": fields["ttft_ms"],
        "aspweb.cost_usd": float(cost) if cost is not None else None,
    })


def cache_hit_finished(fields: dict[str, Any], cost: Decimal | None) -> None:
    """An answer replayed from the gateway's response cache, once its usage record is written: counted among the
    cache hits by provider, model and source (not in the call metrics: no provider was called), and logged."""
    metrics.response_cache_hit(provider=fields["provider"].name, model=fields["model"].name, source=fields["source"])
    call_logged(fields, cost, cached=True)


def call_logged(fields: dict[str, Any], cost: Decimal | None, *, cached: bool = False) -> None:
    """The call's log line (`cached`: an answer replayed from the gateway's response cache)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    provider, model, source = fields["provider"].name, fields["model"].name, fields["source"]
    status, error_kind = fields["status"], fields.get("error_kind", "")
    user, api_key, latency_ms = fields["user"], fields["api_key"], fields.get("latency_ms")
    cost_usd = format(cost, "f") if cost is not None else None
    # The record made directly: Logger.info would walk the stack for the caller's file and line (findCaller),
    # a third of the line's cost, to say what the logger's name says already.
    logger.handle(logger.makeRecord(
        logger.name, logging.INFO, __file__, 0, "call %s %s/%s %s %s%s%s %s ms $%s",
        (fields["request_id"], provider, model, source, status, f" ({error_kind})" if error_kind else "",
         " (cached)" if cached else "", "-" if latency_ms is None else latency_ms, cost_usd), None, extra={
            "request_id": str(fields["request_id"]), "user": getattr(user, "pk", None),
            "key_prefix": getattr(api_key, "prefix", None), "provider": provider, "model": model,
            "source": source, "status": status, "error_kind": error_kind, "cached": cached,
            "latency_ms": latency_ms, "ttft_ms": fields.get("ttft_ms"), "input_tokens": fields["input_tokens"],
            "output_tokens": fields["output_tokens"], "cost_usd": cost_usd,
        }))
