"""Alerts fire exactly once per budget, period and threshold (and once for the forecast), enforced by the
database: not again on re-evaluation, a re-run of the sweep, or concurrent usage records."""

import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from accounts.models import User
from aspweb.celery import app
from budgets import evaluation, services
from budgets.models import AlertEvent, Budget, Delivery, Notification
from tests.budgets_support import (
    ON_POSTGRESQL,
    SQLITE_REASON,
    ensure_role_groups,
    local,
    make_budget,
    make_model,
    period_of,
    spend,
)


@pytest.fixture
def people(make_user: Callable[..., User]) -> dict[str, User]:
    return {role: make_user(role) for role in ("finance", "admin", "member", "none")}


def _evaluate(budget: Budget, when: object = None) -> list[AlertEvent]:
    """What the evaluation after usage fires for `budget`."""
    return [event for event in evaluation.budgets_evaluate(now=when) if event.budget_id == budget.pk]


def test_each_threshold_fires_once_as_spend_crosses_it(db: None, people: dict[str, User]) -> None:
    model = make_model()
    budget = make_budget(amount=Decimal(1), hard_limit=True)
    spend(model, "0.4")
    assert _evaluate(budget) == []

    spend(model, "0.15")
    fired = _evaluate(budget)
    assert [(e.kind, e.threshold, e.spent) for e in fired] == [("threshold", 50, Decimal("0.55"))]
    assert fired[0].message == ("Budget “Team” (every call) reached 50% of its $1.00 for "
                                f"{period_of(budget).span.label()}: $0.55 spent, $0.45 left.")
    assert _evaluate(budget) == []  # evaluating again fires nothing

    spend(model, "0.7")
    fired = _evaluate(budget)
    # 50% fired already; 80% and 100% are crossed together: both recorded, only 100% sent.
    assert [(e.threshold, e.notified) for e in fired] == [(80, False), (100, True)]
    assert fired[1].message.endswith("Calls that could go past it are refused.")
    assert sorted(AlertEvent.objects.values_list("threshold", flat=True)) == [50, 80, 100]
    titles = sorted(Notification.objects.filter(user=people["finance"]).values_list("title", flat=True))
    assert titles == ["Budget Team: 100% reached", "Budget Team: 50% reached"]
    assert not Delivery.objects.filter(alert__threshold=80).exists()


def test_in_app_alerts_go_to_finance_admins_and_the_budgets_own_user(db: None, people: dict[str, User],
                                                                     make_user: Callable[..., User]) -> None:
    model = make_model()
    mine = make_user("member", email="ana@example.com")
    budget = make_budget(scope="user", user=mine, amount=Decimal(1), thresholds=[50])
    spend(model, "0.6", user=mine)
    spend(model, "5", user=people["member"])  # someone else's spend is not this budget's

    [event] = _evaluate(budget)

    assert event.spent == Decimal("0.6")
    recipients = set(Notification.objects.filter(alert=event).values_list("user__email", flat=True))
    assert recipients == {"finance@example.com", "admin@example.com", "ana@example.com"}
    delivery = Delivery.objects.get(alert=event)
    assert (delivery.channel, delivery.status, delivery.attempts) == ("in_app", "sent", 1)


def test_the_database_refuses_a_second_alert_for_the_same_threshold(db: None) -> None:
    model = make_model()
    budget = make_budget(amount=Decimal(1), thresholds=[50])
    spend(model, "0.6")
    [event] = _evaluate(budget)
    # What a concurrent evaluation that read "not fired yet" a moment ago would do:
    assert services._fire(event.period, "threshold", 50) is None
    with pytest.raises(IntegrityError), transaction.atomic():
        AlertEvent.objects.create(budget=budget, period=event.period, kind="threshold", threshold=50,
                                  spent=1, amount=1, message="again")
    assert AlertEvent.objects.count() == 1
    # Test alerts are not limited: someone may test a channel twice.
    services.budget_test_alert(budget=budget, channel="in_app", actor=None)
    services.budget_test_alert(budget=budget, channel="in_app", actor=None)
    assert AlertEvent.objects.filter(kind="test").count() == 2


def test_no_alert_again_after_a_re_run_of_the_sweep(db: None, people: dict[str, User]) -> None:
    model = make_model()
    make_budget(amount=Decimal(1))
    spend(model, "0.9")

    first = services.budgets_sweep()
    assert sorted(e.threshold for e in first.fired) == [50, 80]
    for _ in range(3):  # a restarted beat, or two beats at once by mistake
        assert services.budgets_sweep().fired == []
    assert AlertEvent.objects.count() == 2
    assert Notification.objects.filter(user=people["finance"]).count() == 1


def test_the_forecast_waits_for_a_quarter_of_the_period_and_fires_once(db: None, settings: object) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    model = make_model()
    make_budget(amount=Decimal(100), thresholds=[], forecast=True)
    spend(model, "30", when=local(2025, 5, 2, 9, 0))

    # 8 May, noon: 7.5 of 31 days, under a quarter; $30 so far would project $124, but it is too early.
    assert services.budgets_sweep(now=local(2025, 5, 8, 12, 0)).fired == []
    # 9 May, midnight: 8 of 31 days; $30 projects $116.25 by the end of May.
    [event] = services.budgets_sweep(now=local(2025, 5, 9, 0, 0)).fired
    assert (event.kind, event.projected) == ("forecast", Decimal("116.25"))
    assert event.message == ("Budget “Team” (every call) is on course to spend $116.25 in May 2025, above its "
                             "$100.00: $30.00 spent so far.")
    assert services.budgets_sweep(now=local(2025, 5, 20, 0, 0)).fired == []


def test_no_forecast_when_the_run_rate_stays_under_or_spend_is_already_over(db: None, settings: object) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    model = make_model()
    under = make_budget("Under", amount=Decimal(100), thresholds=[], forecast=True)
    over = make_budget("Over", amount=Decimal(10), thresholds=[], forecast=True)
    spend(model, "20", when=local(2025, 5, 2, 9, 0))
    # Half way through May: $20 projects $40, under Under's $100; Over is already past its $10 (the
    # thresholds say that, not a forecast).
    assert services.budgets_sweep(now=local(2025, 5, 16, 12, 0)).fired == []
    assert services.projected_spend(period_of(under, local(2025, 5, 16)), local(2025, 5, 16, 12, 0)) == Decimal(40)
    assert not AlertEvent.objects.filter(budget=over).exists()


def test_usage_records_dispatch_evaluation_when_they_commit(db: None, people: dict[str, User],
                                                            django_capture_on_commit_callbacks: Callable) -> None:
    model = make_model()
    make_budget(amount=Decimal(1), thresholds=[50])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        spend(model, "0.2")
    assert len(callbacks) == 1 and not AlertEvent.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        spend(model, "0.4")
    assert list(AlertEvent.objects.values_list("threshold", flat=True)) == [50]
    # A free call adds nothing and asks for no evaluation.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        spend(model, "0")
    assert callbacks == []


@pytest.mark.skipif(not ON_POSTGRESQL, reason=SQLITE_REASON)
@pytest.mark.django_db(transaction=True)
def test_exactly_once_under_concurrent_usage_records(make_user: Callable[..., User]) -> None:
    ensure_role_groups()
    finance = make_user("finance")
    model = make_model()
    budget = make_budget(amount=Decimal(1), thresholds=[10, 20, 30, 40, 50, 60, 70, 80, 90, 100], forecast=False)
    writers, each = 16, 5
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            start.wait()
            for _ in range(each):
                # Each record commits on its own and, eagerly, evaluates the period in this thread.
                spend(model, "0.0125")
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert period_of(budget).spent == Decimal("1.0000")  # 80 x $0.0125
    events = AlertEvent.objects.filter(budget=budget)
    assert sorted(events.values_list("threshold", flat=True)) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    notified = events.filter(notified=True).count()
    assert Notification.objects.filter(user=finance).count() == notified == Delivery.objects.count()
    # And the sweep afterwards finds nothing left to fire.
    assert services.budgets_sweep(now=timezone.now() + timedelta(seconds=1)).fired == []


def test_the_beat_schedule_runs_the_sweep_every_minute() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["budgets-sweep"]
    assert entry == {"task": "budgets.tasks.budgets_sweep", "schedule": 60}
    assert entry["task"] in app.tasks
