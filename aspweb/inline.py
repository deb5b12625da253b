"""Sync work run on the event loop when it needs nothing but what this process keeps.

Under ASGI, sync work (the ORM) goes to a thread and back: a fraction of a millisecond each way, paid
before the first byte of a gateway call or a playground stream. Most of that work reads only rows kept
in the worker (aspweb/kept.py) and Django's cache, and where both live in this process (the embedded
default: file versions, local memory) it runs inline, on the loop, without the hop. When it turns out
to need the database (a kept store misses, a query is made; Django refuses queries on the event loop),
it starts again in a thread.

So a function run with `inline_or_hop` must do nothing that cannot be done twice before its first read
that may miss: reads first, then what it changes. With Redis, where every kept read is a network round
trip, everything goes to a thread as before.
"""

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import SynchronousOnlyOperation

T = TypeVar("T")

_inline: ContextVar[bool] = ContextVar("aspweb_inline", default=False)


class NotKept(Exception):
    """Raised by a kept store's read while running inline: the value must come from the database."""


def running_inline() -> bool:
    return _inline.get()


def cache_is_local() -> bool:
    """Whether Django's cache is this process's own memory (so are kept versions then, or files): reading
    them is no network I/O."""
    backend = settings.CACHES["default"]["BACKEND"]
    return backend.endswith(("LocMemCache", "DummyCache"))


@contextlib.contextmanager
def only_kept() -> Iterator[None]:
    """Run the block as inline work: a kept store's miss raises NotKept instead of reading."""
    token = _inline.set(True)
    try:
        yield
    finally:
        _inline.reset(token)


# What ends an inline attempt: the work needs the database.
NEEDS_THREAD = (NotKept, SynchronousOnlyOperation)


async def inline_or_hop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`function(*args, **kwargs)` here when it needs only what is kept, else in a thread (sync_to_async)."""
    if cache_is_local():
        try:
            with only_kept():
                return function(*args, **kwargs)
        except NEEDS_THREAD:
            pass
    return await sync_to_async(function)(*args, **kwargs)
