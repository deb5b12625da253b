"""A real Celery worker against Redis, as in the PostgreSQL + Redis CI run: usage records dispatch alert
evaluation on commit, and a webhook that fails twice is retried with exponential backoff. The worker runs
in this process (celery.contrib.testing), on a thread with its own database connection, so it sees the
test database. Skipped on the embedded default, where tasks run inline (the other budget tests)."""

import os
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker

from aspweb.celery import app
from budgets import evaluation, services, tasks
from budgets.models import AlertEvent, Budget, Delivery, Notification
from tests.budgets_support import allow_loopback_webhooks, ensure_role_groups, make_budget, make_model, receiver, spend

pytestmark = [
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis: set REDIS_URL (the embedded default "
                                                               "runs tasks inline, which the other tests cover)"),
    pytest.mark.django_db(transaction=True),
]


def wait_for(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the worker did not get there in time"
        time.sleep(0.1)


@pytest.fixture
def worker(settings: object) -> Iterator[None]:
    settings.CELERY_TASK_ALWAYS_EAGER = False  # dispatching sends to Redis now
    settings.ALERT_RETRY_BASE_SECONDS = 1
    settings.BUDGET_EVALUATE_SECONDS = 0.5  # alerts after usage through the debounced task, as in production
    evaluation._due[0] = 0.0
    allow_loopback_webhooks(settings)
    assert app.conf.task_always_eager is False
    assert app.conf.broker_url.startswith("redis://")
    app.control.purge()  # nothing left over from an earlier run
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        yield


def test_a_usage_record_gets_its_alert_from_the_worker(worker: None, make_user: Callable) -> None:
    ensure_role_groups()
    finance = make_user("finance")
    model = make_model()
    budget = make_budget(amount=Decimal(1), thresholds=[50])

    spend(model, "0.6")  # commits, and sends budgets_evaluate to Redis, to run half a second later
    assert not AlertEvent.objects.exists()  # not evaluated in the committing thread

    wait_for(lambda: AlertEvent.objects.filter(budget=budget, threshold=50).exists())
    wait_for(lambda: Notification.objects.filter(user=finance).exists())
    assert AlertEvent.objects.count() == 1


def test_records_in_a_burst_send_one_evaluation_and_its_alerts_fire_once(worker: None, settings: object,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    settings.BUDGET_EVALUATE_SECONDS = 2
    sent: list[dict] = []
    send = tasks.budgets_evaluate.apply_async

    def counted(*args: object, **kwargs: object) -> object:
        sent.append(kwargs)
        return send(*args, **kwargs)

    monkeypatch.setattr(tasks.budgets_evaluate, "apply_async", counted)
    model = make_model()
    budget = make_budget(amount=Decimal(1), thresholds=[20, 40, 60])
    for _ in range(7):
        spend(model, "0.1")

    wait_for(lambda: AlertEvent.objects.filter(budget=budget).count() == 3)
    assert sent == [{"countdown": 2.0}]
    time.sleep(0.5)
    assert sorted(AlertEvent.objects.filter(budget=budget).values_list("threshold", flat=True)) == [20, 40, 60]


def test_a_webhook_failing_twice_is_retried_with_backoff_then_sent(worker: None) -> None:
    model = make_model()
    with receiver([500, 500, 200]) as hook:
        make_budget(amount=Decimal(1), thresholds=[50], webhook_url=hook.url)
        spend(model, "0.6")

        wait_for(lambda: Delivery.objects.filter(channel="webhook", status="sent").exists())

    delivery = Delivery.objects.get(channel="webhook")
    assert delivery.attempts == 3
    assert len(hook.posts) == 3
    first_gap, second_gap = hook.times[1] - hook.times[0], hook.times[2] - hook.times[1]
    # ALERT_RETRY_BASE_SECONDS=1: the worker waited about 1 s, then about 2 s.
    assert 0.9 <= first_gap < 1.9 <= second_gap < 4


def test_the_sweep_task_runs_on_the_worker(worker: None) -> None:
    model = make_model()
    spend(model, "0.9")
    budget = make_budget(amount=Decimal(1), thresholds=[80])  # made after the spend: only the sweep sees it

    tasks.budgets_sweep.delay()

    wait_for(lambda: AlertEvent.objects.filter(budget=budget, threshold=80).exists())


def test_a_budget_added_below_current_spend_gets_its_alert_from_the_worker(worker: None,
                                                                            make_user: Callable) -> None:
    ensure_role_groups()
    finance = make_user("finance")
    spend(make_model(), "0.6")
    budget = services.budget_save(budget=Budget(name="Late", amount=Decimal(1), thresholds=[25, 50, 80]),
                                  actor=finance)  # commits, and sends budget_evaluate to Redis

    wait_for(lambda: Notification.objects.filter(user=finance).exists())
    assert list(AlertEvent.objects.filter(budget=budget).order_by("threshold")
                .values_list("threshold", "notified")) == [(25, False), (50, True)]
    assert Notification.objects.get(user=finance).title == "Budget Late: 50% reached"
