"""What a call does for budgets does not grow with the budgets: reserving on its hard limits and charging
them at the ledger write take the same statements for one covering budget as for twenty among a thousand
others, soft budgets take none per record, and alerts come from an evaluation after usage (debounced, off
the request) whose queries do not grow with the number of budgets either."""

import threading
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from budgets import evaluation, holds, services
from budgets.models import AlertEvent, Budget, BudgetPeriod
from providers import calls, hooks
from providers.adapters.base import ChatRequest, Message
from providers.models import Model
from tests.budgets_support import evaluated, held, make_budget, make_model, period_of, spend
from usage import services as usage_services

CALLER = calls.Caller(source="cli")


@pytest.fixture
def evaluation_later(settings: Any) -> Any:
    """The evaluation after usage is left to its timer (one counts as due already): what is measured is the
    call's own work."""
    settings.BUDGET_EVALUATE_SECONDS = 60
    evaluation._due[0] = time.monotonic() + 60
    yield
    evaluation._due[0] = 0.0


def _others(count: int) -> None:
    """`count` budgets that cover none of the calls here: one per person, half of them hard limits."""
    people = User.objects.bulk_create([User(email=f"other{n}@example.com") for n in range(count)])
    Budget.objects.bulk_create([
        Budget(name=f"Other {n}", scope=Budget.Scope.USER, user=person, amount=Decimal(5), hard_limit=n % 2 == 0)
        for n, person in enumerate(people)
    ])


def _call(model: Model) -> tuple[list[str], list[str]]:
    """One call's budget work, as the call path does it: the statements of its reservation (prepare) and of
    its record's write (the ledger's transaction, which charges it)."""
    record = calls.CallRecord()
    request = ChatRequest(model=f"{model.provider.name}/{model.name}", messages=(Message("user", "hi"),),
                          max_tokens=10)
    with CaptureQueriesContext(connection) as reserving:
        prepared = calls.prepare(request, caller=CALLER, record=record)
    assert prepared.refused is None
    with CaptureQueriesContext(connection) as charging:
        usage_services.usage_record_create(provider=model.provider, model=model, source="cli", status="ok",
                                           request_id=record.request_id, input_tokens=20, output_tokens=5)
    return [q["sql"] for q in reserving], [q["sql"] for q in charging]


def _budget_statements(sqls: list[str]) -> list[str]:
    return [sql for sql in sqls if "budgets_" in sql]


@pytest.mark.django_db(transaction=True)
def test_a_call_takes_the_same_statements_for_one_hard_limit_as_for_twenty_among_a_thousand(
        evaluation_later: None, database_holds: None) -> None:
    model = make_model()
    make_budget("Only", amount=Decimal(10), hard_limit=True)
    _call(model)  # the first call of the period opens its rows and keeps their ids
    one = _call(model)

    for n in range(19):
        make_budget(f"Also {n}", amount=Decimal(10), hard_limit=True)
    _others(1000)
    _call(model)
    twenty = _call(model)

    assert [len(sqls) for sqls in twenty] == [len(sqls) for sqls in one]
    reserving, charging = (_budget_statements(sqls) for sqls in twenty)
    # One conditional UPDATE of all twenty periods and one INSERT of their reservations; no look-up of the
    # periods (kept) nor of what the call already holds (its record knows).
    assert [sql.split()[0] for sql in reserving] == ["UPDATE", "INSERT"]
    # The reservations taken (DELETE ... RETURNING), and every period's counters in one UPDATE.
    assert [sql.split()[0] for sql in charging] == ["DELETE", "UPDATE"]
    if connection.vendor == "postgresql":  # each UPDATE locks its rows in id order first: no deadlock
        assert all("ORDER BY" in sql and "FOR UPDATE" in sql for sql in (reserving[0], charging[-1]))
    periods = BudgetPeriod.objects.filter(budget__hard_limit=True, budget__scope="global")
    assert periods.count() == 20
    # Four calls of 20 x $1 + 5 x $2 per 1M each: periods opened later counted the earlier calls from the ledger.
    assert {(p.spent, p.reserved) for p in periods} == {(Decimal("0.00012"), 0)}
    assert not held()


@pytest.mark.django_db(transaction=True)
def test_soft_budgets_take_no_statement_per_record(evaluation_later: None, database_holds: None) -> None:
    model = make_model()
    for n in range(10):
        make_budget(f"Soft {n}", amount=Decimal(1))
    _others(10)  # hard limits elsewhere: charging has reservations to look for
    _call(model)  # the budgets are cached from here on

    reserving, charging = _call(model)

    assert _budget_statements(reserving) == []
    # Only the batch's reservations are taken (hard limits exist; there are none); nothing for the ten soft
    # budgets.
    assert [sql.split()[0] for sql in _budget_statements(charging)] == ["DELETE"]
    assert not BudgetPeriod.objects.exists()


def _evaluation_queries(now: Any = None) -> int:
    with CaptureQueriesContext(connection) as queries:
        evaluation.budgets_evaluate(now=now)
    return len(queries)


def test_the_evaluation_of_a_thousand_budgets_takes_the_queries_of_ten(db: None) -> None:
    model = make_model()
    for n in range(10):
        make_budget(f"Global {n}", amount=Decimal(100), hard_limit=n < 5)
    person = User.objects.create(email="person@example.com")
    mine = make_budget("Mine", scope=Budget.Scope.USER, user=person, amount=Decimal(5))
    spend(model, "1", user=person)
    evaluation.budgets_evaluate()  # opens every period
    spend(model, "0.5", user=person)
    ten = _evaluation_queries()

    _others(999)
    first = _evaluation_queries()  # opens the thousand new periods, in bulk
    assert BudgetPeriod.objects.count() == 1010
    assert first <= 40
    spend(model, "0.5", user=person)
    thousand = _evaluation_queries()

    assert thousand == ten <= 10
    assert period_of(mine).spent == Decimal("2")  # its person's spend this month, from the ledger


def test_next_alert_at_follows_each_threshold(db: None) -> None:
    model = make_model()
    budget = make_budget(amount=Decimal(1), thresholds=[50, 80, 100])
    assert evaluated(budget).next_alert_at == Decimal("0.5")

    spend(model, "0.55")
    assert evaluated(budget).next_alert_at == Decimal("0.8")
    spend(model, "0.3")
    assert evaluated(budget).next_alert_at == Decimal("1")
    spend(model, "0.2")
    assert evaluated(budget).next_alert_at is None
    assert sorted(AlertEvent.objects.values_list("threshold", flat=True)) == [50, 80, 100]

    # A threshold added later is watched for from then on; it has been passed, so it fires at once.
    budget.thresholds = [50, 80, 90, 100]
    budget.save()
    _, fired = services.budget_evaluate(budget)
    assert [event.threshold for event in fired] == [90]
    assert period_of(budget).next_alert_at is None


def test_a_period_below_its_next_alert_is_not_looked_at_closer(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model()
    make_budget(amount=Decimal(1), thresholds=[50])
    looked: list[int] = []
    real = services._evaluate
    monkeypatch.setattr(services, "_evaluate", lambda period, now: looked.append(period.pk) or real(period, now))

    spend(model, "0.4")
    assert evaluation.budgets_evaluate() == [] and looked == []
    spend(model, "0.2")
    [event] = evaluation.budgets_evaluate()
    assert event.threshold == 50 and len(looked) == 1
    assert evaluation.budgets_evaluate() == [] and len(looked) == 1  # none left: nothing to look at


@pytest.mark.django_db(transaction=True)
def test_alerts_fire_once_from_a_debounced_evaluation_off_the_request(settings: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings.BUDGET_EVALUATE_SECONDS = 1.5  # a margin for five commits on a busy machine
    evaluation._due[0] = 0.0
    model = make_model()
    budget = make_budget(amount=Decimal(1), thresholds=[10, 20, 30])
    runs: list[str] = []
    real = evaluation.budgets_evaluate

    def counted(**kwargs: Any) -> list[AlertEvent]:
        runs.append(threading.current_thread().name)
        return real(**kwargs)

    monkeypatch.setattr(evaluation, "budgets_evaluate", counted)
    try:
        started = time.monotonic()
        for _ in range(5):
            spend(model, "0.07")  # five commits inside the delay: one evaluation for all of them
        assert not AlertEvent.objects.exists()  # nothing ran in the committing thread
        deadline = time.monotonic() + 10
        while AlertEvent.objects.count() < 3:
            assert time.monotonic() < deadline, "the evaluation did not come"
            time.sleep(0.05)
        assert time.monotonic() - started >= 1.5
        time.sleep(0.3)
        assert len(runs) == 1 and runs[0] != threading.current_thread().name
        assert sorted(AlertEvent.objects.filter(budget=budget).values_list("threshold", flat=True)) == [10, 20, 30]
        assert evaluated(budget).spent == Decimal("0.35")
    finally:
        evaluation._due[0] = 0.0


@pytest.mark.django_db(transaction=True)
def test_a_period_opened_in_a_transaction_that_rolled_back_is_not_kept(evaluation_later: None) -> None:
    model = make_model()
    budget = make_budget(amount=Decimal(1), hard_limit=True)
    with pytest.raises(RuntimeError), transaction.atomic():
        spend(model, "0.1")  # opens the month's period in this transaction...
        raise RuntimeError("...which then fails")
    assert not BudgetPeriod.objects.exists()
    assert holds._cached().period_ids == {}  # the id of the row that never was is not cached

    _call(model)

    assert (period_of(budget).spent, period_of(budget).reserved) == (Decimal("0.00003"), 0)


@pytest.mark.django_db(transaction=True)
def test_a_kept_period_deleted_by_hand_is_found_again(evaluation_later: None, database_holds: None) -> None:
    model = make_model()
    budget = make_budget(amount=Decimal(1), hard_limit=True)
    _call(model)
    BudgetPeriod.objects.filter(budget=budget).delete()  # not a budget's change: the kept ids stay

    _call(model)

    assert period_of(budget).reserved == 0 and not held()
    assert period_of(budget).spent == Decimal("0.00006")  # made again from the ledger: both calls


def test_budgets_register_themselves_with_the_call_path_and_the_ledger() -> None:
    """usage and providers.calls reach budgets through usage.signals.records_written and providers.hooks,
    which budgets fills in its AppConfig.ready (tests/test_layers.py checks that neither imports budgets)."""
    assert holds.hard_limits in hooks.limits()
    assert any(receiver == evaluation.records_written for receiver in _receivers())


def _receivers() -> list[Any]:
    from usage.signals import records_written

    return [entry[1]() for entry in records_written.receivers]  # (key, weak reference, is async)


def test_a_record_written_after_its_period_ended_still_fires_that_period_s_alert(db: None) -> None:
    """A long call started before midnight is recorded after it: its record counts in yesterday's period,
    which the evaluation still looks at for a while after it ended."""
    model = make_model()
    budget = make_budget("Daily watch", amount=Decimal(1), period="daily", thresholds=[50])
    now = timezone.now()
    today = budget.span_at(now)
    just_before = today.starts_at - timedelta(seconds=30)
    evaluation.budgets_evaluate(now=just_before)  # the evening's evaluation: nothing spent
    assert not AlertEvent.objects.exists()

    spend(model, "0.6", when=just_before)  # written after midnight, counted in yesterday's period

    evaluation.budgets_evaluate(now=today.starts_at + timedelta(minutes=1))
    (event,) = AlertEvent.objects.all()
    assert (event.period.start, event.threshold) == (budget.span_at(just_before).start, 50)
    # Later than the look-back, yesterday is left alone.
    assert evaluation.budgets_evaluate(now=today.starts_at + evaluation.LATE_RECORDS * 2) == []
