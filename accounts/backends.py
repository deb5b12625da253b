"""Signing in: Django's model backend, with signed-in people in a row cache of each worker."""

import copy
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.backends import ModelBackend

from aspweb.roles import user_roles
from aspweb.rowcache import RowCache

# Signed-in people by id, with their roles: a user, a group or anyone's group membership changes them.
users = RowCache("users", ttl=300.0)


class CachedUserBackend(ModelBackend):
    """Every request of someone signed in loads them, and every page their roles: two queries before any
    page, and before a stream's first token. Here a worker caches both (aspweb/rowcache.py) and hands each
    request its own copy, so that what a request changes on its user stays its own. A password change
    saves the user, so sessions signed with the old one still end at once."""

    def get_user(self, user_id: Any) -> Any:
        cached = users.get(user_id, lambda: (self._load(user_id), None))
        return copy.copy(cached) if cached is not None else None

    async def aget_user(self, user_id: Any) -> Any:
        return await sync_to_async(self.get_user)(user_id)

    def _load(self, user_id: Any) -> Any:
        user = super().get_user(user_id)  # None when unknown or inactive
        if user is not None:
            user_roles(user)  # read now, so that every copy carries them
        return user


class KeptUserBackend(CachedUserBackend):
    """The name CachedUserBackend had before row caches were called so. Django keeps a session's backend by
    its dotted path and loads the user only through a backend still in AUTHENTICATION_BACKENDS, so sessions
    signed in before an upgrade carry this name: it loads their user as CachedUserBackend does, and they
    stay signed in. It signs nobody in."""

    def authenticate(self, request: Any, username: Any = None, password: Any = None, **kwargs: Any) -> None:
        return None
