"""Sync work on the event loop when everything it reads is in this process's memory (aspweb/inline.py): no
thread hop before a gateway call or a playground stream once the worker's row caches hold what they read, in
both profiles; a hop as soon as something must come from the database or from Redis."""

import pytest
from asgiref.sync import async_to_sync

from aspweb import inline
from aspweb.rowcache import RowCache
from aspweb.sharedcache import SharedRedisCache
from providers.models import Provider
from tests.conftest import Clock
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import OPENAI_MODEL, call, chat_body, make_key, make_providers

pytestmark = pytest.mark.django_db

store = RowCache("inline-test", ttl=60.0)


def _cached_value() -> str:
    return store.get("k", lambda: ("read", None))


def _query() -> int:
    return Provider.objects.count()


def run(function: object) -> object:
    async def go() -> object:
        return await inline.inline_or_hop(function)

    return async_to_sync(go)()


def test_row_cache_hits_run_on_the_event_loop_and_misses_in_a_thread(hops: list[str]) -> None:
    store.forget()
    assert run(_cached_value) == "read"  # a miss: read in a thread
    assert hops == [f"{__name__}._cached_value"]
    assert run(_cached_value) == "read"  # a hit: inline, in both profiles
    assert hops == [f"{__name__}._cached_value"]


def test_a_query_goes_to_a_thread(hops: list[str]) -> None:
    assert run(_query) == 0
    assert hops == [f"{__name__}._query"]


def _nothing() -> str:
    return "done"


# Nothing listens there: a call that reached Redis would fail rather than answer.
shared = SharedRedisCache("redis://127.0.0.1:1/0", {})


def _shared_cache_read() -> object:
    return shared.get("anything")


def test_work_without_network_stays_inline(hops: list[str]) -> None:
    assert run(_nothing) == "done" and hops == []


@pytest.mark.parametrize("method", ["get", "set", "add", "incr", "delete", "get_many", "set_many", "has_key",
                                    "touch", "delete_many", "get_or_set", "decr", "clear"])
def test_the_shared_cache_on_redis_refuses_to_run_inline(method: str) -> None:
    arguments = {"get_many": (["k"],), "set_many": ({"k": 1},), "delete_many": (["k"],), "clear": (),
                 "set": ("k", 1), "add": ("k", 1), "get_or_set": ("k", 1)}.get(method, ("k",))
    with inline.memory_only(), pytest.raises(inline.NeedsThread, match="shared cache"):
        getattr(shared, method)(*arguments)


def test_a_shared_cache_call_sends_the_work_to_a_thread(hops: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared, "get", lambda key: "from a thread" if not inline.running_inline()
                        else SharedRedisCache.get(shared, key))
    assert run(_shared_cache_read) == "from a thread"
    assert hops == [f"{__name__}._shared_cache_read"]


def test_a_query_run_inline_is_refused_even_where_django_would_allow_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The browser tests' harness sets DJANGO_ALLOW_ASYNC_UNSAFE; inline work still goes to a thread."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    _query()  # the connection is open
    with inline.memory_only(), pytest.raises(inline.NeedsThread, match="database"):
        _query()


def test_a_gateway_call_is_admitted_without_a_thread_hop_once_cached(hops: list[str],
                                                                     upstream: FakeUpstream) -> None:
    """In both profiles: a key without rate limits, a call without the response cache."""
    make_providers(upstream)
    _, key = make_key()
    assert call("/v1/chat/completions", chat_body(), key=key).status == 200
    first = list(hops)
    hops.clear()
    assert call("/v1/chat/completions", chat_body(), key=key).status == 200
    assert any(hop.endswith(("_admit_sync", ".prepare")) for hop in first), first
    assert not [hop for hop in hops if hop.endswith(("_admit_sync", ".prepare"))], hops
    assert call("/v1/chat/completions", chat_body(model="local/unknown"), key=key).status == 404


def test_admission_reads_change_nothing_before_its_first_miss(upstream: FakeUpstream, minute: Clock) -> None:
    """The rate-limit count happens once per request though admission may start again in a thread."""
    from providers import rowcaches

    make_providers(upstream)
    _, key = make_key(rpm_limit=2)
    assert call("/v1/chat/completions", chat_body(), key=key).status == 200  # cold: misses, starts again
    rowcaches.resolutions.changed()  # the key is still cached, the resolution not: only preparing goes to a thread
    assert call("/v1/chat/completions", chat_body(model=OPENAI_MODEL), key=key).status == 200
    third = call("/v1/chat/completions", chat_body(), key=key)
    assert third.status == 429 and "2 requests a minute" in third.json["error"]["message"]
