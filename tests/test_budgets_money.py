"""Budgets read their money in the product's one format: a sub-cent budget reads "$0.004", not "$0.00",
and a large one "$12,345.67", on every page, in the chart, in every alert's words (in-app, e-mail, the
webhook's text) and in a hard limit's refusal."""

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from budgets import notify, services
from budgets.models import AlertEvent, Budget, Notification
from tests.budgets_support import allow_loopback_webhooks, local, make_budget, make_model, receiver, spend
from tests.conftest import signed_in
from usage import services as usage_services


def _text(html: str) -> str:
    """What a page reads, tags dropped and white space squeezed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _tiny(**fields: object) -> Budget:
    return make_budget("Tiny", amount=Decimal("0.004"), thresholds=[25, 100], **fields)


def test_a_sub_cent_budgets_alert_names_its_amount_and_the_real_spend(db: None, finance_user: User) -> None:
    budget = _tiny(hard_limit=True)
    spend(make_model(), "0.0048")

    fired = services.budget_evaluate(budget)[1]

    assert [event.threshold for event in fired] == [25, 100]
    label = fired[0].period.span.label()
    assert fired[1].message == (f"Budget “Tiny” (every call) reached 100% of its $0.004 for {label}: $0.0048 "
                                "spent, $0.00 left. Calls that could go past it are refused.")
    assert Notification.objects.get(user=finance_user).body == fired[1].message


@pytest.mark.parametrize(("amount", "spent", "words"), [
    ("0.004", "0.003", "reached 50% of its $0.004 for May 2025: $0.003 spent, $0.001 left."),
    ("0.0004", "0.00035", "reached 50% of its $0.0004 for May 2025: $0.00035 spent, $0.00005 left."),
    ("12345.67", "6200", "reached 50% of its $12,345.67 for May 2025: $6,200.00 spent, $6,145.67 left."),
    ("1000000", "999999.995", "reached 50% of its $1,000,000.00 for May 2025: $1,000,000.00 spent, $0.005 left."),
])
def test_threshold_words_read_every_amount(db: None, amount: str, spent: str, words: str) -> None:
    budget = make_budget(amount=Decimal(amount), thresholds=[50])
    model = make_model()
    # Large spends at a thousand dollars per million input tokens, to fit a usage record's token count.
    per_million = Decimal(1000) if Decimal(spent) > 1000 else Decimal(1)
    model.prices.update(input=per_million)
    usage_services.usage_record_create(provider=model.provider, model=model, source="cli", status="ok",
                                       created_at=local(2025, 5, 10, 12, 0),
                                       input_tokens=int(Decimal(spent) * 1_000_000 / per_million))
    [event] = services.budget_periods_evaluate(
        period_ids=[services.budget_period_get(budget, budget.span_at(local(2025, 5, 10)))[0].pk],
        now=local(2025, 5, 10, 13, 0))
    assert event.message == f"Budget “Team” (every call) {words}"


def test_forecast_and_test_alerts_read_sub_cent_amounts(db: None, finance_user: User) -> None:
    budget = _tiny(forecast=True)
    budget.thresholds = []
    budget.save()
    spend(make_model(), "0.0025", when=local(2025, 5, 2, 9, 0))
    [event] = services.budget_evaluate(budget, now=local(2025, 5, 16, 12, 0))[1]
    assert event.message == ("Budget “Tiny” (every call) is on course to spend $0.005 in May 2025, above its "
                             "$0.004: $0.0025 spent so far.")

    spend(make_model("m2"), "0.0015")
    delivery = services.budget_test_alert(budget=budget, channel="in_app", actor=finance_user)
    during = budget.span_at(timezone.now()).during()
    assert f": $0.0015 of $0.004 spent {during}." in delivery.alert.message


def test_e_mail_and_webhook_text_read_the_sub_cent_amount(
        db: None, settings: object, django_capture_on_commit_callbacks: Callable) -> None:
    allow_loopback_webhooks(settings)
    with receiver([200]) as hook:
        budget = make_budget("Tiny", amount=Decimal("0.004"), thresholds=[50], emails=["cfo@example.com"],
                             webhook_url=hook.url)
        spend(make_model(), "0.003")
        with django_capture_on_commit_callbacks(execute=True):
            [event] = services.budget_evaluate(budget)[1]

    [post] = hook.posts
    assert "reached 50% of its $0.004" in post["json"]["text"] and "$0.003 spent, $0.001 left." in post["json"]["text"]
    # The numbers beside the words stay exact strings.
    assert (post["json"]["budget"]["amount"], post["json"]["spent"]) == ("0.004", "0.003")
    [message] = mail.outbox
    assert message.body.startswith(event.message) and "$0.004" in message.body and "$0.00 " not in message.body


def test_the_hard_limits_refusal_reads_sub_cent_and_large_amounts(db: None, finance_user: User) -> None:
    model = make_model()
    tiny = _tiny(hard_limit=True)
    spend(model, "0.0031")
    with pytest.raises(services.BudgetExceeded) as refused:
        services.budget_reserve(request_id=uuid.uuid4(), provider=model.provider, model=model, user=finance_user,
                                api_key=None, cost=Decimal("0.0012"), ttl=timedelta(minutes=5))
    assert refused.value.message.startswith("Budget “Tiny” (every call, monthly) has $0.0009 left of $0.004, and "
                                            "this call could cost up to $0.0012.")

    tiny.delete()
    make_budget("Big", amount=Decimal("12345.67"), hard_limit=True)
    with pytest.raises(services.BudgetExceeded) as refused:
        services.budget_reserve(request_id=uuid.uuid4(), provider=model.provider, model=model, user=finance_user,
                                api_key=None, cost=Decimal("20000"), ttl=timedelta(minutes=5))
    assert refused.value.message.startswith("Budget “Big” (every call, monthly) has $12,345.67 left of "
                                            "$12,345.67, and this call could cost up to $20,000.00.")


def test_the_pages_and_the_chart_read_sub_cent_amounts(db: None, finance_user: User) -> None:
    budget = _tiny()
    spend(make_model(), "0.0048")
    client = signed_in(finance_user)

    for url in (reverse("budget_list"), reverse("budget_detail", args=[budget.pk])):
        html = client.get(url).content.decode()
        text = _text(html)
        assert "Spent $0.0048 Used 120.0% Remaining $0.00" in text
        assert "Amount $0.004" in text
        assert 'aria-label="Spend through ' in html and ': $0.0048 of $0.004"' in html
        # Each line of the chart says what it is when pointed at.
        assert "<title>25%: $0.001</title>" in html
        assert "<title>Amount: $0.004</title>" in html
        assert "<title>Spent: $0.0048</title>" in html
        assert 'title="120.0% used"' in html
    detail = _text(client.get(reverse("budget_detail", args=[budget.pk])).content.decode())
    assert "25%, at $0.001 spent" in detail and "100%, at $0.004 spent" in detail


def test_the_pages_read_large_amounts_with_separators(db: None, finance_user: User) -> None:
    budget = make_budget("Big", amount=Decimal("12345.67"), thresholds=[50])
    spend(make_model(), "0.0048")
    html = signed_in(finance_user).get(reverse("budget_detail", args=[budget.pk])).content.decode()
    text = _text(html)
    assert "Spent $0.0048 Used under 0.1% Remaining $12,345.67" in text  # a spend is never 0.0%
    assert "Amount $12,345.67" in text and "50%, at $6,172.84 spent" in text
    assert "<title>50%: $6,172.84</title>" in html


def test_a_percent_past_a_thousand_reads_with_separators(db: None, finance_user: User) -> None:
    make_budget("Tiny", amount=Decimal("0.004"))
    spend(make_model(), "5")
    text = _text(signed_in(finance_user).get(reverse("budget_list")).content.decode())
    assert "Used 125,000.0%" in text


def test_the_alert_title_stays_short_whatever_the_amount(db: None) -> None:
    budget = _tiny()
    spend(make_model(), "0.0048")
    services.budget_evaluate(budget)
    event = AlertEvent.objects.get(threshold=100)
    assert notify.title(event) == "Budget Tiny: 100% reached"
