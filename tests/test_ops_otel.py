"""OpenTelemetry (aspweb/otel.py): with an OTLP endpoint, each call is one span with the GenAI attributes,
sent to a collector; here a receiver on loopback that speaks OTLP/HTTP's JSON encoding, as a collector's
HTTP receiver does."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.cache import cache

from aspweb import otel
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import call, chat_body, make_key, make_providers
from usage.models import UsageRecord

CHAT = "/v1/chat/completions"


class Collector:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        self.status = 200
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.posts.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(collector.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[dict[str, Any]]:
        return [span for _, _, body in self.posts for resource in body["resourceSpans"]
                for scope in resource["scopeSpans"] for span in scope["spans"]]


@pytest.fixture
def collector(settings: Any) -> Iterator[Collector]:
    receiver = Collector()
    settings.OTEL_TRACES_ENDPOINT = f"{receiver.url}/v1/traces"
    settings.OTEL_HEADERS = "authorization=Bearer%20collector-token,x-team=ops"
    yield receiver
    otel.flush()
    receiver.server.shutdown()


def _attributes(span: dict[str, Any]) -> dict[str, Any]:
    def plain(value: dict[str, Any]) -> Any:
        kind, inner = next(iter(value.items()))
        if kind == "intValue":
            return int(inner)
        if kind == "arrayValue":
            return [plain(item) for item in inner["values"]]
        return inner

    return {attribute["key"]: plain(attribute["value"]) for attribute in span["attributes"]}


def _spans(collector: Collector, count: int) -> list[dict[str, Any]]:
    otel.flush()
    deadline = time.monotonic() + 5
    while len(collector.spans()) < count:
        assert time.monotonic() < deadline, f"{len(collector.spans())} spans, not {count}"
        time.sleep(0.02)
    return collector.spans()


def test_each_call_becomes_a_span_with_the_genai_attributes(db: None, upstream: FakeUpstream,
                                                            collector: Collector) -> None:
    cache.clear()
    make_providers(upstream)
    _, key = make_key(name="traced")
    upstream.usage = {"input_tokens": 120, "output_tokens": 30, "cached_tokens": 20}
    prompt = "A question for the trace that must not be in it"
    answer = call(CHAT, chat_body(messages=[{"role": "user", "content": prompt}], max_tokens=64, temperature=0.5),
                  key=key)
    assert answer.status == 200
    upstream.fail_next("400")
    assert call(CHAT, chat_body("claude/fake-model-a", max_tokens=10), key=key).status == 400
    spans = _spans(collector, 2)
    assert len(spans) == 2
    path, headers, body = collector.posts[0]
    assert path == "/v1/traces" and headers["authorization"] == "Bearer collector-token" and headers["x-team"] == "ops"
    assert body["resourceSpans"][0]["resource"]["attributes"] == [
        {"key": "service.name", "value": {"stringValue": "aspweb"}}]

    record = UsageRecord.objects.get(request_id=answer.headers["x-request-id"])
    ok = next(span for span in spans if _attributes(span)["aspweb.request_id"] == str(record.request_id))
    attributes = _attributes(ok)
    assert ok["name"] == "chat fake-model-a" and ok["kind"] == 3 and "status" not in ok
    assert record.upstream_id.startswith("chatcmpl-")  # the provider's id of the answer, on the span too
    assert len(ok["traceId"]) == 32 and len(ok["spanId"]) == 16
    assert int(ok["endTimeUnixNano"]) - int(ok["startTimeUnixNano"]) == record.latency_ms * 1_000_000
    assert attributes == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai_compatible",
        "gen_ai.request.model": "fake-model-a", "gen_ai.response.model": "fake-model-a",
        "gen_ai.request.max_tokens": 64, "gen_ai.request.temperature": 0.5,
        "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30,
        "gen_ai.response.finish_reasons": ["stop"], "gen_ai.response.id": record.upstream_id,
        "aspweb.provider": "local", "aspweb.source": "gateway", "aspweb.status": "ok",
        "aspweb.request_id": str(record.request_id), "aspweb.ttft_ms": record.ttft_ms,
        "aspweb.cost_usd": pytest.approx(float(record.cost)),
    }
    failed = next(span for span in spans if span is not ok)
    assert failed["status"] == {"code": 2, "message": "invalid_request"}
    failed_attributes = _attributes(failed)
    assert failed_attributes["gen_ai.provider.name"] == "anthropic"
    assert failed_attributes["error.type"] == "invalid_request"
    exported = json.dumps([body for _, _, body in collector.posts])
    assert prompt not in exported and upstream.reply not in exported and key not in exported


def test_without_an_endpoint_nothing_is_queued(db: None, upstream: FakeUpstream, settings: Any) -> None:
    settings.OTEL_TRACES_ENDPOINT = ""
    cache.clear()
    make_providers(upstream)
    _, key = make_key(name="untraced")
    otel.flush()
    assert call(CHAT, chat_body(), key=key).status == 200
    assert not otel._queue


def test_a_collector_that_refuses_loses_the_batch_not_the_call(db: None, upstream: FakeUpstream,
                                                               collector: Collector,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    cache.clear()
    make_providers(upstream)
    _, key = make_key(name="refused")
    collector.status = 503
    assert call(CHAT, chat_body(), key=key).status == 200
    _spans(collector, 1)
    assert "Could not export 1 spans" in caplog.text
