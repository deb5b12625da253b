"""Resolved addresses, kept in the worker between calls.

Resolving "provider/model" or a route costs three to four queries and a key decryption; a busy gateway
resolves the same few addresses all day. So each worker keeps what it resolved, under a catalog version
kept in Django's cache (Redis in production, so every worker sees it): any saved or deleted provider,
model, price, route or deployment replaces the version, and every worker's entries made under the old one
are dropped at their next use. The version is read before resolving, so an entry is never stored under a
version newer than what it read; it is replaced both at once and again when the transaction commits, so a
call resolving between the write and its commit cannot keep the old rows either.

Entries also expire after `TTL_SECONDS`, and when the next scheduled price version comes into force.
"""

import time
import uuid
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import transaction
from django.db.models.signals import post_delete, post_save

VERSION_KEY = "aspweb:catalog-version"
TTL_SECONDS = 60.0

# address -> (catalog version, expires at on time.monotonic(), resolution)
_entries: dict[str, tuple[str, float, Any]] = {}


def version() -> str:
    """The catalog's current version, made when there is none yet (a fresh or cleared cache)."""
    current = cache.get(VERSION_KEY)
    if current is None:
        cache.add(VERSION_KEY, uuid.uuid4().hex, None)
        current = cache.get(VERSION_KEY)
    return current


def cached(address: str, current: str, resolve: Callable[[], tuple[Any, float | None]]) -> Any:
    """The resolution of `address` under version `current`: the worker's entry, or `resolve()`'s, which
    returns the resolution and how many seconds at most it may be kept (None: TTL_SECONDS)."""
    entry = _entries.get(address)
    now = time.monotonic()
    if entry is not None and entry[0] == current and entry[1] > now:
        return entry[2]
    resolution, keep_for = resolve()
    keep_for = TTL_SECONDS if keep_for is None else min(keep_for, TTL_SECONDS)
    _entries[address] = (current, now + keep_for, resolution)
    return resolution


def _new_version() -> None:
    cache.set(VERSION_KEY, uuid.uuid4().hex, None)


def catalog_changed(**kwargs: Any) -> None:
    """A provider, model, price, route or deployment was saved or deleted."""
    _new_version()
    transaction.on_commit(_new_version, using=kwargs.get("using"), robust=True)


def forget(**kwargs: Any) -> None:
    """Drop this worker's entries (settings changed: connections carry timeouts from settings)."""
    _entries.clear()


def connect() -> None:
    from .models import Deployment, Model, Price, Provider, Route

    for model in (Provider, Model, Price, Route, Deployment):
        post_save.connect(catalog_changed, sender=model, dispatch_uid=f"plans-save-{model.__name__}")
        post_delete.connect(catalog_changed, sender=model, dispatch_uid=f"plans-delete-{model.__name__}")
    setting_changed.connect(forget, dispatch_uid="plans-settings")
