"""OpenTelemetry traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set: each call becomes one span, sent to the
collector over OTLP/HTTP with its JSON encoding (`POST {endpoint}/v1/traces`).

    otel.span_finished(name=..., start_ns=..., end_ns=..., attributes={...}, error=None)

Why not the OpenTelemetry SDK: aspweb makes one kind of span, a root span per call with no children, and
exports it; the SDK and its OTLP exporter would bring half a dozen packages (protobuf among them) for that.
OTLP's JSON encoding is part of the protocol (opentelemetry-proto's JSON mapping), which every collector
accepts on its HTTP receiver.

Spans wait in a bounded queue (the oldest dropped when it is full, a collector being away must not grow
memory) and a daemon thread of each process sends them in batches, every second or every 512 spans: the
call path only appends. Variables read, as the SDK reads them: OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, used as it is), OTEL_EXPORTER_OTLP_HEADERS (`key=value,...`),
OTEL_SERVICE_NAME (`aspweb`).
"""

import collections
import logging
import os
import secrets
import threading
from typing import Any
from urllib.parse import unquote

import httpx
from django.conf import settings

logger = logging.getLogger(__name__)

_BATCH = 512
_QUEUE = 8192
_INTERVAL_SECONDS = 1.0
_SPAN_KIND_CLIENT = 3
_STATUS_ERROR = 2

_lock = threading.Lock()
_queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=_QUEUE)
_wake = threading.Event()
_exporter_pid: int | None = None


def enabled() -> bool:
    return bool(settings.OTEL_TRACES_ENDPOINT)


def span_finished(*, name: str, start_ns: int, end_ns: int, attributes: dict[str, Any],
                  error: str | None = None) -> None:
    """Queue one finished root span (kind client) for export. `error`: its error type, which marks the span
    failed."""
    span: dict[str, Any] = {
        "traceId": secrets.token_hex(16), "spanId": secrets.token_hex(8), "name": name,
        "kind": _SPAN_KIND_CLIENT, "startTimeUnixNano": str(start_ns), "endTimeUnixNano": str(end_ns),
        "attributes": [_attribute(key, value) for key, value in attributes.items() if value is not None],
    }
    if error:
        span["status"] = {"code": _STATUS_ERROR, "message": error}
    _queue.append(span)
    _ensure_exporter()
    if len(_queue) >= _BATCH:
        _wake.set()


def flush() -> None:
    """Send what is queued now, in this thread (tests, and a process about to exit)."""
    while _queue:
        _send(_take())


def _attribute(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": _value(value)}


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # int64 is a string in OTLP's JSON
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_value(item) for item in value]}}
    return {"stringValue": str(value)}


def _take() -> list[dict[str, Any]]:
    batch = []
    while _queue and len(batch) < _BATCH:
        try:
            batch.append(_queue.popleft())
        except IndexError:
            break
    return batch


def _send(spans: list[dict[str, Any]]) -> None:
    if not spans:
        return
    body = {"resourceSpans": [{
        "resource": {"attributes": [_attribute("service.name", settings.OTEL_SERVICE_NAME)]},
        "scopeSpans": [{"scope": {"name": "aspweb"}, "spans": spans}],
    }]}
    try:
        response = httpx.post(settings.OTEL_TRACES_ENDPOINT, json=body, headers=_headers(), timeout=5.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        logger.warning("Could not export %d spans to the OpenTelemetry collector: %r", len(spans), exc)


def _headers() -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS: `key=value` pairs, comma-separated, values URL-encoded (the spec's format)."""
    headers = {}
    for pair in settings.OTEL_HEADERS.split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            headers[key.strip()] = unquote(value.strip())
    return headers


def _ensure_exporter() -> None:
    """One exporting thread per process (a forked worker starts its own)."""
    global _exporter_pid
    if _exporter_pid == os.getpid():
        return
    with _lock:
        if _exporter_pid != os.getpid():
            threading.Thread(target=_export_forever, name="aspweb-otlp", daemon=True).start()
            _exporter_pid = os.getpid()


def _export_forever() -> None:
    while True:
        _wake.wait(_INTERVAL_SECONDS)
        _wake.clear()
        try:
            flush()
        except Exception:  # the exporter must outlive any one batch
            logger.exception("The OpenTelemetry exporter failed on a batch")
