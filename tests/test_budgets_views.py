"""The budget pages: the status page with its numbers and chart, who sees which budget, adding and editing
with the scope's target, test alert buttons, and notifications with the bell."""

import re
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, User
from budgets import services
from budgets.models import Budget, Notification
from gateway.models import ApiKey
from providers.models import Model, Provider
from tests.budgets_support import (
    PUBLIC_IP,
    allow_loopback_webhooks,
    fake_dns,
    local,
    make_budget,
    make_model,
    receiver,
    spend,
)
from tests.conftest import signed_in
from usage import services as usage_services


def _card(html: str, name: str) -> str:
    """One budget's card on the status page."""
    return html.split(f'aria-label="Budget {name}"', 1)[1].split("</section>", 1)[0]


def test_the_status_page_shows_spend_percent_projection_remaining_chart_and_history(
        db: None, finance_user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model()
    make_budget("Team", amount=Decimal(10), period="monthly")
    spend(model, "2.5", when=local(2025, 5, 1, 0, 1))
    spend(model, "4", when=local(2025, 4, 30, 23, 59))  # last month
    # Noon on 16 May: half of May has passed, so $2.50 runs at $5.00 for the month.
    monkeypatch.setattr(timezone, "now", lambda: local(2025, 5, 16, 12, 0))

    card = _card(signed_in(finance_user).get(reverse("budget_list")).content.decode(), "Team")

    assert "Every call · Monthly (from the 1st) · May 2025" in card
    assert '<dd class="spent">$2.50</dd>' in card
    assert '<dd class="used">25.0%</dd>' in card
    assert '<dd class="remaining">$7.50</dd>' in card
    assert '<dd class="projected">$5.00</dd>' in card
    assert '<meter min="0" max="100" low="50" high="99.9" optimum="0" value="25.0"' in card
    # Cumulative spend by day in a 300 x 80 box whose top is 110% of the largest of amount, spend and projection:
    # nothing at the start, $2.50 from the 1st, up to today (the 16th of 31 days).
    points = re.search(r'<polyline class="chart-spend" points="([^"]+)"', card).group(1).split()
    assert points[:2] == ["0.0,80.0", "9.7,61.8"]
    assert points[-1] == "154.8,61.8" and len(points) == 17
    assert 'class="chart-limit" x1="0" x2="300" y1="7.3"' in card
    assert 'class="chart-projection" x1="154.8" y1="61.8" x2="300" y2="43.6"' in card
    assert "April 2025 <b>$4.00</b>" in card


def test_members_see_only_the_budgets_that_apply_to_them(db: None, make_user: Callable[..., User]) -> None:
    model = make_model()
    member, other = make_user("member"), make_user("member", email="other@example.com")
    key = ApiKey.objects.create(name="mine", user=member, prefix="ak-mine", key_hash="h1")
    theirs = ApiKey.objects.create(name="theirs", user=other, prefix="ak-theirs", key_hash="h2")
    for budget in (make_budget("Everyone"), make_budget("Provider", scope="provider", provider=model.provider),
                   make_budget("Me", scope="user", user=member), make_budget("My key", scope="api_key", api_key=key),
                   make_budget("Them", scope="user", user=other),
                   make_budget("Their key", scope="api_key", api_key=theirs)):
        assert budget.pk

    client = signed_in(member)
    html = client.get(reverse("budget_list")).content.decode()

    shown = re.findall(r'aria-label="Budget ([^"]+)"', html)
    assert sorted(shown) == ["Everyone", "Me", "My key", "Provider"]
    assert "Add budget" not in html
    them = Budget.objects.get(name="Them")
    assert client.get(reverse("budget_detail", args=[them.pk])).status_code == 404
    mine = client.get(reverse("budget_detail", args=[Budget.objects.get(name="Me").pk])).content.decode()
    assert "Send a test alert" not in mine and "Edit</a>" not in mine


def test_finance_adds_a_budget_with_its_target(db: None, finance_user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC_IP]})
    model = make_model()
    client = signed_in(finance_user)
    form = {"name": "Lab", "scope": "model", "model": model.pk, "provider": model.provider.pk, "period": "weekly",
            "amount": "25.50", "thresholds": "80, 50%, 100", "forecast": "on", "hard_limit": "on",
            "emails": "cfo@example.com\nops@example.com", "webhook_url": "hooks.example.com/T1/B2/x"}

    response = client.post(reverse("budget_add"), form)

    budget = Budget.objects.get(name="Lab")
    assert response.status_code == 302 and response["Location"] == reverse("budget_detail", args=[budget.pk])
    assert (budget.scope, budget.model, budget.provider) == ("model", model, None)  # the other target is dropped
    assert (budget.period, budget.amount, budget.thresholds) == ("weekly", Decimal("25.5"), [50, 80, 100])
    assert (budget.forecast, budget.hard_limit) == (True, True)
    assert budget.emails == ["cfo@example.com", "ops@example.com"]
    assert budget.webhook_url == "https://hooks.example.com/T1/B2/x"
    assert budget.created_by == finance_user
    assert AuditEvent.objects.filter(action="budget.create", target_label="Lab").exists()
    detail = client.get(reverse("budget_detail", args=[budget.pk])).content.decode()
    # The webhook URL is a credential: the page names its host only.
    assert "hooks.example.com" in detail and "/T1/B2/x" not in detail


@pytest.mark.parametrize(("changes", "field", "error"), [
    ({"scope": "user"}, "user", "Choose the user this budget is for: the “One user” scope needs one."),
    ({"scope": "api_key"}, "api_key", "Choose the API key this budget is for: the “One API key” scope needs one."),
    ({"period": "total", "forecast": "on"}, "forecast", "A total budget never ends"),
    ({"thresholds": "50, lots"}, "thresholds", "“lots” is not a percentage from 1 to 1000."),
    ({"emails": "cfo@"}, "emails", "“cfo@” is not an e-mail address."),
    ({"amount": "0"}, "amount", "A budget must be above $0."),
])
def test_the_form_says_what_is_wrong(db: None, finance_user: User, changes: dict, field: str, error: str) -> None:
    data = {"name": "X", "scope": "global", "period": "monthly", "amount": "10", "thresholds": "50", **changes}
    response = signed_in(finance_user).post(reverse("budget_add"), data)
    assert response.status_code == 200
    assert error in " ".join(response.context["form"].errors[field])
    assert not Budget.objects.exists()


@pytest.mark.parametrize(("url", "dns", "error"), [
    ("http://127.0.0.1:8080/hook", {}, "127.0.0.1 is a loopback address."),
    ("http://169.254.169.254/latest/meta-data/", {}, "169.254.169.254 is a link-local address."),
    ("http://[::ffff:10.0.0.1]/hook", {}, "::ffff:10.0.0.1 is a private address."),
    ("https://hooks.example.com/x", {"hooks.example.com": ["10.1.2.3"]},
     "hooks.example.com resolves to 10.1.2.3, a private address."),
    ("https://hooks.example.com/x", {"hooks.example.com": ["100.64.0.7"]},
     "hooks.example.com resolves to 100.64.0.7, a shared (CGNAT) address."),
    ("https://hooks.example.com/x", {"hooks.example.com": ["fd12::1"]},
     "hooks.example.com resolves to fd12::1, a unique local (private) address."),
    ("https://nowhere.example/x", {}, "nowhere.example does not resolve to an address."),
    ("ftp://files.example.com/x", {}, "Only http:// and https:// URLs with a host are sent."),
])
def test_a_webhook_that_does_not_reach_a_public_address_is_refused_with_the_reason(
        db: None, finance_user: User, monkeypatch: pytest.MonkeyPatch, url: str, dns: dict, error: str) -> None:
    fake_dns(monkeypatch, dns)
    data = {"name": "X", "scope": "global", "period": "monthly", "amount": "10", "thresholds": "50",
            "webhook_url": url}
    response = signed_in(finance_user).post(reverse("budget_add"), data)
    assert response.status_code == 200
    [message] = response.context["form"].errors["webhook_url"]
    assert message.startswith(error)
    assert "ASPWEB_WEBHOOK_ALLOWED_HOSTS" in message
    assert not Budget.objects.exists()


def test_the_operator_allows_an_internal_webhook_host(db: None, finance_user: User, settings: object) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = ["chat.lan", "127.0.0.1:8065"]
    data = {"name": "X", "scope": "global", "period": "monthly", "amount": "10", "thresholds": "50",
            "webhook_url": "http://127.0.0.1:8065/hooks/x"}
    assert signed_in(finance_user).post(reverse("budget_add"), data).status_code == 302
    assert Budget.objects.get().webhook_url == "http://127.0.0.1:8065/hooks/x"


def test_editing_keeps_this_periods_alerts_fired(db: None, finance_user: User) -> None:
    model = make_model()
    budget = make_budget(amount=Decimal(1), thresholds=[50])
    spend(model, "0.6")
    services.budgets_sweep()
    client = signed_in(finance_user)
    data = {"name": "Team", "scope": "global", "period": "monthly", "amount": "2", "thresholds": "50"}

    assert client.post(reverse("budget_edit", args=[budget.pk]), data).status_code == 302

    budget.refresh_from_db()
    assert budget.amount == Decimal(2)
    spend(model, "0.6")  # 60% of the new amount
    assert services.budgets_sweep().fired == []
    assert AuditEvent.objects.get(action="budget.update").details["changed"] == ["amount"]


def test_the_test_alert_button_reports_what_happened(db: None, finance_user: User) -> None:
    budget = make_budget(amount=Decimal(1))
    client = signed_in(finance_user)

    response = client.post(reverse("budget_test_alert", args=[budget.pk]), {"channel": "in_app"}, follow=True)
    assert "Test alert sent (In-app)." in response.content.decode()
    assert Notification.objects.get(user=finance_user).title == "Budget Team: test alert"

    response = client.post(reverse("budget_test_alert", args=[budget.pk]), {"channel": "webhook"}, follow=True)
    assert "This budget has no webhook URL to test." in response.content.decode()


def test_a_failed_test_webhook_shows_the_status_never_the_receivers_reply(
        db: None, finance_user: User, settings: object, django_capture_on_commit_callbacks: Callable) -> None:
    allow_loopback_webhooks(settings)
    client = signed_in(finance_user)
    with receiver([403]) as hook:
        budget = make_budget(amount=Decimal(1), webhook_url=hook.url)
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("budget_test_alert", args=[budget.pk]), {"channel": "webhook"})

    html = client.get(reverse("budget_detail", args=[budget.pk])).content.decode()
    assert f"{budget.webhook_host} answered HTTP 403 Forbidden." in html
    assert "try later" not in html  # what the receiver wrote


def test_delivery_status_shows_on_the_budget_page(db: None, finance_user: User, settings: object,
                                                  django_capture_on_commit_callbacks: Callable) -> None:
    allow_loopback_webhooks(settings)
    model = make_model()
    # Nothing listens on port 9: every attempt fails, and the page says so.
    budget = make_budget(amount=Decimal(1), thresholds=[50], webhook_url="http://127.0.0.1:9/hook")
    spend(model, "0.6")
    with django_capture_on_commit_callbacks(execute=True):
        services.budgets_sweep()

    html = signed_in(finance_user).get(reverse("budget_detail", args=[budget.pk])).content.decode()

    webhook = html.split('<span class="badge">Webhook</span>', 1)[1].split("</div>", 1)[0]
    assert webhook.startswith(" failed, 6 attempts")
    assert "Could not post to 127.0.0.1:9" in webhook
    assert '<span class="badge">In-app</span> sent' in html


def test_the_bell_counts_unread_notifications_and_marking_read_clears_it(db: None, make_user: Callable) -> None:
    person = make_user("none")  # everyone signed in has a bell, roles or not
    other = make_user("member")
    first = Notification.objects.create(user=person, title="One", body="First.", url="/budgets/")
    Notification.objects.create(user=person, title="Two", body="Second.")
    Notification.objects.create(user=other, title="Not yours", body="Other's.")
    client = signed_in(person)

    home = client.get(reverse("home")).content.decode()
    assert '<span class="bell-count">2</span>' in home
    bell = client.get(reverse("notification_bell")).content.decode()
    assert bell.startswith('<a id="bell" class="bell bell-unread"') and '<span class="bell-count">2</span>' in bell
    listing = client.get(reverse("notification_list")).content.decode()
    assert "One" in listing and "Two" in listing and "Not yours" not in listing

    response = client.post(reverse("notification_read", args=[first.pk]), {"next": "/budgets/"})
    assert response["Location"] == "/budgets/"
    assert '<span class="bell-count">1</span>' in client.get(reverse("notification_bell")).content.decode()
    outside = client.post(reverse("notification_read", args=[first.pk]), {"next": "https://evil.example/"})
    assert outside["Location"] == reverse("notification_list")

    client.post(reverse("notification_read_all"))
    assert "bell-count" not in client.get(reverse("notification_bell")).content.decode()
    assert Notification.objects.filter(user=other, read_at__isnull=True).count() == 1


def test_a_budget_page_counts_unpriced_calls_apart_and_names_the_models_a_hard_limit_refuses(
        db: None, finance_user: User, make_user: Callable[..., User]) -> None:
    priced = make_model("priced", provider="p1")
    unpriced = Model.objects.create(provider=priced.provider, name="no-price")
    Model.objects.create(provider=priced.provider, name="switched-off", enabled=False)
    elsewhere = Model.objects.create(provider=Provider.objects.create(name="p2", kind="openai_compatible",
                                                                      base_url="http://127.0.0.1:9/v1"), name="x")
    spend(priced, "0.5")
    usage_services.usage_record_create(provider=unpriced.provider, model=unpriced, source="cli", status="ok",
                                       input_tokens=1200, output_tokens=300)
    hard = make_budget("Lab", scope="provider", provider=priced.provider, amount=Decimal(10), hard_limit=True)
    soft = make_budget("Watch", amount=Decimal(10))

    page = signed_in(finance_user).get(reverse("budget_detail", args=[hard.pk])).content.decode()
    assert "1 call in this period used 1,500 tokens of models without a price: they are not in what was spent." in page
    refused = page.split('id="refused-h"', 1)[1].split("</section>", 1)[0]
    # The provider's enabled model without a price; not the priced one, the disabled one, nor another provider's.
    assert "p1/no-price" in refused and "p1/priced" not in refused
    assert "switched-off" not in refused and str(elsewhere) not in refused
    assert 'href="/models/' not in refused  # finance cannot set prices: no link to a page it may not open
    admin_page = signed_in(make_user("admin")).get(reverse("budget_detail", args=[hard.pk])).content.decode()
    assert f'href="{reverse("model_detail", args=[unpriced.pk])}#price-form">p1/no-price</a>' in admin_page

    # A soft budget refuses nothing: it only counts the unpriced calls apart.
    page = signed_in(finance_user).get(reverse("budget_detail", args=[soft.pk])).content.decode()
    assert "1 call in this period used 1,500 tokens" in page and 'id="refused-h"' not in page
