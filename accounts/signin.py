"""Sign-in throttling, with django-axes, and the audit log of sign-ins and sign-outs.

Axes counts failed sign-ins per account (the e-mail typed) and per client address. Once either reaches
AXES_FAILURE_LIMIT within AXES_COOLOFF_TIME, its backend (first in AUTHENTICATION_BACKENDS) refuses that
account or address, the right password included, and every refused try starts the cool-off again: the
lock ends after a cool-off without a try.

Axes keeps its counts with its database handler: the database is the one store every worker shares in
both profiles (the embedded default's cache is each process's own memory, so its cache handler would
count per worker there). A failed sign-in costs a few queries; signing in is rare.

Axes's middleware is left out: all it does is turn a refusal flagged on the request into a bare 429
page, and it would sit on every request, gateway calls and streams included. The sign-in form does it
instead, as a form error saying when to try again (accounts/forms.py).

The client address is REMOTE_ADDR. Behind a reverse proxy, uvicorn sets it from X-Forwarded-For when
the proxy's address is listed in its --forwarded-allow-ips (127.0.0.1 by default); a header sent by
anyone else is ignored, so it cannot be used to dodge the count.
"""

from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_ip_address
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_logged_out, user_login_failed
from django.db.models import Sum
from django.http import HttpRequest
from django.utils import timezone

from .audit import audit_log
from .models import User


def cooloff_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def _locked_accounts() -> Any:
    """Accounts refused now by their own failures (not by their address's), counted as axes counts them."""
    return (AccessAttempt.objects.filter(attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME)
            .order_by().values("username").annotate(failures=Sum("failures_since_start"))
            .filter(failures__gte=settings.AXES_FAILURE_LIMIT))


def locked_emails() -> set[str]:
    return {row["username"] for row in _locked_accounts()}


def lockout_message(email: str) -> str:
    """What a refused person reads. The refused try restarted the cool-off, so it is the whole of it."""
    minutes = cooloff_minutes()
    when = f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    if _locked_accounts().filter(username=email).exists():
        return f"Too many failed sign-ins for this account. {when}"
    return f"Too many failed sign-ins from your network address. {when}"


def is_locked_out(request: HttpRequest | None) -> bool:
    """Whether axes refused, or has just locked, this sign-in (it flags the request)."""
    return bool(getattr(request, "axes_locked_out", False))


def user_unlock(*, actor: Any, user: User) -> None:
    """Forget the account's failed sign-ins, so that it may sign in at once. Failures from its address
    under other e-mails still count against that address (`manage.py axes_reset_ip ADDRESS` forgets them)."""
    AxesProxyHandler.reset_attempts(username=user.email)
    audit_log(actor, "user.unlock", user)


def _address(request: HttpRequest | None) -> str:
    address = get_client_ip_address(request) if request is not None else None
    return address or "unknown address"


def audit_sign_in(request: HttpRequest | None, user: User, **details: str) -> None:
    audit_log(user, "user.signin", user, address=_address(request), **details)


def audit_sign_in_failed(request: HttpRequest | None, email: str, **details: str) -> None:
    address = _address(request)
    audit_log(address, "user.signin_failed", target_type="user", target_label=email, address=address, **details)


def _failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    # Django hands receivers the credentials with the password masked; only the e-mail is kept.
    address = _address(request)
    audit_log(address, "user.signin_failed", target_type="user", target_label=str(credentials.get("username", "")),
              address=address)


def _locked_out(sender: Any, request: HttpRequest, username: str | None, ip_address: str | None,
                **kwargs: Any) -> None:
    # Axes says so again for every try refused meanwhile; the lock begins when the count reaches the limit.
    if getattr(request, "axes_failures_since_start", None) != settings.AXES_FAILURE_LIMIT:
        return
    address = ip_address or "unknown address"
    audit_log(address, "user.lockout", target_type="user", target_label=username or "", address=address,
              minutes=cooloff_minutes())


def _signed_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    # Signing out of a session that had ended already (user None) ends nobody's.
    if user is not None and getattr(user, "is_authenticated", False):
        audit_log(user, "user.signout", user, address=_address(request))


def follow() -> None:
    user_login_failed.connect(_failed, dispatch_uid="accounts.signin.failed")
    user_logged_out.connect(_signed_out, dispatch_uid="accounts.signin.signed_out")
    user_locked_out.connect(_locked_out, dispatch_uid="accounts.signin.locked_out")
