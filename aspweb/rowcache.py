"""Row caches: read-mostly rows in each worker's memory, dropped in every process when they change.

A busy gateway or page reads the same few rows on every request: a resolved address, an API key, the
hard budgets, the signed-in user and their roles, their session. A `RowCache` keeps what a worker read
under a *version* of the rows it follows, and a hit is a dict lookup: no query and no network round trip,
so work that hits can run on the event loop (aspweb/inline.py). Saving or deleting a followed row
announces a change, and every process's entries made under the old version stop counting.

How a change reaches the other processes depends on the profile:
- The embedded default (no Redis): a version file per cache under the data folder. Each change appends a
  byte and the version is the file's size, read with one stat(): a size only grows, so a version never
  comes back, however close together changes come (a file's time could).
- With Redis: a push (aspweb/rowcache_bus.py). Each process listens on a Redis channel; a change is
  published there, and the listener of every process moves that cache to a new generation. A process
  trusts its entries only while its subscription is confirmed: until then, and after any loss of it, the
  version is None and every read goes to the database without being cached.

Either way the version is read before the rows, so an entry is never stored under a version newer than
what it read (an entry read while a change arrived does not count); a change is announced at once and
again when the transaction commits, so that a request reading between the write and its commit cannot
keep the old rows either; and the writing process moves its own version at once, without waiting for
its own message. Entries also expire after `ttl` seconds, or sooner when the reader says so (a scheduled
price version coming into force).

Writes that send no model signal (a queryset's update(), bulk_create(), bulk_update(), and delete() of a
many-to-many table's rows) announce a change too: every queryset tells the caches that follow its model
(`_tell_caches`), so such a write cannot forget them, whichever manager or related manager made it. A write
of fields no cache reads (an API key's last use) can be declared `unread`, so that it keeps the entries.
"""

import functools
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Collection, Hashable, Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.signals import m2m_changed, post_delete, post_save

from aspweb import inline, rowcache_bus

logger = logging.getLogger(__name__)


# A version file is started afresh at this size (a million changes).
_START_AFRESH_AT = 1 << 20

# Set when the data folder cannot be written: versions then live in this process alone.
_files_unusable: list[str] = []
# Generations of this process alone (the fallback above): unique, never repeated.
_local_generations: dict[str, int] = {}
_counter = itertools.count(1)


def _by_file() -> bool:
    return inline.cache_is_local()


def _files_failed(exc: OSError) -> None:
    _files_unusable.append(str(exc))
    logger.warning("Row caches: cannot write versions under %s (%s); without Redis, changes made by other "
                   "processes now count only when entries expire.", settings.DATA_DIR, exc)


class RowCache:
    def __init__(self, name: str, ttl: float, most: int | None = None) -> None:
        self.name = name
        self.ttl = ttl
        # At most this many entries: when full, expired ones go, and if none had, all of them.
        self.most = most
        # key -> (version, expires at on time.monotonic(), value)
        self.entries: dict[Any, tuple[Hashable, float, Any]] = {}
        self._path: tuple[str, Path] | None = None  # the data folder, and the version file under it
        rowcache_bus.caches.append(self)

    def version(self) -> Hashable | None:
        """The current version; None while entries cannot be trusted (with Redis: no confirmed
        subscription), when nothing may be cached."""
        if not _by_file():
            return rowcache_bus.version(self.name)
        if not _files_unusable:
            try:
                return self._file_version()
            except OSError as exc:
                _files_failed(exc)
        return _local_generations.get(self.name, 0)

    def _file(self) -> Path:
        data_dir = str(settings.DATA_DIR)
        if self._path is None or self._path[0] != data_dir:
            self._path = (data_dir, Path(data_dir) / "rowcache" / self.name)
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
            # A new file, under a new inode, long after any entry made under the old one has expired.
            temporary = path.with_name(f".{self.name}.{uuid.uuid4().hex}")
            temporary.write_bytes(b"+")
            os.replace(temporary, path)

    def get(self, key: Any, read: Callable[[], tuple[Any, float | None]]) -> Any:
        """The value cached for `key`, or `read()`'s, which returns the value and how many seconds at most it
        may be cached (None: the cache's ttl; 0: not at all). Run inline (aspweb/inline.py), a miss raises
        NeedsThread instead of reading."""
        current = self.version()  # before the rows: a change arriving during the read makes the entry stale
        entry = self.entries.get(key)
        now = time.monotonic()
        if current is not None and entry is not None and entry[0] == current and entry[1] > now:
            return entry[2]
        if inline.running_inline():
            raise inline.NeedsThread(f"row cache {self.name!r}")
        value, keep_for = read()
        keep_for = self.ttl if keep_for is None else min(keep_for, self.ttl)
        if current is None or keep_for <= 0:  # not to be cached, or nothing can be trusted now
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

    def _announce(self) -> None:
        if not _by_file():
            rowcache_bus.announce(self.name)
            return
        if not _files_unusable:
            try:
                self._new_file_version()
                return
            except OSError as exc:
                _files_failed(exc)
        _local_generations[self.name] = next(_counter)

    def changed(self, **kwargs: Any) -> None:
        """A row this cache depends on was saved or deleted (a signal receiver, or called by a queryset's
        write, which sends no signal): announced now, and again when the transaction commits."""
        self._announce()
        transaction.on_commit(self._announce, using=kwargs.get("using"), robust=True)

    def forget(self, **kwargs: Any) -> None:
        """Drop this worker's entries."""
        self.entries.clear()

    def follow(self, *models: Any, unread: Mapping[Any, Collection[str]] | None = None) -> None:
        """Drop every worker's entries when a row of `models` is saved or deleted, or (for a many-to-many
        table, such as User.groups.through) when a relation is added or removed, or when a queryset writes
        rows of them; `unread`: fields of a model this cache does not read, whose updates alone keep it."""
        for model in models:
            _followers.setdefault(model, []).append((self, frozenset((unread or {}).get(model, ()))))
            uid = f"aspweb:rowcache:{self.name}:{model._meta.label}"
            if model._meta.auto_created:
                m2m_changed.connect(self.changed, sender=model, dispatch_uid=f"{uid}:m2m", weak=False)
                continue
            post_save.connect(self.changed, sender=model, dispatch_uid=f"{uid}:save", weak=False)
            post_delete.connect(self.changed, sender=model, dispatch_uid=f"{uid}:delete", weak=False)
        # Connections carry timeouts from settings: tests that change settings start afresh.
        setting_changed.connect(self.forget, dispatch_uid=f"aspweb:rowcache:{self.name}:settings", weak=False)


def listen() -> None:
    """Start hearing of changes now (a serving process, as it starts) rather than at the first read, so that
    its first requests already find a confirmed subscription."""
    if not _by_file():
        rowcache_bus.bus.start()


# Each followed model -> the caches that follow it, each with the fields it does not read.
_followers: dict[Any, list[tuple[RowCache, frozenset[str]]]] = {}


def followers() -> Mapping[Any, list[tuple[RowCache, frozenset[str]]]]:
    """Each followed model and the caches that follow it (for the system check and tests)."""
    return _followers


def _tell_caches(write: Callable[..., Any], wrote: Callable[[Any], bool],
                 fields: Callable[..., Collection[str] | None]) -> Callable[..., Any]:
    """`write` (a QuerySet method), telling the caches that follow the queryset's model once it wrote rows
    (`wrote` of its result), unless every field it wrote (`fields` of its arguments; None: whole rows) is
    one the cache does not read. A model no cache follows costs one dict lookup: the ledger's bulk writes
    stay as fast."""

    @functools.wraps(write)
    def telling(queryset: QuerySet, *args: Any, **kwargs: Any) -> Any:
        result = write(queryset, *args, **kwargs)
        caches = _followers.get(queryset.model)
        if caches and wrote(result):
            written = fields(*args, **kwargs)
            for cache, unread in caches:
                if not (written and unread.issuperset(written)):
                    cache.changed(using=queryset.db)
        return result

    telling.tells_row_caches = True  # type: ignore[attr-defined]
    return telling


def _updated(**values: Any) -> Collection[str]:
    return values.keys()


def _bulk_updated(objs: Any, fields: Collection[str], *args: Any, **kwargs: Any) -> Collection[str]:
    return fields


def _whole_rows(*args: Any, **kwargs: Any) -> None:
    return None


# Once for every queryset: managers, related managers and base managers all build QuerySet subclasses, and
# Django builds the querysets of many-to-many tables and of deletion cascades itself, so a QuerySet
# subclass on followed models alone could not reach them all. The system check `writes_tell_row_caches`
# (aspweb/checks.py) fails when something replaced these methods.
QuerySet.update = _tell_caches(QuerySet.update, bool, _updated)
QuerySet.bulk_update = _tell_caches(QuerySet.bulk_update, bool, _bulk_updated)
QuerySet.bulk_create = _tell_caches(QuerySet.bulk_create, bool, _whole_rows)
QuerySet.delete = _tell_caches(QuerySet.delete, lambda deleted: deleted[0] > 0, _whole_rows)
