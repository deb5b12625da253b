"""Gateway keys: made, checked, revoked. Writes that touch keys live here (the services of `ApiKey`).

A key reads `ask-` + 8 lowercase letters or digits + 40 letters or digits, e.g.
`ask-3f9k2m7q` + `Xb3…`. The first 12 characters are its prefix: stored in clear, unique, shown in
lists and logs to name the key. The whole key is stored only as its SHA-256, which is enough for a key
with 238 random bits (a slow password hash protects guessable secrets, not random ones). Checking a key
finds the row by prefix and compares hashes in constant time.

Members may make keys for themselves when an admin allows it: the allowance is Django's own
`gateway.add_apikey` permission on the user, set from the API keys page (or the Django admin).
"""

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from django.contrib.auth.models import Permission
from django.db import transaction
from django.db.models import DecimalField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.audit import audit_log
from aspweb.roles import ADMIN, has_role
from providers.models import Model, Price
from usage.models import DailyApiKeyUsage

from . import rowcaches
from .models import ApiKey, Deployment, Route

KEY_START = "ask-"
PREFIX_LENGTH = len(KEY_START) + 8
SECRET_LENGTH = 40
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
KEY_LENGTH = PREFIX_LENGTH + SECRET_LENGTH
# last_used_at is written at most this often per key: a busy key would otherwise write on every call.
LAST_USED_RESOLUTION = timedelta(minutes=1)
SELF_SERVICE_PERMISSION = "add_apikey"


_KEY_SHAPE = re.compile(rf"{KEY_START}[a-z0-9]{{{PREFIX_LENGTH - len(KEY_START)}}}[A-Za-z0-9]{{{SECRET_LENGTH}}}")


def malformed(raw: str) -> str | None:
    """What is wrong with the shape of `raw` as an aspweb key, in words that name no part of it; None when
    it has the shape of one (which says nothing of whether it is a key of this aspweb)."""
    if not raw.startswith(KEY_START):
        return "This is not an aspweb API key: aspweb keys start with ask-."
    if len(raw) != KEY_LENGTH:
        return (f"Malformed API key: an aspweb key is {KEY_LENGTH} characters long (ask- and "
                f"{KEY_LENGTH - len(KEY_START)} letters and digits), this one is {len(raw)}. "
                "Check that it was copied whole.")
    if not _KEY_SHAPE.fullmatch(raw):
        return (f"Malformed API key: after ask-, an aspweb key holds {PREFIX_LENGTH - len(KEY_START)} lowercase "
                f"letters or digits, then {SECRET_LENGTH} letters or digits, and nothing else.")
    return None


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _new_key() -> str:
    return (KEY_START + "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH - len(KEY_START)))
            + "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH)))


def api_key_create(*, name: str, user: Any, actor: Any, allowed_models: list[str] | None = None,
                   rpm_limit: int | None = None, tpm_limit: int | None = None,
                   expires_at: datetime | None = None, team: Any = None,
                   log_bodies: bool = False) -> tuple[ApiKey, str]:
    """Make a key and return it with its full text, which is never available again. `log_bodies`: its calls'
    prompts and answers are logged (usage/bodies.py)."""
    with transaction.atomic():
        while True:
            raw = _new_key()
            if not ApiKey.objects.filter(prefix=raw[:PREFIX_LENGTH]).exists():
                break
        key = ApiKey.objects.create(
            name=name, user=user, team=team, prefix=raw[:PREFIX_LENGTH], key_hash=_hash(raw),
            allowed_models=sorted(set(allowed_models or [])), rpm_limit=rpm_limit, tpm_limit=tpm_limit,
            expires_at=expires_at, created_by=actor if getattr(actor, "is_authenticated", False) else None,
            log_bodies=log_bodies,
        )
        audit_log(actor, "apikey.create", key, owner=user.email if user else "",
                  **({"team": team.name} if team is not None else {}), models=key.allowed_models,
                  rpm_limit=rpm_limit, tpm_limit=tpm_limit,
                  expires_at=expires_at.isoformat(timespec="seconds") if expires_at else "",
                  **({"log_bodies": True} if log_bodies else {}))
    return key, raw


def api_key_revoke(*, key: ApiKey, actor: Any) -> bool:
    """Revoke a key; False when it already was."""
    with transaction.atomic():
        revoked = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if revoked:
            key.refresh_from_db(fields=["revoked_at"])
            audit_log(actor, "apikey.revoke", key)
    return bool(revoked)


def api_key_log_bodies_set(*, key: ApiKey, on: bool, actor: Any) -> bool:
    """Turn the logging of the key's prompts and answers on or off; False when it already was so."""
    with transaction.atomic():
        if key.log_bodies == on:
            return False
        key.log_bodies = on
        key.save(update_fields=["log_bodies"])
        audit_log(actor, "apikey.log_bodies", key, log_bodies={"from": not on, "to": on})
    return True


class KeyRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def api_key_authenticate(raw: str | None) -> ApiKey:
    """The live key `raw` names, with its user; KeyRefused (a 401 for the gateway) otherwise."""
    if not raw:
        raise KeyRefused("No API key: send it in an Authorization header (Bearer KEY) or an x-api-key header.")
    if problem := malformed(raw):
        raise KeyRefused(problem)
    digest = _hash(raw)
    key = rowcaches.api_keys.get(digest, lambda: (_key_of(raw, digest), None))
    now = timezone.now()
    if key.revoked_at is not None:
        raise KeyRefused(f"API key {key.prefix}… was revoked.")
    if key.expires_at is not None and key.expires_at <= now:
        raise KeyRefused(f"API key {key.prefix}… expired on {key.expires_at:%Y-%m-%d %H:%M} UTC.")
    if key.user is not None and not key.user.is_active:
        raise KeyRefused(f"The owner of API key {key.prefix}… is deactivated.")
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        # Conditional, so that concurrent requests on several workers write it once.
        ApiKey.objects.filter(pk=key.pk).exclude(last_used_at__gt=now - LAST_USED_RESOLUTION).update(
            last_used_at=now)
        key.last_used_at = now
    return key


def _key_of(raw: str, digest: str) -> ApiKey:
    """The key row `raw` names, with its user. Cached by the worker under the key's hash
    (gateway/rowcaches.py), so that a check does not need the database; a wrong key raises, and is not
    cached."""
    key = ApiKey.objects.select_related("user").filter(prefix=raw[:PREFIX_LENGTH]).first()
    # The comparison runs whether or not the prefix matched, so timing tells nothing either way.
    expected = key.key_hash if key is not None else "0" * 64
    if not hmac.compare_digest(expected, digest) or key is None:
        raise KeyRefused("Unknown API key: it has the shape of an aspweb key, but no key of this aspweb matches it. "
                         "Check that it was copied whole, or make a new one.")
    return key


def key_allows(key: ApiKey, address: str) -> bool:
    """Whether the key may ask for `address` (a route name or PROVIDER/MODEL). An empty list allows all;
    `PROVIDER/*` allows every model of that provider."""
    allowed = key.allowed_models
    if not allowed or address in allowed:
        return True
    provider, sep, _ = address.partition("/")
    return bool(sep) and f"{provider}/*" in allowed


def with_spend_since(keys: QuerySet[ApiKey], first_day: date) -> QuerySet[ApiKey]:
    """`keys`, each with `spent` (its calls' cost from `first_day` on, a ledger day) and `unpriced` (its calls
    in that time that nothing priced, which `spent` leaves out): summed by the database from the daily
    rollup per key, in the query that lists the keys."""
    days = DailyApiKeyUsage.objects.filter(api_key=OuterRef("pk"), day__gte=first_day).order_by().values("api_key")
    zero = Value(Decimal(0), output_field=DecimalField(max_digits=22, decimal_places=10))
    return keys.annotate(
        spent=Coalesce(Subquery(days.annotate(total=Sum("cost")).values("total")), zero),
        unpriced=Coalesce(Subquery(days.annotate(total=Sum("unpriced")).values("total")), 0),
    )


def key_status(key: ApiKey, now: datetime | None = None) -> Literal["active", "revoked", "expired"]:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= (now or timezone.now()):
        return "expired"
    return "active"


def addressable() -> tuple[list[Model], list[Route]]:
    """Enabled models of enabled providers, and enabled routes: what a key can be allowed to use."""
    models = list(Model.objects.select_related("provider").filter(
        enabled=True, provider__enabled=True, provider__archived_at__isnull=True))
    routes = list(Route.objects.filter(enabled=True))
    return models, routes


def route_types(routes: list[Route]) -> dict[int, str]:
    """Each route's model type: embedding where every deployment serves an embedding model, else chat."""
    types: dict[int, set[str]] = {route.pk: set() for route in routes}
    for route_id, model_type in Deployment.objects.filter(route__in=routes).values_list("route_id", "model__type"):
        types[route_id].add(model_type)
    return {pk: "embedding" if found == {"embedding"} else "chat" for pk, found in types.items()}


def example_model(key: ApiKey) -> str | None:
    """A model address or route name the key may use, in the gateway's naming (PROVIDER/MODEL, or a route's
    name), for the example shown with a new key: a model with a price in force first (a hard budget refuses
    unpriced ones), then a route, then any model; None when the key may use nothing enabled now."""
    models, routes = addressable()
    models = [model for model in models if model.type == Model.Type.CHAT]  # the example is a chat completion
    priced = set(Price.objects.filter(model__in=models, effective_from__lte=timezone.now())
                 .values_list("model_id", flat=True))
    # A route serves only through a deployment of a model that can answer: one without names no example.
    serving = set(Deployment.objects.filter(route__in=routes, model__in=models).values_list("route_id", flat=True))
    candidates = ([str(model) for model in models if model.pk in priced]
                  + [route.name for route in routes if route.pk in serving]
                  + [str(model) for model in models if model.pk not in priced])
    if key.allowed_models:
        # A model or route the key names outranks one it may use as one of a whole provider's.
        allowed = [name for name in candidates if key_allows(key, name)]
        named = [name for name in allowed if name in key.allowed_models]
        return next(iter(named + allowed), None)
    return next(iter(candidates), None)


# -- self-service ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRights:
    """What a signed-in person may do with keys."""

    manage_all: bool  # see, make (for anyone) and revoke every key
    create_own: bool  # make keys for themselves


def key_rights(user: Any) -> KeyRights:
    if has_role(user, ADMIN):
        return KeyRights(manage_all=True, create_own=True)
    return KeyRights(manage_all=False, create_own=user.has_perm(f"gateway.{SELF_SERVICE_PERMISSION}"))


def self_service_set(*, user: Any, allowed: bool, actor: Any) -> None:
    """Allow or stop a person making their own keys (their existing keys stay as they are)."""
    permission = Permission.objects.get(content_type__app_label="gateway", codename=SELF_SERVICE_PERMISSION)
    with transaction.atomic():
        if allowed:
            user.user_permissions.add(permission)
        else:
            user.user_permissions.remove(permission)
        audit_log(actor, "apikey.self_service", user, allowed=allowed)
    # has_perm caches per user object.
    for cache in ("_perm_cache", "_user_perm_cache"):
        user.__dict__.pop(cache, None)
