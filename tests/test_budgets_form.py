"""The budget form and its words: each target field is marked with the scope it belongs to (forms.js shows it
only then; without JavaScript all show and the server keeps the scope's own), errors name the field in
people's words, and a name has a limit the form states. The longest name on the longest target still makes
an alert that is stored and sent whole. And the budgets' other words: role lists, counts, mail failures and
times read as sentences, not as Python."""

import io
import re
import smtplib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from budgets import notify, services
from budgets.forms import BudgetForm
from budgets.models import AlertEvent, Budget, Notification
from providers.models import Model, Price, Provider
from tests.budgets_support import make_budget, make_model
from tests.conftest import signed_in
from usage import services as usage_services

BASE = {"name": "Lab", "scope": "global", "period": "monthly", "amount": "10", "thresholds": "50"}


def test_each_target_field_says_which_scope_it_is_for(db: None, finance_user: User) -> None:
    html = signed_in(finance_user).get(reverse("budget_add")).content.decode()
    for field, scope, label in (("provider", "provider", "One provider"), ("model", "model", "One model"),
                                ("user", "user", "One user"), ("api_key", "api_key", "One API key")):
        select = html.split(f'name="{field}"', 1)[1].split(">", 1)[0]
        assert f'data-show-when="scope={scope}"' in select
        assert f"For the “{label}” scope." in html
    # The scope itself is always shown.
    assert "data-show-when" not in html.split('name="scope"', 1)[1].split(">", 1)[0]


@pytest.mark.parametrize(("scope", "field", "error"), [
    ("provider", "provider", "Choose the provider this budget is for: the “One provider” scope needs one."),
    ("model", "model", "Choose the model this budget is for: the “One model” scope needs one."),
    ("user", "user", "Choose the user this budget is for: the “One user” scope needs one."),
    ("api_key", "api_key", "Choose the API key this budget is for: the “One API key” scope needs one."),
])
def test_a_scope_without_its_target_is_refused_on_its_field(db: None, finance_user: User, scope: str, field: str,
                                                            error: str) -> None:
    # Another scope's target is no substitute (a browser without JavaScript shows every target).
    model = make_model()
    data = {**BASE, "scope": scope, "model" if scope != "model" else "provider":
            model.pk if scope != "model" else model.provider.pk}
    response = signed_in(finance_user).post(reverse("budget_add"), data)
    assert response.status_code == 200
    assert response.context["form"].errors[field] == [error]
    assert error in response.content.decode()
    assert not Budget.objects.exists()


def test_a_global_budget_drops_a_target_chosen_for_another_scope(db: None, finance_user: User) -> None:
    model = make_model()
    response = signed_in(finance_user).post(reverse("budget_add"), {**BASE, "model": model.pk})
    assert response.status_code == 302
    assert (Budget.objects.get().scope, Budget.objects.get().model) == ("global", None)


def test_the_form_states_the_names_limit_and_refuses_a_longer_one(db: None, finance_user: User) -> None:
    client = signed_in(finance_user)
    html = client.get(reverse("budget_add")).content.decode()
    assert "Up to 100 characters; alerts name the budget by it." in html
    assert 'maxlength="100"' in html.split('name="name"', 1)[1].split(">", 1)[0]

    response = client.post(reverse("budget_add"), {**BASE, "name": "n" * 300})
    assert response.context["form"].errors["name"] == ["Ensure this value has at most 100 characters (it has 300)."]
    assert not Budget.objects.exists()
    assert client.post(reverse("budget_add"), {**BASE, "name": "n" * 100}).status_code == 302


def test_a_threshold_that_is_not_a_percentage_is_quoted_in_words(db: None) -> None:
    form = BudgetForm({**BASE, "thresholds": "50, lots"})
    assert form.errors["thresholds"] == ["“lots” is not a percentage from 1 to 1000."]


def test_the_edit_page_names_the_budget_as_saved_while_the_form_has_errors(db: None, finance_user: User) -> None:
    budget = make_budget("Lab")
    response = signed_in(finance_user).post(reverse("budget_edit", args=[budget.pk]),
                                     {**BASE, "name": "Renamed", "amount": "0"})
    html = response.content.decode()
    assert response.status_code == 200
    assert '<title>Edit Lab · aspweb</title>' in html and 'title="Lab">Lab</span>' in html
    assert "Renamed" in html.split('name="name"', 1)[1].split(">", 1)[0]  # the field keeps what was typed


def test_the_longest_name_on_the_longest_target_makes_a_whole_alert(db: None, make_user: Callable[..., User]) -> None:
    finance_user = make_user("finance", email=f"{'f' * 64}@{'e' * 60}.example.com")
    provider = Provider.objects.create(name="p" * 64, kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="m" * 200)
    # A dollar a token: the largest spend a usage record holds, in one call.
    Price.objects.create(model=model, effective_from=timezone.now() - timedelta(days=1), input=Decimal(1_000_000),
                         output=Decimal(1_000_000))
    name = "n" * 100
    budget = make_budget(name, scope="model", model=model, amount=Decimal("99999999.99"), thresholds=[50, 100],
                         hard_limit=True)
    usage_services.usage_record_create(provider=provider, model=model, source="cli", status="ok",
                                       input_tokens=99_999_999)

    fired = services.budget_evaluate(budget)[1]

    # Stored and sent whole: on PostgreSQL a bounded column would refuse it, and the alert would never fire.
    stored = AlertEvent.objects.get(pk=fired[-1].pk).message
    assert stored.startswith(f"Budget “{name}” (model {provider.name}/{model.name}) reached 50% of its "
                             "$99,999,999.99 for ")
    assert stored.endswith("$99,999,999.00 spent, $0.99 left.")
    assert Notification.objects.get(user=finance_user).body == stored
    test = services.budget_test_alert(budget=budget, channel="in_app", actor=finance_user)
    message = AlertEvent.objects.get(pk=test.alert_id).message
    assert len(message) > 500 and f"sent by {finance_user.email}" in message
    assert message.endswith("Real alerts arrive here the same way.")
    assert Notification.objects.get(alert=test.alert_id).body == message


def test_a_page_for_several_roles_names_them_in_a_list(db: None, make_user: Callable[..., User]) -> None:
    response = signed_in(make_user("none")).get(reverse("budget_list"))
    assert response.status_code == 403
    assert "This page is for admins, finance or members." in response.content.decode()
    response = signed_in(make_user("member", email="m@example.com")).get(reverse("budget_add"))
    assert "This page is for admins or finance." in response.content.decode()


def test_an_unknown_test_channel_is_refused_in_words(db: None, finance_user: User) -> None:
    budget = make_budget()
    response = signed_in(finance_user).post(reverse("budget_test_alert", args=[budget.pk]), {"channel": "<pigeon>"},
                                     follow=True)
    html = response.content.decode()
    assert "Choose a channel to test: in-app, e-mail or webhook." in html and "pigeon" not in html


@pytest.mark.parametrize(("counts", "words"), [
    ((0, 0, 0), "0 reservations released, 0 periods reconciled, 0 alerts fired."),
    ((1, 1, 1), "1 reservation released, 1 period reconciled, 1 alert fired."),
    ((2, 3, 4), "2 reservations released, 3 periods reconciled, 4 alerts fired."),
])
def test_the_sweep_command_counts_in_words(monkeypatch: pytest.MonkeyPatch, counts: tuple[int, int, int],
                                           words: str) -> None:
    from budgets.management.commands import sweep_budgets

    released, reconciled, fired = counts
    monkeypatch.setattr(sweep_budgets, "budgets_sweep",
                        lambda: services.SweepResult(released, reconciled, [object()] * fired))
    out = io.StringIO()
    call_command("sweep_budgets", stdout=out)
    assert out.getvalue() == words + "\n"


@pytest.mark.parametrize(("exc", "words"), [
    (smtplib.SMTPRecipientsRefused({"cfo@example.com": (550, b"No such user"), "ops@example.com": (553, b"no")}),
     "The mail server refused the recipients: cfo@example.com (550), ops@example.com (553)."),
    (smtplib.SMTPSenderRefused(550, b"Sender\r\n rejected", "aspweb@example.com"),
     "The mail server refused the message: 550 Sender rejected."),
    (ConnectionRefusedError(111, "Connection refused"), "The mail server could not be reached: Connection refused."),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
     "The mail server refused or could not be reached: Connection unexpectedly closed."),
])
def test_a_mail_failure_reads_in_words(db: None, monkeypatch: pytest.MonkeyPatch, exc: Exception, words: str,
                                       django_capture_on_commit_callbacks: Callable) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(notify, "send_mail", refuse)
    budget = make_budget(emails=["cfo@example.com"])
    with django_capture_on_commit_callbacks(execute=True):
        delivery = services.budget_test_alert(budget=budget, channel="email", actor=None)
    delivery.refresh_from_db()
    assert delivery.last_error == words
    assert "(b'" not in delivery.last_error and "{" not in delivery.last_error


def test_the_webhooks_time_is_to_the_second(db: None) -> None:
    budget = make_budget()
    event = services.budget_test_alert(budget=budget, channel="in_app", actor=None).alert
    AlertEvent.objects.filter(pk=event.pk).update(created_at=datetime(2025, 5, 20, 9, 14, 3, 123456, tzinfo=UTC))
    event.refresh_from_db()
    assert notify.payload(event)["created_at"] == "2025-05-20T09:14:03+00:00"


@pytest.mark.parametrize(("changes", "field", "error"), [
    ({"thresholds": ", ".join(str(n) for n in range(1, 22))}, "thresholds", "At most 20 thresholds (this has 21)."),
    ({"emails": ", ".join(f"p{n}@example.com" for n in range(51))}, "emails",
     "At most 50 recipients (this has 51); a mailing list address reaches more."),
    ({"emails": "cfo@example.com, ops at example"}, "emails", "“ops” is not an e-mail address."),
    ({"emails": "x" * 100 + "@"}, "emails", f"“{'x' * 59}…” is not an e-mail address."),
])
def test_lists_are_bounded_and_their_errors_name_the_entry(db: None, changes: dict, field: str, error: str) -> None:
    form = BudgetForm({**BASE, **changes})
    assert form.errors[field] == [error]


def test_twenty_thresholds_and_fifty_recipients_fit(db: None) -> None:
    form = BudgetForm({**BASE, "thresholds": ", ".join(str(n * 5) for n in range(1, 21)),
                       "emails": "\n".join(f"p{n}@example.com" for n in range(50))})
    assert form.is_valid(), form.errors
    assert len(form.cleaned_data["thresholds"]) == 20 and len(form.cleaned_data["emails"]) == 50


def test_a_taken_name_is_refused_in_words(db: None) -> None:
    make_budget("Lab")
    form = BudgetForm({**BASE, "name": "Lab"})
    assert form.errors["name"] == ["Another budget already has this name."]


def test_the_webhooks_text_shows_angle_brackets_in_a_name_as_they_are(db: None) -> None:
    # Slack reads <...> as a link or a mention: <!channel> in a budget's name would notify a whole channel.
    budget = make_budget(name="Team <!channel> & <b>ops</b>")
    event = services.budget_test_alert(budget=budget, channel="in_app", actor=None).alert
    body = notify.payload(event)
    assert "<!channel>" not in body["text"] and "<b>" not in body["text"]
    assert "Team &lt;!channel&gt; &amp; &lt;b&gt;ops&lt;/b&gt;" in body["text"]
    assert body["budget"]["name"] == "Team <!channel> & <b>ops</b>"  # the raw field stays exact


def test_a_test_alert_reads_once_as_a_test_in_the_alerts_table(finance_user: User) -> None:
    budget = make_budget()
    services.budget_test_alert(budget=budget, channel="in_app", actor=finance_user)
    html = signed_in(finance_user).get(reverse("budget_detail", args=[budget.pk])).content.decode()
    table = html.split('class="data budget-alerts"', 1)[1].split("</table>", 1)[0]
    before = table.split("Test alert for Budget", 1)[0].rsplit("<td>", 1)[1]
    assert re.sub(r"<[^>]*>", "", before).strip() == ""  # no "Test" label before "Test alert"


def test_alerts_and_notifications_say_how_long_ago_with_the_exact_time_on_hover(finance_user: User) -> None:
    budget = make_budget()
    event = services.budget_test_alert(budget=budget, channel="in_app", actor=finance_user).alert
    AlertEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(hours=3, seconds=1.5))
    Notification.objects.filter(alert=event).update(created_at=timezone.now() - timedelta(hours=3, seconds=1.5))
    client = signed_in(finance_user)
    for page in (client.get(reverse("notification_list")), client.get(reverse("budget_detail", args=[budget.pk]))):
        stamp = re.search(r'<time[^>]*datetime="([^"]+)" title="([^"]+)">([^<]+)</time>', page.content.decode())
        assert stamp, page.content.decode()
        assert "." not in stamp[1] and stamp[2].endswith(" UTC") and stamp[3] == "3 hours ago"
