"""Writing the audit log, and reading it in plain words. Callers pass names of changed fields and safe values
only; a change of one value may be recorded as {"from": old, "to": new}."""

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import models
from django.utils import timezone

from aspweb.money import money, usd

from .models import AuditEvent


def audit_log(actor: Any, action: str, target: models.Model | None = None, *, target_type: str = "",
              target_label: str = "", **details: Any) -> AuditEvent:
    if target is not None:
        target_type = target_type or target._meta.model_name or ""
        target_label = target_label or str(target)
    is_user = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEvent.objects.create(
        actor=actor if is_user else None,
        actor_label=actor.email if is_user else (str(actor) if actor else "system"),
        action=action,
        target_type=target_type,
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target_label=target_label[:254],
        details=details,
    )


# -- reading it ----------------------------------------------------------------------------------------

# What each action did, for people; an action not listed reads as its code.
ACTIONS = {
    "apikey.create": "API key made", "apikey.revoke": "API key revoked",
    "apikey.self_service": "own API keys allowed or stopped",
    "apikey.log_bodies": "API key's prompt logging changed",
    "budget.create": "budget added", "budget.update": "budget changed", "budget.delete": "budget deleted",
    "budget.test_alert": "test alert sent",
    "callbody.view": "prompt and answer read", "callbody.export": "prompts and answers exported",
    "model.create": "model added", "model.update": "model changed", "price.create": "price set",
    "provider.create": "provider added", "provider.update": "provider changed", "provider.enable": "provider enabled",
    "provider.disable": "provider disabled", "provider.archive": "provider archived",
    "provider.delete": "provider deleted", "provider.test": "connection tested",
    "provider.sync_models": "models synced",
    "route.create": "route added", "route.update": "route changed", "route.delete": "route deleted",
    "route.deployment_add": "deployment added", "route.deployment_remove": "deployment removed",
    "route.circuit_reset": "circuit reset",
    "usage.reprice": "calls re-priced",
    "reconcile.credential_created": "reporting key added",
    "reconcile.credential_changed": "reconciliation settings changed",
    "reconcile.credential_deleted": "reporting key deleted",
    "user.create": "user added", "user.update": "user changed", "user.roles": "roles changed",
    "user.password_reset": "password reset", "user.unlock": "sign-in unlocked",
    "user.signin": "signed in", "user.signin_failed": "sign-in failed", "user.lockout": "sign-ins locked",
    "user.signout": "signed out", "user.teams": "teams changed",
    "team.create": "team added", "team.update": "team changed", "team.members": "team members changed",
    "team.delete": "team deleted", "team.log_bodies": "team's prompt logging changed",
}

# Kinds of object, as people say them; a kind not listed reads as its code.
TARGETS = {"apikey": "API key", "deployment": "deployment", "notification": "notification"}

# Detail names as people say them.
LABELS = {
    "rpm_limit": "RPM limit", "tpm_limit": "TPM limit", "expires_at": "expires", "effective_from": "effective from",
    "cache_read": "cache read", "cache_write": "cache write", "cache_write_1h": "cache write (1 hour)",
    "hard_limit": "hard limit", "old_total": "cost before", "new_total": "cost after", "delta": "difference",
    "records": "calls", "changed": "changed", "fields": "changed", "ok": "connection works", "is_active": "active",
    "added": "added", "removed": "removed", "minutes": "minutes", "api_key": "API key", "base_url": "base URL",
    "method": "how", "reason": "why", "source": "from",
    "timeout_seconds": "timeout (seconds)", "cache_ttl_seconds": "cache time (seconds)",
    "log_bodies": "logs prompts and answers", "key_changed": "reporting key replaced",
}
# What an empty value means, where it means more than "none".
EMPTY = {"models": "any", "expires_at": "never", "owner": "an application", "until": "no end"}
# Prices per 1M tokens, written exactly; amounts of money, to read.
PRICES = {"input", "output", "cache_read", "cache_write", "cache_write_1h"}
AMOUNTS = {"amount", "old_total", "new_total", "delta"}
# Lists of field names.
FIELD_LISTS = {"fields", "changed"}
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def action_words(action: str) -> str:
    return ACTIONS.get(action, action)


def target_words(target_type: str) -> str:
    return TARGETS.get(target_type, target_type)


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def value_words(name: str, value: Any) -> str:
    """One recorded value in plain words: no Python reprs, no ISO timestamps."""
    if isinstance(value, dict) and set(value) == {"from", "to"}:
        return f"{value_words(name, value['from'])} → {value_words(name, value['to'])}"
    if value is None or value == "" or value == []:
        return EMPTY.get(name, "none")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name in FIELD_LISTS and isinstance(value, list):
        return ", ".join(label(str(item)) for item in value)
    if isinstance(value, list):
        return ("; " if any(isinstance(item, dict) for item in value) else ", ").join(
            value_words(name, item) for item in value)
    if isinstance(value, dict):
        if name == "tiers" and "above" in value:
            rest = ", ".join(f"{label(k)} {value_words(k, v)}" for k, v in value.items() if k != "above")
            return f"above {value_words('tokens', value['above'])} tokens: {rest}"
        return ", ".join(f"{label(k)} {value_words(k, v)}" for k, v in value.items())
    if name in PRICES | AMOUNTS and (amount := _decimal(value)) is not None:
        return f"{usd(amount, 12)} per 1M tokens" if name in PRICES else money(amount)
    if isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit()):
        return f"{int(value):,}"
    if isinstance(value, str) and _TIMESTAMP.match(value):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if timezone.is_aware(moment):
            moment = timezone.localtime(moment)
        return moment.strftime("%Y-%m-%d %H:%M")
    return str(value)


def describe(event: AuditEvent) -> list[tuple[str, str]]:
    """An event's details as (label, words) pairs, in the order they were recorded."""
    return [(label(name), value_words(name, value)) for name, value in (event.details or {}).items()]
