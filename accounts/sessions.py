"""Sessions in the database, in a row cache of each worker between requests: the session engine of both
profiles.

Every signed-in request reads its session before anything else: with the database alone a query (about
half a millisecond on SQLite), with Django's cached_db engine a Redis round trip. Sessions change rarely
(signing in and out), so a worker caches the rows it read (aspweb/rowcache.py), and any session saved or
deleted, in any process, drops every worker's cached sessions: signing out on one worker ends the session
on all of them at their next request. A cached session still ends when its expiry date passes. Unknown
keys are not cached, so that made-up cookies cannot fill a worker's memory.
"""

from typing import Any

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from aspweb.rowcache import RowCache

sessions = RowCache("sessions", ttl=300.0, most=10_000)


class SessionStore(DatabaseSessionStore):
    def _get_session_from_db(self) -> Any:
        key = self.session_key
        if key is None:
            return super()._get_session_from_db()
        row = sessions.get(key, self._read)
        if row is None or row.expire_date <= timezone.now():
            self._session_key = None
            return None
        return row

    def _read(self) -> tuple[Any, float | None]:
        row = super()._get_session_from_db()
        return row, None if row is not None else 0.0


def follow() -> None:
    sessions.follow(Session)
