"""The service surface (aspweb/ops.py, aspweb/metrics.py, providers/observe.py): /healthz, /readyz and /metrics
in one process, their access rules, and each call's figures and log line.

The figures of one process add up over the whole test run, so each test compares what it scraped before and
after its own calls. /readyz against a stopped database or Redis, and two workers, are in
tests/test_ops_processes.py."""

import json
import logging
import sys
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.db.models import Sum
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from aspweb import logjson, ops
from budgets.models import Budget
from gateway import routing
from gateway.models import Deployment, Route
from providers.models import Model
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import call, chat_body, make_key, make_providers
from usage.models import UsageRecord

CHAT = "/v1/chat/completions"
TOKEN = "metrics-token-for-tests-0001"


@pytest.fixture(autouse=True)
def _scrapable(settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOW = []


def scrape(**headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and sorted labels."""
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# -- health ---------------------------------------------------------------------------------------------------


def test_healthz_answers_without_sign_in_or_database() -> None:
    """No `db` fixture: a query here would fail the test."""
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]
    assert Client().head("/healthz").status_code == 200  # some load balancers ask with HEAD
    assert Client().post("/healthz").status_code == 405


def test_readyz_is_ready_on_a_migrated_database_and_says_nothing_more(db: None) -> None:
    ops._migrated.clear()  # the migrations are read, not remembered from an earlier test
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok", "cache": "ok"}}
    assert b"version" not in response.content.lower() and "Server" not in response


def test_readyz_names_pending_migrations(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    ops._migrated.clear()
    monkeypatch.setattr("django.db.migrations.executor.MigrationExecutor.migration_plan",
                        lambda self, targets: [("a migration", False)])
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "migrations": "pending", "cache": "ok"}


def test_probes_and_metrics_are_not_redirected_to_https(settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    assert Client().get("/healthz").status_code == 200
    assert Client().get("/playground/").status_code == 301  # what the exemption is an exception to


# -- who may scrape -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer"])
def test_metrics_refuse_a_request_without_the_token(db: None, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = Client().get("/metrics", headers=headers)
    assert response.status_code == 403 and response["WWW-Authenticate"] == "Bearer"
    assert b"aspweb_" not in response.content and TOKEN.encode() not in response.content


def test_metrics_are_closed_to_everyone_when_neither_token_nor_allow_list_is_set(db: None, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics", headers={"Authorization": "Bearer "}).status_code == 403
    assert Client().get("/metrics").status_code == 403


def test_metrics_answer_an_allowed_address_without_a_token(db: None, settings: Any) -> None:
    import ipaddress

    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW = [ipaddress.ip_network("10.0.0.0/8")]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::ffff:10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.168.1.1").get("/metrics").status_code == 403


# -- what a call leaves ---------------------------------------------------------------------------------------


@pytest.fixture
def key(db: None, upstream: FakeUpstream) -> str:
    cache.clear()
    make_providers(upstream)
    return make_key(name="ops")[1]


def test_a_call_counts_its_outcome_tokens_time_and_cost_as_the_ledger_records_them(key: str,
                                                                                    upstream: FakeUpstream) -> None:
    labels = {"provider": "local", "model": "fake-model-a", "source": "gateway"}
    before = scrape()
    upstream.usage = {"input_tokens": 1000, "output_tokens": 500, "cached_tokens": 200, "reasoning_tokens": 50}
    assert call(CHAT, chat_body(), key=key).status == 200
    assert call(CHAT, chat_body(stream=True), key=key).status == 200
    upstream.fail_next("401")
    assert call(CHAT, chat_body(), key=key).status == 502  # the upstream refused aspweb's key
    after = scrape()

    def delta(name: str, **more: str) -> float:
        return value(after, name, **labels, **more) - value(before, name, **labels, **more)

    assert delta("aspweb_calls_total", outcome="ok", error_kind="") == 2
    assert delta("aspweb_calls_total", outcome="error", error_kind="auth") == 1
    records = UsageRecord.objects.all()
    totals = records.aggregate(*(Sum(f) for f in ("input_tokens", "cache_read_tokens", "output_tokens",
                                                  "reasoning_tokens", "cost")))
    assert totals["input_tokens__sum"] == 1600  # the ledger's input excludes cache reads
    for kind, field in [("input", "input_tokens"), ("cache_read", "cache_read_tokens"),
                        ("output", "output_tokens"), ("reasoning", "reasoning_tokens")]:
        assert delta("aspweb_call_tokens_total", kind=kind) == totals[f"{field}__sum"], kind
    assert delta("aspweb_call_cost_usd_total") == pytest.approx(float(totals["cost__sum"]))
    assert totals["cost__sum"] > 0
    assert delta("aspweb_call_latency_seconds_count") == 3
    assert delta("aspweb_call_ttft_seconds_count") == 2  # the failed call had no first token
    latencies = sum(r.latency_ms for r in records) / 1000
    assert delta("aspweb_call_latency_seconds_sum") == pytest.approx(latencies, abs=0.003)  # rounded to ms
    # The ledger's writer: three records, in one batch or more, each with its lag from queued to committed.
    assert value(after, "aspweb_ledger_batch_records_count") - value(before, "aspweb_ledger_batch_records_count") >= 1
    assert value(after, "aspweb_ledger_batch_records_sum") - value(before, "aspweb_ledger_batch_records_sum") == 3
    assert value(after, "aspweb_ledger_write_lag_seconds_count") - value(
        before, "aspweb_ledger_write_lag_seconds_count") == 3 == records.count()


def test_budget_refusals_and_unpriced_calls_are_counted(key: str, upstream: FakeUpstream) -> None:
    before = scrape()
    assert call(CHAT, chat_body("local/fake-model-b"), key=key).status == 200  # no price
    Budget.objects.create(name="Tight", amount=Decimal("0.000001"), hard_limit=True)
    assert call(CHAT, chat_body(), key=key).status == 429
    after = scrape()
    priced = {"provider": "local", "model": "fake-model-a", "source": "gateway"}
    unpriced = {**priced, "model": "fake-model-b"}
    assert value(after, "aspweb_budget_refusals_total", **priced) - value(
        before, "aspweb_budget_refusals_total", **priced) == 1
    assert value(after, "aspweb_calls_total", **priced, outcome="error", error_kind="budget_exceeded") - value(
        before, "aspweb_calls_total", **priced, outcome="error", error_kind="budget_exceeded") == 1
    assert value(after, "aspweb_call_unpriced_total", **unpriced) - value(
        before, "aspweb_call_unpriced_total", **unpriced) == 1


def test_error_answers_are_counted_by_status_and_code_refusals_before_any_provider_included(
        key: str, upstream: FakeUpstream) -> None:
    before = scrape()
    assert call(CHAT, chat_body(), key="ask-" + "x" * 40).status == 401  # an unknown key: no call at all
    assert call(CHAT, chat_body(temperature=5), key=key).status == 400
    assert call(CHAT, chat_body("local/nope"), key=key).status == 404
    upstream.fail_next("500")
    assert call(CHAT, chat_body(), key=key).status == 502
    after = scrape()
    counted = {(labels, value(after, "aspweb_gateway_errors_total", **dict(labels))
                - value(before, "aspweb_gateway_errors_total", **dict(labels)))
               for name, labels in after if name == "aspweb_gateway_errors_total"}
    assert {(dict(labels)["status"], n) for labels, n in counted if n} == {
        ("401", 1), ("400", 1), ("404", 1), ("502", 1)}


def test_response_cache_hits_and_misses_are_counted(key: str) -> None:
    labels = {"provider": "local", "model": "fake-model-a", "source": "gateway"}
    before = scrape()
    for _ in range(3):
        assert call(CHAT, chat_body(), key=key, headers={"x-aspweb-cache": "true"}).status == 200
    after = scrape()
    for result, count in [("miss", 1), ("hit", 2)]:
        assert value(after, "aspweb_response_cache_lookups_total", result=result) - value(
            before, "aspweb_response_cache_lookups_total", result=result) == count
    # The hits, by provider, model and source, as the ledger records them; the call metrics count the one call.
    assert UsageRecord.objects.filter(cached=True).count() == 2
    assert value(after, "aspweb_response_cache_hits_total", **labels) - value(
        before, "aspweb_response_cache_hits_total", **labels) == 2
    ok = {**labels, "outcome": "ok", "error_kind": ""}
    assert value(after, "aspweb_calls_total", **ok) - value(before, "aspweb_calls_total", **ok) == 1


def test_circuit_state_is_read_from_the_shared_cache_when_scraped(key: str, settings: Any) -> None:
    route = Route.objects.create(name="chat")
    model = Model.objects.get(provider__name="local", name="fake-model-a")
    Deployment.objects.create(route=route, model=model, priority=1)
    labels = {"provider": "local", "model": "fake-model-a"}
    assert value(scrape(), "aspweb_circuit_state", **labels) == 0
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    routing.record_failure(model.pk)
    assert value(scrape(), "aspweb_circuit_state", **labels) == 2
    routing.record_success(model.pk)
    assert value(scrape(), "aspweb_circuit_state", **labels) == 0
    # Only routed models have a circuit.
    assert ("aspweb_circuit_state", (("model", "fake-model-b"), ("provider", "local"))) not in scrape()


# -- the call's log line --------------------------------------------------------------------------------------


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logjson.JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def json_lines() -> Any:
    """What LOG_FORMAT=json writes for every logger, as lines."""
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    level, root.level = root.level, logging.INFO
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(level)


def test_each_call_logs_one_json_line_without_prompt_answer_or_key(key: str, upstream: FakeUpstream,
                                                                    json_lines: list[str]) -> None:
    upstream.reply = "The answer is forty-two, kept out of logs."
    prompt = "A secret question nobody may log"
    answer = call(CHAT, chat_body(messages=[{"role": "user", "content": prompt}]), key=key)
    assert answer.status == 200
    upstream.fail_next("400")
    assert call(CHAT, chat_body(messages=[{"role": "user", "content": prompt}]), key=key).status == 400
    parsed = [json.loads(line) for line in json_lines]  # every line is one JSON object
    assert all("\n" not in line for line in json_lines)
    mine = [line for line in parsed if line["logger"] == "aspweb.calls"]
    assert len(mine) == 2
    record = UsageRecord.objects.get(request_id=answer.headers["x-request-id"])
    ok = next(line for line in mine if line["request_id"] == str(record.request_id))
    assert ok["key_prefix"] == record.api_key.prefix and ok["user"] is None
    assert (ok["provider"], ok["model"], ok["source"], ok["status"]) == ("local", "fake-model-a", "gateway", "ok")
    assert ok["latency_ms"] == record.latency_ms and Decimal(ok["cost_usd"]) == record.cost
    assert ok["level"] == "INFO" and ok["time"].endswith("+00:00")
    failed = next(line for line in mine if line is not ok)
    assert (failed["status"], failed["error_kind"]) == ("error", "invalid_request")
    # An answer from the response cache called no provider: it has its line, marked, but no call figures.
    headers = {"x-aspweb-cache": "true"}
    call(CHAT, chat_body(messages=[{"role": "user", "content": prompt}]), key=key, headers=headers)
    hit = call(CHAT, chat_body(messages=[{"role": "user", "content": prompt}]), key=key, headers=headers)
    assert hit.headers["x-aspweb-cache"] == "hit"
    line = json.loads(json_lines[-1])
    assert (line["request_id"], line["cached"], Decimal(line["cost_usd"])) == (hit.headers["x-request-id"], True, 0)
    everything = "\n".join(json_lines)
    assert prompt not in everything and upstream.reply not in everything and key not in everything
    assert "sk-upstream-0001" not in everything


def test_json_lines_keep_tracebacks_and_reduce_a_request_to_method_and_path() -> None:
    class Request:
        method, path, GET = "GET", "/calls/", {"token": "never-logged"}

    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Failed %s", ("here",),
                                   exc_info=sys.exc_info())
    record.request, record.status_code = Request(), 500
    line = json.loads(logjson.JsonFormatter().format(record))
    assert (line["message"], line["method"], line["path"], line["status_code"]) == ("Failed here", "GET",
                                                                                     "/calls/", 500)
    assert "ValueError: boom" in line["exception"] and "never-logged" not in json.dumps(line)


def test_the_grafana_dashboard_uses_only_metrics_that_exist(db: None) -> None:
    """docs/grafana-dashboard.json: every series its queries name is one /metrics serves."""
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json").read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    used = {name for panel in panels for target in panel["targets"]
            for name in re.findall(r"\baspweb_[a-z_]+", target["expr"])}
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    families = {family.name: family.type for family in text_string_to_metric_families(response.content.decode())}
    served = set()
    for name, kind in families.items():
        served |= {f"{name}_total"} if kind == "counter" else {name}
        if kind == "histogram":
            served |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    assert len(used) >= 10 and used <= served, used - served
    assert all(panel["targets"] for panel in panels)
