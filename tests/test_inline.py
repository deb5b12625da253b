"""Sync work on the event loop when everything it reads is kept (aspweb/inline.py): no thread hop before
a gateway call or a playground stream once the worker keeps what they read; a hop as soon as something
must come from the database; always a hop with a shared cache (Redis)."""

import pytest
from asgiref.sync import async_to_sync

from aspweb import inline
from aspweb.kept import Kept
from providers.models import Provider
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import OPENAI_MODEL, call, chat_body, make_key, make_providers

pytestmark = pytest.mark.django_db

store = Kept("inline-test", ttl=60.0)


def _kept_value() -> str:
    return store.get("k", store.version(), lambda: ("read", None))


def _query() -> int:
    return Provider.objects.count()


def run(function: object) -> object:
    async def go() -> object:
        return await inline.inline_or_hop(function)

    return async_to_sync(go)()


def test_kept_reads_run_on_the_event_loop_and_misses_in_a_thread(local_cache: None, hops: list[str]) -> None:
    store.forget()
    assert run(_kept_value) == "read"  # a miss: read in a thread
    assert hops == [f"{__name__}._kept_value"]
    assert run(_kept_value) == "read"  # kept: inline
    assert hops == [f"{__name__}._kept_value"]


def test_a_query_goes_to_a_thread(local_cache: None, hops: list[str]) -> None:
    assert run(_query) == 0
    assert hops == [f"{__name__}._query"]


def _nothing() -> str:
    return "done"


def test_with_a_shared_cache_everything_goes_to_a_thread(local_cache: None, hops: list[str], settings: object) -> None:
    assert run(_nothing) == "done" and hops == []
    # Every kept version would be a trip to Redis (nothing here connects to it).
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:6379/15"}}
    assert not inline.cache_is_local()
    assert run(_nothing) == "done" and hops == [f"{__name__}._nothing"]


def test_a_gateway_call_is_admitted_without_a_thread_hop_once_kept(local_cache: None, hops: list[str],
                                                                   upstream: FakeUpstream) -> None:
    make_providers(upstream)
    _, key = make_key()
    assert call("/v1/chat/completions", chat_body(), key=key).status == 200
    first = list(hops)
    hops.clear()
    assert call("/v1/chat/completions", chat_body(), key=key).status == 200
    assert any(hop.endswith(("_admit_sync", ".prepare")) for hop in first), first
    assert not [hop for hop in hops if hop.endswith(("_admit_sync", ".prepare"))], hops
    assert call("/v1/chat/completions", chat_body(model="local/unknown"), key=key).status == 404


def test_admission_reads_change_nothing_before_its_first_miss(upstream: FakeUpstream) -> None:
    """The rate-limit count happens once per request though admission may start again in a thread."""
    from django.core.cache import cache

    from providers import kept

    make_providers(upstream)
    _, key = make_key(rpm_limit=2)
    cache.clear()
    assert call("/v1/chat/completions", chat_body(), key=key).status == 200  # cold: misses, starts again
    kept.resolutions.changed()  # the key is still kept, the resolution is not: only preparing goes to a thread
    assert call("/v1/chat/completions", chat_body(model=OPENAI_MODEL), key=key).status == 200
    third = call("/v1/chat/completions", chat_body(), key=key)
    assert third.status == 429 and "2 requests a minute" in third.json["error"]["message"]
