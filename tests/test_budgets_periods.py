"""Budget periods follow the calendar in settings.TIME_ZONE (here Europe/Berlin, UTC+1 in winter, +2 in
summer), not UTC: days at local midnight, weeks from Monday, months from the 1st, and the year's end. The
clock is controlled: usage records carry their time, and the sweep and reservations take `now`."""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from budgets import periods, services
from budgets.models import AlertEvent, BudgetPeriod
from tests.budgets_support import local, make_budget, make_model, period_of, spend


@pytest.fixture(autouse=True)
def berlin(settings: object) -> None:
    settings.TIME_ZONE = "Europe/Berlin"


@pytest.mark.parametrize(("period", "when", "start", "end"), [
    # 23:59 local is still the day; 22:30 UTC on 12 May is already 00:30 on 13 May in Berlin.
    ("daily", (2025, 5, 12, 23, 59), date(2025, 5, 12), date(2025, 5, 13)),
    ("daily", datetime(2025, 5, 12, 22, 30, tzinfo=UTC), date(2025, 5, 13), date(2025, 5, 14)),
    # Weeks start on Monday: the last minute of Sunday and the first of Monday are in different weeks.
    ("weekly", (2025, 5, 18, 23, 59), date(2025, 5, 12), date(2025, 5, 19)),
    ("weekly", (2025, 5, 19, 0, 0), date(2025, 5, 19), date(2025, 5, 26)),
    # Months start on the 1st at local midnight, which is 22:00 UTC the day before in summer.
    ("monthly", (2025, 5, 31, 23, 59), date(2025, 5, 1), date(2025, 6, 1)),
    ("monthly", datetime(2025, 5, 31, 22, 0, tzinfo=UTC), date(2025, 6, 1), date(2025, 7, 1)),
    ("monthly", (2024, 2, 29, 12, 0), date(2024, 2, 1), date(2024, 3, 1)),
    # The year's end: December rolls into January; the week around it spans both years.
    ("monthly", (2025, 12, 31, 23, 59, 59), date(2025, 12, 1), date(2026, 1, 1)),
    ("monthly", (2026, 1, 1, 0, 0), date(2026, 1, 1), date(2026, 2, 1)),
    ("daily", (2026, 1, 1, 0, 0), date(2026, 1, 1), date(2026, 1, 2)),
    ("weekly", (2026, 1, 1, 0, 0), date(2025, 12, 29), date(2026, 1, 5)),
    ("total", (2026, 1, 1, 0, 0), periods.ALL_TIME, None),
])
def test_spans_follow_the_local_calendar(period: str, when: datetime | tuple, start: date, end: date | None) -> None:
    # Tuples are wall-clock times in Berlin, made once the time zone is set.
    span = periods.span_at(period, when if isinstance(when, datetime) else local(*when))
    assert (span.start, span.end) == (start, end)


def test_elapsed_counts_real_hours_on_a_daylight_saving_day() -> None:
    # 30 March 2025: clocks jump from 02:00 to 03:00 in Berlin, so the day has 23 hours and noon is 11 in.
    span = periods.span_at("daily", local(2025, 3, 30, 12, 0))
    assert span.elapsed(local(2025, 3, 30, 12, 0)) == pytest.approx(11 / 23)
    month = periods.span_at("monthly", local(2025, 5, 16, 12, 0))
    assert month.elapsed(local(2025, 5, 16, 12, 0)) == pytest.approx(15.5 / 31)
    assert periods.span_at("total", local(2025, 5, 16)).elapsed(local(2025, 5, 16)) is None


def test_labels_and_previous_periods() -> None:
    week = periods.span_for("weekly", date(2026, 1, 1))
    assert week.label() == "week of 29 December 2025"
    assert week.previous().start == date(2025, 12, 22)
    assert periods.span_for("monthly", date(2026, 1, 15)).previous().label() == "December 2025"
    assert periods.span_for("daily", date(2026, 1, 1)).previous().label() == "31 December 2025"
    assert periods.span_for("total", date(2026, 1, 1)).previous() is None


def test_spend_lands_in_the_local_period_across_the_years_end(db: None) -> None:
    model = make_model()
    monthly = make_budget("Monthly", period="monthly", amount=Decimal(10), hard_limit=True)
    weekly = make_budget("Weekly", period="weekly", amount=Decimal(10), hard_limit=True)
    daily = make_budget("Daily", period="daily", amount=Decimal(10), hard_limit=True)
    # Both calls happen on 31 December in UTC; in Berlin the second is on New Year's Day.
    old_year = local(2025, 12, 31, 23, 30)
    new_year = local(2026, 1, 1, 0, 30)
    assert old_year.astimezone(UTC).date() == new_year.astimezone(UTC).date() == date(2025, 12, 31)
    spend(model, "0.25", when=old_year)
    spend(model, "0.5", when=new_year)

    assert period_of(monthly, old_year).spent == Decimal("0.25")
    assert period_of(monthly, new_year).spent == Decimal("0.5")
    assert period_of(daily, old_year).spent == Decimal("0.25")
    assert period_of(daily, new_year).spent == Decimal("0.5")
    # One week, Monday 29 December to Sunday 4 January, holds both.
    assert BudgetPeriod.objects.get(budget=weekly).spent == Decimal("0.75")
    assert BudgetPeriod.objects.get(budget=weekly).start == date(2025, 12, 29)


def test_the_sweep_rolls_over_at_local_midnight_on_monday_and_alerts_start_again(db: None) -> None:
    model = make_model()
    weekly = make_budget("Weekly", period="weekly", amount=Decimal(1), thresholds=[50])
    sunday_night = local(2025, 5, 18, 23, 0)
    spend(model, "0.6", when=sunday_night)
    assert [e.threshold for e in services.budgets_sweep(now=sunday_night).fired] == [50]

    # 23:30 UTC on Sunday is 01:30 on Monday in Berlin: a new week, with nothing spent and nothing fired.
    monday = datetime(2025, 5, 18, 23, 30, tzinfo=UTC)
    assert services.budgets_sweep(now=monday).fired == []
    new_week = period_of(weekly, monday)
    assert (new_week.start, new_week.spent) == (date(2025, 5, 19), Decimal(0))

    spend(model, "0.5", when=monday + timedelta(minutes=5))
    fired = services.budgets_sweep(now=monday + timedelta(minutes=10)).fired
    assert [(e.period.start, e.threshold) for e in fired] == [(date(2025, 5, 19), 50)]
    assert AlertEvent.objects.filter(budget=weekly).count() == 2


def test_a_reservation_is_held_in_the_period_of_the_calls_start(db: None) -> None:
    model = make_model()
    monthly = make_budget("Monthly", period="monthly", amount=Decimal(1), hard_limit=True)
    new_month = datetime(2025, 5, 31, 22, 5, tzinfo=UTC)  # 00:05 on 1 June in Berlin
    services.budget_reserve(request_id=uuid.uuid4(), provider=model.provider, model=model,
                            user=None, api_key=None, cost=Decimal("0.1"), ttl=timedelta(minutes=15), now=new_month)
    assert period_of(monthly, new_month).start == date(2025, 6, 1)
    assert period_of(monthly, new_month).reserved == Decimal("0.1")


def test_a_sentence_says_when_a_period_is_in_words_that_fit_it() -> None:
    day = date(2026, 1, 14)
    assert periods.span_for("daily", day).during() == "on 14 January 2026"
    assert periods.span_for("weekly", day).during() == "in the week of 12 January 2026"
    assert periods.span_for("monthly", day).during() == "in January 2026"
    assert periods.span_for("total", day).during() == "over all time"
