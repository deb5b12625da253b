"""The service surface across processes: /readyz in a process whose database or Redis is out of reach, and
/metrics and the JSON logs of a real `uvicorn --workers 2` serving gateway calls against the fake upstream.

Nothing here stops the machine's PostgreSQL or Redis, which other work shares: an unreachable one is a
process pointed at a loopback port where nothing listens. Everything the processes write (data directory,
PROMETHEUS_MULTIPROC_DIR, logs) goes under the test's temporary directory."""

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum

from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import OPENAI_MODEL, chat_body, make_key, make_providers
from usage.models import UsageRecord

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "metrics-token-for-tests-0002"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _database_url() -> str:
    """The test database, for another process."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite:///{Path(db['NAME']).resolve()}"


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """This test run's configuration for another process, its data directory under `tmp_path`."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR", "LOG_FORMAT")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "aspweb.settings", "PYTHONPATH": str(ROOT), "ASPWEB_DATA_DIR": str(tmp_path),
        "SECRET_KEY": settings.SECRET_KEY, "ASPWEB_ENCRYPTION_KEYS": ",".join(settings.ENCRYPTION_KEYS),
        "DATABASE_URL": _database_url(), "ASPWEB_CACHE_PREFIX": settings.CACHE_KEY_PREFIX,
    })
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    env.update(overrides)
    return env


def _readyz(env: dict[str, str]) -> tuple[int, Any]:
    script = ("import django, json; django.setup(); from django.test import Client; "
              "r = Client().get('/readyz'); print(r.status_code); print(r.content.decode())")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**env, "ALLOWED_HOSTS": "testserver"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    status, body = result.stdout.strip().splitlines()[-2:]
    return int(status), json.loads(body)


def test_readyz_answers_503_naming_the_database_when_it_is_unreachable(transactional_db: None,
                                                                       tmp_path: Path) -> None:
    """The database is PostgreSQL on a loopback port where nothing listens (not a stopped server)."""
    port = _closed_port()
    status, body = _readyz(_env(tmp_path, DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/aspweb"))
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "unreachable" and body["checks"]["migrations"] == "unknown"
    assert str(port) not in json.dumps(body) and "postgres" not in json.dumps(body)  # names the part, no more


def test_readyz_answers_503_naming_the_cache_when_redis_is_unreachable(transactional_db: None,
                                                                       tmp_path: Path) -> None:
    """Redis is a loopback port where nothing listens (not a stopped server); the database is this run's."""
    port = _closed_port()
    status, body = _readyz(_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{port}/9"))
    assert status == 503
    assert body["checks"] == {"database": "ok", "migrations": "ok", "cache": "unreachable"}


def test_readyz_answers_503_naming_migrations_on_an_empty_database(transactional_db: None, tmp_path: Path) -> None:
    """An empty SQLite file under the temporary directory: reachable, nothing applied."""
    status, body = _readyz(_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}"))
    assert status == 503
    assert body["checks"]["database"] == "ok" and body["checks"]["migrations"] == "pending"


# -- two workers ----------------------------------------------------------------------------------------------


def _until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(value for (sample, found), value in samples.items()
               if sample == name and all((k, v) in found for k, v in labels.items()))


def _call_pids(log: Path) -> Counter:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return Counter(line["pid"] for line in lines if line["logger"] == "aspweb.calls")


@pytest.fixture
def two_workers(transactional_db: None, upstream: FakeUpstream, tmp_path: Path) -> Any:
    """`uvicorn --workers 2` with PROMETHEUS_MULTIPROC_DIR and JSON logs; yields (base URL, its log file)."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    port = _closed_port()
    log = tmp_path / "server.log"
    env = _env(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(multiproc), LOG_FORMAT="json", ASPWEB_METRICS_TOKEN=TOKEN,
               ALLOWED_HOSTS="127.0.0.1")
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "aspweb.asgi:application", "--workers", "2", "--host", "127.0.0.1",
             "--port", str(port), "--log-config", str(ROOT / "docs" / "uvicorn-logging.json")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, log.read_text()
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        _until(up, 90, "uvicorn serves")
        yield base, log
    finally:
        server.terminate()
        server.wait(30)


def test_metrics_match_the_ledger_across_two_workers(two_workers: tuple[str, Path], upstream: FakeUpstream) -> None:
    base, log = two_workers
    make_providers(upstream)
    _, key = make_key(name="two workers")
    upstream.usage = {"input_tokens": 300, "output_tokens": 70, "cached_tokens": 100, "reasoning_tokens": 20}
    for _ in range(3):
        upstream.fail_next("400")  # three calls fail, whichever they are

    def one(n: int) -> int:
        body = chat_body(OPENAI_MODEL if n % 3 else "claude/fake-model-a", stream=bool(n % 2))
        headers = {"Authorization": f"Bearer {key}"}
        if n < 0:  # asks the response cache for the same answer each time
            body, headers["x-aspweb-cache"] = chat_body("claude/fake-model-a"), "true"
        # A connection per call, so that either worker may take it.
        return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30, headers=headers).status_code

    statuses: list[int] = []
    with ThreadPoolExecutor(8) as pool:
        # Until both workers have served calls (the kernel hands each connection to one of them).
        while len(statuses) < 16 or (len(_call_pids(log)) < 2 and len(statuses) < 400):
            statuses += pool.map(one, range(len(statuses), len(statuses) + 16))
    # Then answers from the response cache, one after the other: a miss fills it (once per worker, whose
    # cache is its own without Redis), the others hit.
    statuses += [one(-1) for _ in range(8)]
    assert Counter(statuses)[200] == len(statuses) - 3
    assert len(_call_pids(log)) == 2, "one worker served every call"
    _until(lambda: UsageRecord.objects.count() == len(statuses), 30, "every record committed")

    # The call metrics count the calls that asked a provider; answers replayed from the response cache are in the
    # ledger too (cached, cost 0), counted apart.
    called = UsageRecord.objects.filter(cached=False)
    ledger = called.aggregate(
        calls=Count("id"), input=Sum("input_tokens"), cache_read=Sum("cache_read_tokens"),
        output=Sum("output_tokens"), reasoning=Sum("reasoning_tokens"), cost=Sum("cost"))
    by_outcome = Counter({(r["provider__name"], r["status"], r["error_kind"]): r["n"]
                          for r in called.values("provider__name", "status", "error_kind").annotate(n=Count("id"))})
    hits = Counter({(r["provider__name"], r["model__name"], r["source"]): r["n"]
                    for r in UsageRecord.objects.filter(cached=True).values("provider__name", "model__name", "source")
                    .annotate(n=Count("id"))})
    assert sum(hits.values()) >= 6
    for _ in range(4):  # whichever worker answers the scrape, it adds up both
        response = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert response.status_code == 200
        samples = _samples(response.text)
        assert _total(samples, "aspweb_calls_total") == ledger["calls"]
        for (provider, status, error_kind), count in by_outcome.items():
            assert _total(samples, "aspweb_calls_total", provider=provider, outcome=status,
                          error_kind=error_kind) == count
        for kind in ("input", "cache_read", "output", "reasoning"):
            assert _total(samples, "aspweb_call_tokens_total", kind=kind) == ledger[kind], kind
        assert _total(samples, "aspweb_call_cost_usd_total") == pytest.approx(float(ledger["cost"]), rel=1e-9)
        assert _total(samples, "aspweb_call_latency_seconds_count") == ledger["calls"]
        assert _total(samples, "aspweb_ledger_write_lag_seconds_count") == ledger["calls"]
        assert _total(samples, "aspweb_response_cache_hits_total") == sum(hits.values())
        for (provider, model, source), count in hits.items():
            assert _total(samples, "aspweb_response_cache_hits_total", provider=provider, model=model,
                          source=source) == count
    assert ledger["cost"] > 0 and by_outcome[("local", "error", "invalid_request")] + by_outcome[
        ("claude", "error", "invalid_request")] == 3

    # The JSON logs: every line of both workers and of uvicorn itself is one JSON object; no prompt, answer or key.
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    calls = [line for line in lines if line["logger"] == "aspweb.calls"]
    assert len(calls) == ledger["calls"] + sum(hits.values())
    assert sum(line["cached"] for line in calls) == sum(hits.values())
    assert {line["request_id"] for line in calls} == {str(r) for r in UsageRecord.objects.values_list(
        "request_id", flat=True)}
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    assert "Say hello" not in text and upstream.reply not in text and key not in text
    assert "sk-upstream-0001" not in text and "sk-ant-upstream-0001" not in text


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("LOG_FORMAT", "xml", "LOG_FORMAT must be plain or json"),
    ("ASPWEB_METRICS_ALLOW", "10.0.0.0/8,not-an-address", "ASPWEB_METRICS_ALLOW must list addresses or networks"),
])
def test_bad_observability_settings_stop_start_up_by_name(name: str, raw: str, message: str, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False, env={**env, "ASPWEB_DATA_DIR": str(tmp_path), name: raw})
    assert result.returncode != 0 and message in result.stderr


def test_the_allow_list_takes_addresses_and_networks(tmp_path: Path) -> None:
    script = ("import django; django.setup(); from django.conf import settings; "
              "print(' '.join(str(n) for n in settings.METRICS_ALLOW))")
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False, env={**env, "ASPWEB_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
                                              "DJANGO_SETTINGS_MODULE": "aspweb.settings",
                                              "ASPWEB_METRICS_ALLOW": " 10.1.2.3/8, ::1 ,192.168.0.7"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["10.0.0.0/8", "::1/128", "192.168.0.7/32"]
