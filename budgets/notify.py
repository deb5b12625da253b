"""Alert channels: the words of an alert, and sending it by e-mail or to a Slack-compatible webhook.

`email_send` and `webhook_post` are the channels themselves, shared with reconciliation's drift alerts.

In-app notifications are rows written with the alert (budgets.services); the channels here talk to the
outside world, so they run in the alert_deliver task, which retries what DeliveryError says is worth it.
"""

import smtplib
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from aspweb import outbound
from aspweb.money import money

from .models import AlertEvent, Delivery


class DeliveryError(Exception):
    """A channel could not deliver. `retryable`: the next try may work (network, timeout, 5xx, 429)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


# -- words ------------------------------------------------------------------------------------------


def title(event: AlertEvent) -> str:
    name = event.budget.name
    if event.kind == AlertEvent.Kind.THRESHOLD:
        return f"Budget {name}: {event.threshold}% reached"
    if event.kind == AlertEvent.Kind.FORECAST:
        return f"Budget {name}: on course to go over"
    return f"Budget {name}: test alert"


def describe(event: AlertEvent, *, requested_by: str = "") -> str:
    """One plain sentence or two, the same on every channel."""
    budget, span = event.budget, event.period.span
    spent, amount = event.spent, event.amount
    what = f"Budget “{budget.name}” ({budget.target_label})"
    if event.kind == AlertEvent.Kind.THRESHOLD:
        text = (f"{what} reached {event.threshold}% of its {money(amount)} for {span.label()}: "
                f"{money(spent)} spent, {money(max(amount - spent, Decimal(0)))} left.")
        if budget.hard_limit and event.threshold >= 100:
            text += " Calls that could go past it are refused."
        return text
    if event.kind == AlertEvent.Kind.FORECAST:
        return (f"{what} is on course to spend {money(event.projected)} {span.during()}, above its "
                f"{money(amount)}: {money(spent)} spent so far.")
    by = f", sent by {requested_by}" if requested_by else ""
    return (f"Test alert for {what}{by}: {money(spent)} of {money(amount)} spent {span.during()}. "
            "Real alerts arrive here the same way.")


def link(event: AlertEvent) -> str:
    """The budget's page as an absolute URL, when ASPWEB_SITE_URL says where aspweb is served."""
    base = settings.SITE_URL.rstrip("/")
    return f"{base}{reverse('budget_detail', args=[event.budget_id])}" if base else ""


def _money(value: Decimal | None) -> str | None:
    # Strings, not floats: receivers get the exact amounts.
    return None if value is None else format(value.normalize(), "f")


def slack_escaped(text: str) -> str:
    """Slack reads <...> in `text` as a link or a mention (<!channel> notifies everyone in it): a budget
    named with angle brackets shows them as they are, and never pings anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def payload(event: AlertEvent) -> dict[str, Any]:
    """Slack-compatible JSON: Slack (and Mattermost, Discord's /slack endpoint, Teams workflows) show
    `text`; everything else is for receivers that want the numbers."""
    budget, span = event.budget, event.period.span
    url = link(event)
    text = (f"*{slack_escaped(title(event))}*\n{slack_escaped(event.message)}"
            + (f"\n<{url}|Open the budget in aspweb>" if url else ""))
    return {
        "text": text,
        "event": f"budget.{event.kind}",
        "alert_id": event.pk,
        "created_at": event.created_at.replace(microsecond=0).isoformat(),
        "budget": {
            "id": budget.pk, "name": budget.name, "scope": budget.scope, "target": budget.target_label,
            "period": budget.period, "amount": _money(event.amount), "hard_limit": budget.hard_limit,
        },
        "period": {"start": span.start.isoformat() if span.end else None,
                   "end": span.end.isoformat() if span.end else None, "label": span.label()},
        "threshold": event.threshold if event.kind == AlertEvent.Kind.THRESHOLD else None,
        "spent": _money(event.spent),
        "remaining": _money(max(event.amount - event.spent, Decimal(0))),
        "projected": _money(event.projected),
        "currency": "USD",
        "url": url or None,
    }


# -- sending ----------------------------------------------------------------------------------------


def deliver(delivery: Delivery) -> None:
    """Send one queued delivery; raises DeliveryError."""
    if delivery.channel == Delivery.Channel.EMAIL:
        _email(delivery.alert)
    elif delivery.channel == Delivery.Channel.WEBHOOK:
        _webhook(delivery.alert)
    else:
        raise DeliveryError(f"{delivery.get_channel_display()} alerts are written with the alert, not sent.",
                            retryable=False)


def _email(event: AlertEvent) -> None:
    recipients = event.budget.emails
    if not recipients:
        raise DeliveryError("The budget has no e-mail recipients any more.", retryable=False)
    url = link(event)
    body = event.message + (f"\n\n{url}" if url else "") + "\n\n-- aspweb budgets"
    email_send(f"[aspweb] {title(event)}", body, recipients)


def email_send(subject: str, body: str, recipients: list[str]) -> None:
    """The e-mail channel, for every kind of alert (budgets, reconciliation); raises DeliveryError."""
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(_mail_failure(exc), retryable=True) from None


def _mail_failure(exc: Exception) -> str:
    """What went wrong sending mail, in words: smtplib's exceptions print as Python tuples and dicts."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = ", ".join(f"{address} ({code})" for address, (code, _) in exc.recipients.items())
        return f"The mail server refused the recipients: {refused}."
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"The mail server refused the message: {exc.smtp_code} {' '.join(reply.split())}".rstrip() + "."
    if isinstance(exc, OSError) and exc.strerror:
        return f"The mail server could not be reached: {exc.strerror}."
    return f"The mail server refused or could not be reached: {exc}".rstrip(".") + "."


# Fixed words for a failed connection: an exception's own text can quote what the receiver sent.
_TRANSPORT_FAILURES = ((httpx.TimeoutException, "timed out"), (httpx.ConnectError, "could not connect"),
                       (httpx.HTTPError, "the connection failed"))


def _webhook(event: AlertEvent) -> None:
    """POST to the budget's webhook at an address checked just now (aspweb.outbound), without redirects.
    Errors name the host and the status only: the URL is a credential, and the receiver's body could be an
    internal service's answer."""
    budget = event.budget
    if not budget.webhook_url:
        raise DeliveryError("The budget has no webhook URL any more.", retryable=False)
    webhook_post(budget.webhook_url, payload(event))


def webhook_post(url: str, body: dict[str, Any]) -> None:
    """The webhook channel, for every kind of alert: POST `body` as JSON to `url`; raises DeliveryError
    naming the host only."""
    host = url.split("//", 1)[-1].split("/", 1)[0]
    transport = outbound.PinnedTransport(outbound.check_public_url)
    try:
        with httpx.Client(transport=transport, timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS,
                          follow_redirects=False, headers={"User-Agent": "aspweb-alerts"}) as client:
            response = client.post(url, json=body)
    except outbound.Refused as exc:
        raise DeliveryError(f"Did not post to {host}: {exc}",
                            retryable=isinstance(exc, outbound.Unresolved)) from None
    except httpx.HTTPError as exc:
        words = next(words for kind, words in _TRANSPORT_FAILURES if isinstance(exc, kind))
        raise DeliveryError(f"Could not post to {host}: {words}.", retryable=True) from None
    if response.is_success:
        return
    status = response.status_code
    retryable = status in (408, 429) or status >= 500
    raise DeliveryError(f"{host} answered HTTP {status} {httpx.codes.get_reason_phrase(status)}".rstrip() + ".",
                        retryable=retryable)
