"""With Redis, row caches hear of changes by pub/sub (aspweb/rowcache_bus.py): another process's write counts
here within a moment, a hit makes no Redis command, a lost subscription drops everything and reads through
until it is back, and a forked process listens for itself. (The production profile only.)"""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection, connections

from aspweb import inline, rowcache_bus
from aspweb.rowcache import RowCache
from providers import calls
from providers.models import Model, Price, Provider

pytestmark = pytest.mark.skipif(inline.cache_is_local(), reason="the embedded default follows version files")

ROOT = Path(__file__).parents[1]


def _until(condition: Callable[[], Any], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.01)


def _admin() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


def _listener_connections() -> list[dict[str, Any]]:
    return [c for c in _admin().client_list(_type="pubsub") if c["name"] == f"aspweb-rowcache-{os.getpid()}"]


def test_a_write_made_by_another_process_counts_here_within_a_second(transactional_db: None) -> None:
    provider = Provider.objects.create(name="elsewhere", kind="openai_compatible", base_url="http://127.0.0.1:9/v1",
                                       api_key="sk-elsewhere-0001")
    model = Model.objects.create(provider=provider, name="m")
    Price.objects.create(model=model, input=Decimal("1"), output=Decimal("2"))
    calls._resolve_sync("elsewhere/m")  # cached now
    name = connection.settings_dict["NAME"]
    script = ("import django; django.setup(); from providers.models import Model; "
              f"assert Model.objects.filter(pk={model.pk}).update(enabled=False) == 1")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60, env={
        **os.environ, "DJANGO_SETTINGS_MODULE": "aspweb.settings", "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"postgres://{connection.settings_dict['USER']}@{connection.settings_dict['HOST']}:"
                        f"{connection.settings_dict['PORT']}/{name}"})

    def refused() -> bool:
        try:
            calls._resolve_sync("elsewhere/m")
        except calls.CallError:
            return True
        return False

    _until(refused, 1.0, "the other process's update reached this one")


def test_a_hit_makes_no_redis_command(db: None) -> None:
    cache = RowCache("monitor-test", ttl=60.0)
    assert cache.get("k", lambda: ("read", None)) == "read"
    listener = {c["addr"] for c in _listener_connections()}  # its health checks are not the hits'
    marker = f"aspweb-test-{uuid.uuid4().hex}"
    db_number = int(rowcache_bus.channel().rsplit(":", 1)[1])
    seen = []
    admin = _admin()
    admin.ping()  # connected before: its handshake is not counted
    with redis.Redis.from_url(settings.REDIS_URL).monitor() as monitor:
        for _ in range(100):
            assert cache.get("k", lambda: ("read again", None)) == "read"
        admin.echo(marker)
        for command in monitor.listen():
            if command["db"] == db_number and command.get("client_address", "") + ":" + str(
                    command.get("client_port", "")) not in listener:
                seen.append(command["command"])
            if marker in command["command"]:
                break
    assert seen == [f"ECHO {marker}"]


def test_a_lost_subscription_drops_the_entries_and_reads_through_until_it_is_back(
        db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rowcache_bus, "RETRY_SECONDS", 1.0)
    cache = RowCache("loss-test", ttl=60.0)
    reads: list[int] = []

    def read() -> tuple[str, None]:
        reads.append(1)
        return "value", None

    cache.get("k", read)
    cache.get("k", read)
    assert reads == [1] and cache.entries
    [listening] = _listener_connections()
    _admin().client_kill_filter(_id=listening["id"])
    _until(lambda: rowcache_bus.version("loss-test") is None, 1.0, "the loss was noticed")
    assert not cache.entries
    cache.get("k", read)
    cache.get("k", read)
    assert reads == [1, 1, 1]  # read through, nothing cached
    _until(lambda: rowcache_bus.version("loss-test") is not None, 5.0, "subscribed again")
    cache.get("k", read)
    cache.get("k", read)
    assert reads == [1, 1, 1, 1]


def test_a_forked_process_starts_a_listener_of_its_own() -> None:
    parent = rowcache_bus.bus
    assert parent.trusted
    connections.close_all()  # the child must not share this process's database connections
    pid = os.fork()
    if pid == 0:  # the child: report by exit code only
        code = 1
        try:
            child = rowcache_bus.bus
            ok = child is not parent and child.thread is None and rowcache_bus.version("fork-test") is None
            deadline = time.monotonic() + 5
            while ok and rowcache_bus.version("fork-test") is None and time.monotonic() < deadline:
                time.sleep(0.01)
            code = 0 if ok and rowcache_bus.version("fork-test") is not None and child.sender != parent.sender else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
