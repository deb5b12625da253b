"""Alert channels: a Slack-compatible webhook posted to a real HTTP receiver on loopback (retried while it
fails, given up on when it refuses), e-mail through Django's mail, and test alerts per channel. Tasks run
eagerly here, so retries follow one another at once; tests/test_budgets_worker.py waits out the backoff
with a real worker."""

import ipaddress
import socket
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail

from accounts.models import User
from budgets import evaluation, services
from budgets.models import AlertEvent, Delivery, Notification
from tests.budgets_support import (
    PUBLIC_IP,
    allow_loopback_webhooks,
    fake_dns,
    make_budget,
    make_model,
    period_of,
    receiver,
    spend,
)


@pytest.fixture(autouse=True)
def _loopback_receivers(settings: object) -> None:
    allow_loopback_webhooks(settings)


@pytest.fixture
def finance(make_user: Callable[..., User]) -> User:
    return make_user("finance")


def _cross_half(budget_fields: dict, capture: Callable) -> AlertEvent:
    """Spend 55% of a $1 budget and evaluate, running what is dispatched on commit."""
    model = make_model()
    make_budget(amount=Decimal(1), thresholds=[50], **budget_fields)
    spend(model, "0.55")
    with capture(execute=True):
        [event] = evaluation.budgets_evaluate()
    return event


def test_the_webhook_gets_slack_compatible_json_with_structured_fields(
        db: None, django_capture_on_commit_callbacks: Callable, settings: object) -> None:
    settings.SITE_URL = "https://aspweb.example.com"
    with receiver([200]) as hook:
        model = make_model()
        budget = make_budget("Team", amount=Decimal(1), thresholds=[50], webhook_url=hook.url, hard_limit=True)
        spend(model, "0.55")
        with django_capture_on_commit_callbacks(execute=True):
            [event] = evaluation.budgets_evaluate()

    [post] = hook.posts
    body = post["json"]
    assert post["path"] == "/hooks/T000/B000/s3cr3t-token"
    assert post["content_type"] == "application/json"
    assert body["text"] == (f"*Budget Team: 50% reached*\n{event.message}\n"
                            f"<https://aspweb.example.com/budgets/{budget.pk}/|Open the budget in aspweb>")
    assert body["event"] == "budget.threshold"
    assert body["threshold"] == 50
    assert (body["spent"], body["remaining"], body["currency"]) == ("0.55", "0.45", "USD")
    assert body["budget"] == {"id": budget.pk, "name": "Team", "scope": "global", "target": "every call",
                              "period": "monthly", "amount": "1", "hard_limit": True}
    assert body["period"]["label"] == period_of(budget).span.label()
    delivery = Delivery.objects.get(alert=event, channel="webhook")
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, "")
    assert delivery.sent_at is not None


def test_a_receiver_that_fails_twice_then_succeeds(db: None, django_capture_on_commit_callbacks: Callable) -> None:
    with receiver([500, 503, 200]) as hook:
        event = _cross_half({"webhook_url": hook.url}, django_capture_on_commit_callbacks)

    assert len(hook.posts) == 3
    assert [p["json"]["alert_id"] for p in hook.posts] == [event.pk] * 3
    delivery = Delivery.objects.get(alert=event, channel="webhook")
    assert (delivery.status, delivery.attempts) == ("sent", 3)
    # The status and its standard words, never the receiver's body.
    assert delivery.last_error == f"127.0.0.1:{hook.server.server_address[1]} answered HTTP 503 Service Unavailable."


def test_a_refusing_receiver_is_not_retried(db: None, django_capture_on_commit_callbacks: Callable) -> None:
    with receiver([404]) as hook:
        event = _cross_half({"webhook_url": hook.url}, django_capture_on_commit_callbacks)

    assert len(hook.posts) == 1
    delivery = Delivery.objects.get(alert=event, channel="webhook")
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "HTTP 404" in delivery.last_error


def test_an_unreachable_receiver_is_retried_then_given_up_without_leaking_the_url(
        db: None, django_capture_on_commit_callbacks: Callable, settings: object) -> None:
    with receiver() as hook:
        url, host = hook.url, f"127.0.0.1:{hook.server.server_address[1]}"
    # The receiver is gone: every attempt finds the port closed.
    event = _cross_half({"webhook_url": url}, django_capture_on_commit_callbacks)

    delivery = Delivery.objects.get(alert=event, channel="webhook")
    assert delivery.status == "failed"
    assert delivery.attempts == settings.ALERT_DELIVERY_RETRIES + 1
    assert delivery.last_error.startswith(f"Could not post to {host}")
    assert "s3cr3t-token" not in delivery.last_error


def test_backoff_doubles_up_to_its_cap(settings: object) -> None:
    settings.ALERT_RETRY_BASE_SECONDS, settings.ALERT_RETRY_MAX_SECONDS = 10, 600
    assert [services.delivery_backoff(n) for n in range(8)] == [10, 20, 40, 80, 160, 320, 600, 600]


def test_e_mail_goes_to_the_budgets_recipients(db: None, django_capture_on_commit_callbacks: Callable) -> None:
    event = _cross_half({"emails": ["cfo@example.com", "ops@example.com"]}, django_capture_on_commit_callbacks)

    [message] = mail.outbox
    assert message.to == ["cfo@example.com", "ops@example.com"]
    assert message.subject == "[aspweb] Budget Team: 50% reached"
    assert event.message in message.body
    assert Delivery.objects.get(alert=event, channel="email").status == "sent"


def test_test_alerts_go_through_one_channel_each(db: None, finance: User, make_user: Callable[..., User],
                                                 django_capture_on_commit_callbacks: Callable) -> None:
    admin = make_user("admin")
    with receiver([200]) as hook:
        budget = make_budget(amount=Decimal(1), emails=["cfo@example.com"], webhook_url=hook.url)
        with django_capture_on_commit_callbacks(execute=True):
            in_app = services.budget_test_alert(budget=budget, channel="in_app", actor=finance)
            email = services.budget_test_alert(budget=budget, channel="email", actor=finance)
            webhook = services.budget_test_alert(budget=budget, channel="webhook", actor=finance)

    # In-app goes to the person testing only, not to every finance user and admin.
    assert list(Notification.objects.values_list("user", flat=True)) == [finance.pk]
    assert not Notification.objects.filter(user=admin).exists()
    assert [m.subject for m in mail.outbox] == ["[aspweb] Budget Team: test alert"]
    [post] = hook.posts
    assert post["json"]["event"] == "budget.test"
    assert "sent by finance@example.com" in post["json"]["text"]
    for delivery in (in_app, email, webhook):
        delivery.refresh_from_db()
        assert delivery.status == "sent"


def test_a_channel_without_recipients_cannot_be_tested(db: None, finance: User) -> None:
    budget = make_budget(amount=Decimal(1))
    with pytest.raises(ValueError, match="no e-mail recipients"):
        services.budget_test_alert(budget=budget, channel="email", actor=finance)
    with pytest.raises(ValueError, match="no webhook URL"):
        services.budget_test_alert(budget=budget, channel="webhook", actor=finance)
    assert not AlertEvent.objects.exists()


# -- where webhooks may go (aspweb.outbound) ---------------------------------------------------------


def test_a_webhook_to_loopback_is_not_sent_without_the_operators_word(
        db: None, finance: User, settings: object, django_capture_on_commit_callbacks: Callable) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = []
    with receiver([200]) as hook:
        # Saved past the form (an old row, or config written before the check): the send checks again.
        budget = make_budget(amount=Decimal(1), webhook_url=hook.url)
        with django_capture_on_commit_callbacks(execute=True):
            delivery = services.budget_test_alert(budget=budget, channel="webhook", actor=finance)

    assert hook.posts == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 1)  # refused, not retried
    assert delivery.last_error == f"Did not post to {budget.webhook_host}: 127.0.0.1 is a loopback address."


def test_the_operator_allows_an_internal_receiver_by_host_and_port(
        db: None, finance: User, settings: object, django_capture_on_commit_callbacks: Callable) -> None:
    with receiver([200]) as hook:
        budget = make_budget(amount=Decimal(1), webhook_url=hook.url)
        settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1:1"]  # another port is not this receiver
        with django_capture_on_commit_callbacks(execute=True):
            refused = services.budget_test_alert(budget=budget, channel="webhook", actor=finance)
        settings.WEBHOOK_ALLOWED_HOSTS = ["chat.lan", budget.webhook_host]
        with django_capture_on_commit_callbacks(execute=True):
            sent = services.budget_test_alert(budget=budget, channel="webhook", actor=finance)

    refused.refresh_from_db()
    sent.refresh_from_db()
    assert (refused.status, sent.status) == ("failed", "sent")
    assert len(hook.posts) == 1


def test_a_dns_answer_that_changes_after_the_check_is_not_connected_to(
        db: None, finance: User, settings: object, monkeypatch: pytest.MonkeyPatch,
        django_capture_on_commit_callbacks: Callable) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = []
    connected: list[tuple[str, int]] = []
    real_connect = socket.create_connection

    def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        # Loopback is let through (the receiver listens there); anything else is refused, never reached.
        connected.append(address)
        answer = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)[0][4][0]
        if not ipaddress.ip_address(answer).is_loopback:
            raise ConnectionRefusedError(111, "Connection refused")
        return real_connect(address, *args, **kwargs)

    with receiver([200]) as hook:
        port = hook.server.server_address[1]
        budget = make_budget(amount=Decimal(1), webhook_url=f"http://hooks.example.com:{port}/hook")
        # A rebinding DNS server: public for the check, loopback for whoever asks next.
        dns = fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC_IP, "127.0.0.1"]})
        monkeypatch.setattr(socket, "create_connection", connect)
        with django_capture_on_commit_callbacks(execute=True):
            delivery = services.budget_test_alert(budget=budget, channel="webhook", actor=finance)

    # The first attempt connects to the address it checked, and fails; the retry's own lookup gets the loopback
    # answer, which its check refuses. One lookup per attempt: nothing resolves the name a second time.
    assert hook.posts == []
    assert connected == [(PUBLIC_IP, port)]
    assert dns.asked == ["hooks.example.com"] * 2
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert delivery.last_error == (f"Did not post to hooks.example.com:{port}: hooks.example.com resolves to "
                                   "127.0.0.1, a loopback address.")


def test_redirects_are_not_followed(db: None, finance: User, django_capture_on_commit_callbacks: Callable) -> None:
    with receiver([302]) as hook:
        budget = make_budget(amount=Decimal(1), webhook_url=hook.url)
        with django_capture_on_commit_callbacks(execute=True):
            delivery = services.budget_test_alert(budget=budget, channel="webhook", actor=finance)

    assert len(hook.posts) == 1
    delivery.refresh_from_db()
    assert delivery.last_error == f"{budget.webhook_host} answered HTTP 302 Found."
