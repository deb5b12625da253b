"""Budget periods: days, Monday-to-Sunday weeks, calendar months, or all time, in the ledger's time zone.

Every period is a whole number of ledger days, so a period's spend is the sum of its days' rollup rows
(usage.DailyUsage, whose days are in the same time zone), and a period boundary is midnight local time.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.utils import timezone

from usage.services import day_start, ledger_timezone

DAILY, WEEKLY, MONTHLY, TOTAL = "daily", "weekly", "monthly", "total"
# The start a "total" budget's one period is filed under; it is never turned into a time.
ALL_TIME = date(1970, 1, 1)


# How a sentence puts each period's label: `Span.during`.
_DURING = {DAILY: "on {}", WEEKLY: "in the {}", MONTHLY: "in {}", TOTAL: "over {}"}


@dataclass(frozen=True)
class Span:
    """One period of a budget: days from `start` up to `end` (exclusive); `end` is None for all time."""

    period: str
    start: date
    end: date | None

    @property
    def starts_at(self) -> datetime | None:
        return None if self.period == TOTAL else day_start(self.start)

    @property
    def ends_at(self) -> datetime | None:
        return None if self.end is None else day_start(self.end)

    @property
    def days(self) -> int | None:
        return None if self.end is None else (self.end - self.start).days

    def elapsed(self, now: datetime) -> float | None:
        """How much of the period has passed at `now`, from 0 to 1; None for all time. Measured in real
        time, so a day with a daylight-saving change counts its 23 or 25 hours."""
        if self.starts_at is None or self.ends_at is None:
            return None
        # In UTC: Python subtracts two times of one zone as wall-clock times, which ignores the change.
        starts, ends, now = (moment.astimezone(UTC) for moment in (self.starts_at, self.ends_at, now))
        return min(1.0, max(0.0, (now - starts) / (ends - starts)))

    def label(self) -> str:
        """'12 May 2025', 'week of 12 May 2025', 'May 2025', 'all time'."""
        if self.period == DAILY:
            return f"{self.start.day} {self.start:%B %Y}"
        if self.period == WEEKLY:
            return f"week of {self.start.day} {self.start:%B %Y}"
        if self.period == MONTHLY:
            return f"{self.start:%B %Y}"
        return "all time"

    def during(self) -> str:
        """The period as a sentence says when: 'on 12 May 2025', 'in the week of 12 May 2025', 'in May 2025',
        'over all time'."""
        return _DURING[self.period].format(self.label())

    def previous(self) -> "Span | None":
        if self.period == TOTAL:
            return None
        return span_for(self.period, self.start - timedelta(days=1))


def local_day(when: datetime) -> date:
    return timezone.localtime(when, ledger_timezone()).date()


def span_for(period: str, day: date) -> Span:
    """The period of kind `period` that contains the ledger day `day`."""
    if period == DAILY:
        return Span(period, day, day + timedelta(days=1))
    if period == WEEKLY:
        monday = day - timedelta(days=day.weekday())
        return Span(period, monday, monday + timedelta(days=7))
    if period == MONTHLY:
        first = day.replace(day=1)
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return Span(period, first, following)
    if period == TOTAL:
        return Span(period, ALL_TIME, None)
    raise ValueError(f"Unknown budget period {period!r}")


def span_at(period: str, when: datetime) -> Span:
    """The period that contains the instant `when`."""
    return span_for(period, local_day(when))
