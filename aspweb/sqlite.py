"""SQLite, the embedded default, in write-ahead-log mode: readers never wait for the writer.

The journal mode is a property of the database file, so it is set once per file and process, on the
first connection, rather than by every connection's init_command: under ASGI each request's sync work
runs in a thread of its own with a connection of its own, and switching the mode cost a third of a
millisecond on every one of them.
"""

from typing import Any

from django.db.backends.signals import connection_created

_in_wal_mode: set[str] = set()


def _wal(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict["NAME"])
    if name in _in_wal_mode:
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
    _in_wal_mode.add(name)


def connect() -> None:
    connection_created.connect(_wal, dispatch_uid="aspweb-sqlite-wal")
