"""Read-mostly rows kept in each worker between requests, dropped everywhere when they change.

A busy gateway or page reads the same few rows on every request: a resolved address, an API key, the
hard budgets, the signed-in user and their roles. A `Kept` store keeps what a worker read under a
version kept in Django's cache (Redis in production, so every worker sees it): saving or deleting any
row the store follows replaces the version, and every worker's entries made under the old one are
dropped at their next use.

Where Django's cache is each process's own memory (the embedded default, without Redis), the version is
a file under the data folder instead, so that a change made by another process on the machine (a
management command revoking a key, importing a config) counts in the server at once. Each change appends
a byte to the file and the version is its size, read with one stat(): a size only grows, so a version
never comes back, however close together changes come (a file's time could: many file systems stamp
times at a clock tick of milliseconds, and a replaced file's inode is soon used again).

The version is read before the rows, so an entry is never stored under a version newer than what it
read; it is replaced both at once and again when the transaction commits, so that a request reading
between the write and its commit cannot keep the old rows either. Entries also expire after `ttl`
seconds, or sooner when the reader says so (a scheduled price version coming into force).

Writes that send no model signal (a queryset's update(), bulk_create(), bulk_update(), and delete() of a
many-to-many table's rows) replace the version too: every queryset tells the stores that follow its model
(`_tell_stores`), so such a write cannot forget them, whichever manager or related manager made it. A write
of fields no store reads (an API key's last use) can be declared `unread`, so that it keeps the entries.
"""

import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.signals import m2m_changed, post_delete, post_save

from aspweb import inline

logger = logging.getLogger(__name__)


# A version file is started afresh at this size (a million changes).
_START_AFRESH_AT = 1 << 20

# Set when the data folder cannot be written: versions then live in this process's cache alone.
_files_unusable: list[str] = []


def _by_file() -> bool:
    return not _files_unusable and inline.cache_is_local()


def _files_failed(exc: OSError) -> None:
    _files_unusable.append(str(exc))
    logger.warning("Kept rows: cannot write versions under %s (%s); without Redis, changes made by other "
                   "processes now count only when kept rows expire.", settings.DATA_DIR, exc)


class Kept:
    def __init__(self, name: str, ttl: float, most: int | None = None) -> None:
        self.name = name
        self.version_key = f"aspweb:kept:{name}"
        self.ttl = ttl
        # At most this many entries: when full, expired ones go, and if none had, all of them.
        self.most = most
        # key -> (version, expires at on time.monotonic(), value)
        self.entries: dict[Any, tuple[str, float, Any]] = {}
        self._path: tuple[str, Path] | None = None  # the data folder, and the version file under it

    def version(self) -> str:
        """The current version, made when there is none yet (a fresh or cleared cache)."""
        if _by_file():
            try:
                return self._file_version()
            except OSError as exc:
                _files_failed(exc)
        current = cache.get(self.version_key)
        if current is None:
            cache.add(self.version_key, uuid.uuid4().hex, None)
            current = cache.get(self.version_key)
        return current

    def _file(self) -> Path:
        data_dir = str(settings.DATA_DIR)
        if self._path is None or self._path[0] != data_dir:
            self._path = (data_dir, Path(data_dir) / "kept" / self.name)
        return self._path[1]

    def _file_version(self) -> str:
        try:
            stat = os.stat(self._file())
        except FileNotFoundError:
            self._new_file_version()
            stat = os.stat(self._file())
        return f"{stat.st_ino}:{stat.st_size}"

    def _new_file_version(self) -> None:
        path = self._file()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as file:  # appending: every process's byte lands, and the size only grows
            file.write(b"+")
            size = file.tell()
        if size >= _START_AFRESH_AT:
            # A new file, under a new inode, long after any entry kept under the old one has expired.
            temporary = path.with_name(f".{self.name}.{uuid.uuid4().hex}")
            temporary.write_bytes(b"+")
            os.replace(temporary, path)

    def get(self, key: Any, current: str, read: Callable[[], tuple[Any, float | None]]) -> Any:
        """The value kept for `key` under version `current`, or `read()`'s, which returns the value and
        how many seconds at most it may be kept (None: the store's ttl; 0: not at all)."""
        entry = self.entries.get(key)
        now = time.monotonic()
        if entry is not None and entry[0] == current and entry[1] > now:
            return entry[2]
        if inline.running_inline():
            raise inline.NotKept(self.name)
        value, keep_for = read()
        keep_for = self.ttl if keep_for is None else min(keep_for, self.ttl)
        if keep_for <= 0:  # not to be kept
            self.entries.pop(key, None)
            return value
        if self.most is not None and len(self.entries) >= self.most:
            self._make_room(now)
        self.entries[key] = (current, now + keep_for, value)
        return value

    def _make_room(self, now: float) -> None:
        for key, entry in list(self.entries.items()):
            if entry[1] <= now:
                self.entries.pop(key, None)
        if len(self.entries) >= self.most:
            self.entries.clear()

    def _new_version(self) -> None:
        if _by_file():
            try:
                self._new_file_version()
                return
            except OSError as exc:
                _files_failed(exc)
        cache.set(self.version_key, uuid.uuid4().hex, None)

    def changed(self, **kwargs: Any) -> None:
        """A row this store depends on was saved or deleted (a signal receiver, or called directly after
        a queryset update, which sends no signal)."""
        self._new_version()
        transaction.on_commit(self._new_version, using=kwargs.get("using"), robust=True)

    def forget(self, **kwargs: Any) -> None:
        """Drop this worker's entries."""
        self.entries.clear()

    def follow(self, *models: Any, unread: Mapping[Any, Collection[str]] | None = None) -> None:
        """Drop every worker's entries when a row of `models` is saved or deleted, or (for a many-to-many
        table, such as User.groups.through) when a relation is added or removed, or when a queryset writes
        rows of them; `unread`: fields of a model this store does not read, whose updates alone keep it."""
        for model in models:
            _followers.setdefault(model, []).append((self, frozenset((unread or {}).get(model, ()))))
            uid = f"{self.version_key}:{model._meta.label}"
            if model._meta.auto_created:
                m2m_changed.connect(self.changed, sender=model, dispatch_uid=f"{uid}:m2m", weak=False)
                continue
            post_save.connect(self.changed, sender=model, dispatch_uid=f"{uid}:save", weak=False)
            post_delete.connect(self.changed, sender=model, dispatch_uid=f"{uid}:delete", weak=False)
        # Connections carry timeouts from settings: tests that change settings start afresh.
        setting_changed.connect(self.forget, dispatch_uid=f"{self.version_key}:settings", weak=False)


# Each followed model -> the stores that follow it, each with the fields it does not read.
_followers: dict[Any, list[tuple[Kept, frozenset[str]]]] = {}


def _tell_stores(write: Callable[..., Any], wrote: Callable[[Any], bool],
                 fields: Callable[..., Collection[str] | None]) -> Callable[..., Any]:
    """`write` (a QuerySet method), telling the stores that follow the queryset's model once it wrote rows
    (`wrote` of its result), unless every field it wrote (`fields` of its arguments; None: whole rows) is
    one the store does not read. A model no store follows costs one dict lookup: the ledger's bulk writes
    stay as fast."""

    @functools.wraps(write)
    def telling(queryset: QuerySet, *args: Any, **kwargs: Any) -> Any:
        result = write(queryset, *args, **kwargs)
        stores = _followers.get(queryset.model)
        if stores and wrote(result):
            written = fields(*args, **kwargs)
            for store, unread in stores:
                if not (written and unread.issuperset(written)):
                    store.changed(using=queryset.db)
        return result

    return telling


def _updated(**values: Any) -> Collection[str]:
    return values.keys()


def _bulk_updated(objs: Any, fields: Collection[str], *args: Any, **kwargs: Any) -> Collection[str]:
    return fields


def _whole_rows(*args: Any, **kwargs: Any) -> None:
    return None


# Once for every queryset: managers, related managers and base managers all build QuerySet subclasses.
QuerySet.update = _tell_stores(QuerySet.update, bool, _updated)
QuerySet.bulk_update = _tell_stores(QuerySet.bulk_update, bool, _bulk_updated)
QuerySet.bulk_create = _tell_stores(QuerySet.bulk_create, bool, _whole_rows)
QuerySet.delete = _tell_stores(QuerySet.delete, lambda deleted: deleted[0] > 0, _whole_rows)
