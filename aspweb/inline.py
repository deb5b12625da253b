"""Sync work run on the event loop when it needs nothing but this process's memory.

Under ASGI, sync work (the ORM) goes to a thread and back: a fraction of a millisecond each way, paid
before the first byte of a gateway call or a playground stream. Most of that work reads only rows in the
worker's row caches (aspweb/rowcache.py), whose hits make no network round trip in either profile, so
it runs inline, on the loop, without the hop. When it turns out to need the network, it starts again in a
thread: every way to it refuses to run inline, by code:
- a row cache's miss raises NeedsThread;
- the shared cache on Redis (aspweb/sharedcache.py) raises NeedsThread from every method;
- the database: Django raises SynchronousOnlyOperation on the event loop, and serving processes refuse
  DJANGO_ALLOW_ASYNC_UNSAFE, which would lift that (aspweb/checks.py); where it is set anyway (the browser
  tests' harness), a query run inline still raises NeedsThread (`refuse_queries_inline`).

So a function run with `inline_or_hop` must do nothing that cannot be done twice before its first read
that may miss: reads first, then what it changes.
"""

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import SynchronousOnlyOperation
from django.db.backends.signals import connection_created

T = TypeVar("T")

_inline: ContextVar[bool] = ContextVar("aspweb_inline", default=False)


class NeedsThread(Exception):
    """Raised while running inline by what would need the network (a row cache's miss, the shared cache on
    Redis): the work must start again in a thread."""


def running_inline() -> bool:
    return _inline.get()


def cache_is_local() -> bool:
    """Whether the shared cache is this process's own memory (the embedded default): row caches then follow
    version files, and the shared cache's reads are no network I/O."""
    backend = settings.CACHES["default"]["BACKEND"]
    return backend.endswith(("LocMemCache", "DummyCache"))


@contextlib.contextmanager
def memory_only() -> Iterator[None]:
    """Run the block as inline work: what would need the network raises NeedsThread instead."""
    token = _inline.set(True)
    try:
        yield
    finally:
        _inline.reset(token)


# What ends an inline attempt: the work needs the network (the database, Redis).
NEEDS_THREAD = (NeedsThread, SynchronousOnlyOperation)


async def inline_or_hop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`function(*args, **kwargs)` here when it needs only this process's memory, else in a thread
    (sync_to_async)."""
    try:
        with memory_only():
            return function(*args, **kwargs)
    except NEEDS_THREAD:
        pass
    return await sync_to_async(function)(*args, **kwargs)


def refuse_queries_inline(execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any) -> Any:
    """A database execute wrapper: no query runs inline, whatever DJANGO_ALLOW_ASYNC_UNSAFE says."""
    if _inline.get():
        raise NeedsThread("the database")
    return execute(sql, params, many, context)


def _guard(sender: Any, connection: Any, **kwargs: Any) -> None:
    if refuse_queries_inline not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, refuse_queries_inline)


def connect() -> None:
    connection_created.connect(_guard, dispatch_uid="aspweb-refuse-queries-inline")
