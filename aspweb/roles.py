"""The three roles (Django groups) and the decorator that checks them.

Superusers count as admins. Views name every role they admit; there is no implied hierarchy, so the
role matrix test reads the same as the decorators.
"""

import functools
from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from aspweb.inline import inline_or_hop

ADMIN = "Admin"
FINANCE = "Finance"
MEMBER = "Member"
ROLES = (ADMIN, FINANCE, MEMBER)


def user_roles(user: Any) -> frozenset[str]:
    if not user or not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, "_aspweb_roles", None)
    if cached is None:
        names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if user.is_superuser:
            names.add(ADMIN)
        cached = user._aspweb_roles = frozenset(names)
    return cached


def has_role(user: Any, *roles: str) -> bool:
    return bool(user_roles(user) & set(roles))


# The people of each role, as a sentence names them.
PEOPLE = {ADMIN: "admins", FINANCE: "finance", MEMBER: "members"}


def people(roles: tuple[str, ...]) -> str:
    """The people of `roles` as a sentence lists them: "admins", "members, admins or finance"."""
    names = [PEOPLE[role] for role in roles]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _check(request: HttpRequest, roles: tuple[str, ...]) -> None:
    if not has_role(request.user, *roles):
        raise PermissionDenied(f"This page is for {people(roles)}.")


def _signed_in(request: HttpRequest, roles: tuple[str, ...]) -> bool:
    """Whether someone is signed in (PermissionDenied when they lack `roles`). Loads `request.user`, so
    that an async view reads it afterwards without going back to the database."""
    if not request.user.is_authenticated:
        return False
    _check(request, roles)
    return True


def role_required(*roles: str, fetch: Callable[..., Any] | None = None) -> Callable:
    """Sign-in first (redirect), then one of `roles` (403 otherwise). Works on sync and async views; an
    async view finds `request.user` loaded: the session, the user and their roles, read on the event loop
    when in row caches (aspweb/inline.py), else in one thread hop.

    `fetch` (async views only): `fetch(request, *args, **kwargs)`, sync, runs right after the check passed,
    the same way (inline, or in that same hop), and what it returns comes to the view as its second
    argument: what the view needs from the database before it answers (a get_object_or_404 there still
    answers 404). Like everything run inline, it must read before it changes anything."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"Unknown roles: {sorted(unknown)}")

    def decorator(view: Callable) -> Callable:
        if iscoroutinefunction(view):

            def admit(request: HttpRequest, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
                if not _signed_in(request, roles):
                    return False, None
                return True, fetch(request, *args, **kwargs) if fetch is not None else None

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                signed_in, fetched = await inline_or_hop(admit, request, *args, **kwargs)
                if not signed_in:
                    return redirect_to_login(request.get_full_path())
                if fetch is not None:
                    return await view(request, fetched, *args, **kwargs)
                return await view(request, *args, **kwargs)

            return async_wrapper
        if fetch is not None:
            raise TypeError("role_required(fetch=...) is for async views")

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not _signed_in(request, roles):
                return redirect_to_login(request.get_full_path())
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


class _Roles:
    """Template-facing view of the current user's roles (`roles.admin`, `roles.finance`, ...)."""

    def __init__(self, user: Any) -> None:
        self._user = user

    @functools.cached_property
    def names(self) -> frozenset[str]:
        return user_roles(self._user)

    @property
    def admin(self) -> bool:
        return ADMIN in self.names

    @property
    def finance(self) -> bool:
        return FINANCE in self.names

    @property
    def member(self) -> bool:
        return MEMBER in self.names


def roles_context(request: HttpRequest) -> dict[str, Any]:
    return {"roles": _Roles(getattr(request, "user", None))}
