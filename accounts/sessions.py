"""Sessions in the database, kept per worker between requests: the session engine without Redis.

Every signed-in request reads its session before anything else, and with the database alone that is a
query (about half a millisecond on SQLite) before a page or a stream's first token. Sessions change
rarely (signing in and out), so a worker keeps the rows it read (aspweb/kept.py), and any session saved or
deleted, in any process, drops every worker's kept sessions: signing out on one worker ends the session
on all of them at their next request. A kept session still ends when its expiry date passes. Unknown
keys are not kept, so that made-up cookies cannot fill a worker's memory.

With Redis, settings use Django's cached_db engine instead (one Redis read per request).
"""

from typing import Any

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from aspweb.kept import Kept

sessions = Kept("sessions", ttl=300.0, most=10_000)


class SessionStore(DatabaseSessionStore):
    def _get_session_from_db(self) -> Any:
        key = self.session_key
        if key is None:
            return super()._get_session_from_db()
        row = sessions.get(key, sessions.version(), self._read)
        if row is None or row.expire_date <= timezone.now():
            self._session_key = None
            return None
        return row

    def _read(self) -> tuple[Any, float | None]:
        row = super()._get_session_from_db()
        return row, None if row is not None else 0.0


def follow() -> None:
    sessions.follow(Session)
