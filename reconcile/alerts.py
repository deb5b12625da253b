"""A drift alerts once per provider and day, through the budgets' channels: in-app notifications to
finance and admins, e-mail and a Slack-compatible webhook (budgets.notify sends both)."""

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.urls import reverse

from aspweb.money import money
from aspweb.roles import ADMIN, FINANCE
from budgets import notify
from budgets.models import Notification

from .models import Comparison, DayCheck, ReportingCredential


def title(check: DayCheck) -> str:
    return f"Reconciliation {check.provider.name}: drift on {check.day.isoformat()}"


def describe(check: DayCheck) -> str:
    rows = list(check.comparisons.exclude(status=Comparison.Status.MATCH))
    models = ", ".join(f"{row.model_name} ({row.get_status_display().lower()})" for row in rows[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    provider = money(check.provider_cost) if check.provider_cost is not None else "no cost figure"
    return (f"On {check.day.isoformat()} aspweb recorded {money(check.ledger_cost)} for {check.provider.name}; "
            f"the provider reports {provider}. Differing: {models}{more}.")


def link(check: DayCheck) -> str:
    path = reverse("reconcile_day", args=[check.provider_id, check.day.isoformat()])
    base = settings.SITE_URL.rstrip("/")
    return f"{base}{path}" if base else path


def drift_alert(*, check: DayCheck, credential: ReportingCredential, now: datetime) -> bool:
    """Alert on the day's drift unless it was already alerted: the row flipped first wins. Call inside
    the transaction that stored the verdicts."""
    if not DayCheck.objects.filter(pk=check.pk, alerted_at__isnull=True).update(alerted_at=now):
        return False
    heading, body, url = title(check), describe(check), reverse(
        "reconcile_day", args=[check.provider_id, check.day.isoformat()])
    people = (get_user_model().objects.filter(Q(groups__name__in=[FINANCE, ADMIN]) | Q(is_superuser=True),
                                              is_active=True).distinct())
    Notification.objects.bulk_create([Notification(user=user, title=heading[:200], body=body, url=url)
                                      for user in people])
    from . import tasks  # the tasks module imports the services that call this

    for channel, wanted in (("email", bool(credential.alert_emails)), ("webhook", bool(credential.alert_webhook_url))):
        if wanted:
            transaction.on_commit(lambda channel=channel: tasks.drift_alert_deliver.delay(check.pk, channel),
                                  robust=True)
    return True


def deliver(check_id: int, channel: str) -> None:
    """Send one channel's drift alert; raises notify.DeliveryError."""
    check = DayCheck.objects.select_related("provider").filter(pk=check_id).first()
    credential = ReportingCredential.objects.filter(provider_id=check.provider_id).first() if check else None
    if check is None or credential is None:
        raise notify.DeliveryError("The day or its reporting settings are gone.", retryable=False)
    heading, body, url = title(check), describe(check), link(check)
    if channel == "email":
        if not credential.alert_emails:
            raise notify.DeliveryError("No e-mail recipients any more.", retryable=False)
        notify.email_send(f"[aspweb] {heading}", f"{body}\n\n{url}\n\n-- aspweb reconciliation",
                          list(credential.alert_emails))
    elif channel == "webhook":
        if not credential.alert_webhook_url:
            raise notify.DeliveryError("No webhook URL any more.", retryable=False)
        notify.webhook_post(credential.alert_webhook_url, payload(check, heading, body, url))
    else:
        raise notify.DeliveryError(f"Unknown channel {channel}.", retryable=False)


def _amount(value: Any) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def payload(check: DayCheck, heading: str, body: str, url: str) -> dict[str, Any]:
    """Slack-compatible: `text` for people, the rest for receivers that want the numbers (strings, exact)."""
    text = f"*{notify.slack_escaped(heading)}*\n{notify.slack_escaped(body)}"
    if url.startswith("http"):
        text += f"\n<{url}|Open the day in aspweb>"
    return {
        "text": text, "event": "reconcile.drift", "provider": {"id": check.provider_id, "name": check.provider.name},
        "day": check.day.isoformat(), "ledger_cost": _amount(check.ledger_cost),
        "provider_cost": _amount(check.provider_cost), "currency": "USD",
        "models": [{"model": row.model_name, "status": row.status, "ledger_cost": _amount(row.ledger_cost),
                    "provider_cost": _amount(row.provider_cost)}
                   for row in check.comparisons.exclude(status=Comparison.Status.MATCH)],
        "url": url if url.startswith("http") else None,
    }
