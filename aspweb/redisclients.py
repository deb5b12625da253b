"""Clients of the production profile's Redis (settings.REDIS_URL) for the work that talks to it directly rather
than through Django's cache: budgets' holds and the ledger's journal.

    sync_client()          one per process, for threads (its pool hands each thread its own connection)
    await async_client()   one per event loop, for work on the loop: no thread hop for a round trip

redis-py's own clients and pools; this only keeps one of each where it belongs. A forked process (Celery's
prefork pool) gets new ones: redis-py's pool already refuses a parent's connections, and this drops the
parent's client objects too.
"""

import asyncio
import os
import weakref

import redis
import redis.asyncio
from django.conf import settings

_sync: dict[int, redis.Redis] = {}
_async: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis]" = weakref.WeakKeyDictionary()


def configured() -> bool:
    return bool(settings.REDIS_URL)


def sync_client() -> redis.Redis:
    pid = os.getpid()
    client = _sync.get(pid)
    if client is None:
        _sync.clear()
        client = _sync[pid] = redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
    return client


def async_client() -> redis.asyncio.Redis:
    """This event loop's client (the caller is on a running loop)."""
    loop = asyncio.get_running_loop()
    client = _async.get(loop)
    if client is None:
        client = _async[loop] = redis.asyncio.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
    return client
