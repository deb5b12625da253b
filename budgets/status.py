"""What the budget pages show: each budget's current period in numbers and as a small SVG chart (drawn by the
template from the coordinates here; no charting library), and the previous periods' totals."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import TruncHour, TruncMonth
from django.utils import timezone

from usage.models import DailyUsage, UsageRecord
from usage.services import ledger_timezone

from . import periods, services
from .models import AlertEvent, Budget, BudgetPeriod

CHART_WIDTH, CHART_HEIGHT = 300, 80
PREVIOUS_PERIODS = {periods.DAILY: 7, periods.WEEKLY: 6, periods.MONTHLY: 6}


@dataclass
class Chart:
    """Cumulative spend across the period: the line so far, the run-rate's projection to the period's end,
    and the amount with its thresholds as horizontal lines. Coordinates are in a CHART_WIDTH x CHART_HEIGHT
    box with y growing downwards."""

    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    points: str = ""
    now_x: float = 0.0
    now_y: float = float(CHART_HEIGHT)
    projection_y: float | None = None
    limit_y: float = 0.0
    # (y, percent, amount) of each threshold's line but 100% (the amount's own line); the amount titles it.
    threshold_lines: list[tuple[float, int, Decimal]] = field(default_factory=list)
    start_label: str = ""
    end_label: str = ""


@dataclass
class BudgetStatus:
    budget: Budget
    span: periods.Span
    spent: Decimal
    reserved: Decimal
    projected: Decimal | None
    chart: Chart
    previous: list[tuple[str, Decimal]]
    fired: list[int]

    @property
    def remaining(self) -> Decimal:
        return max(self.budget.amount - self.spent - self.reserved, Decimal(0))

    @property
    def percent(self) -> Decimal:
        return (self.spent * 100 / self.budget.amount).quantize(Decimal("0.1"))

    @property
    def percent_label(self) -> str:
        """The percent used as people read it: "66.7%", "1,200.0%", and "under 0.1%" for a spend too small
        to show at one decimal, which is not nothing."""
        percent = self.percent
        if self.spent > 0 and percent < Decimal("0.1"):
            return "under 0.1%"
        return f"{percent:,.1f}%"

    @property
    def thresholds(self) -> list[tuple[int, Decimal, bool]]:
        """Each threshold with the spend that reaches it and whether it fired this period."""
        amount = self.budget.amount
        return [(t, amount * t / 100, t in self.fired) for t in sorted(set(self.budget.thresholds))]

    @property
    def bar_percent(self) -> Decimal:
        return min(self.percent, Decimal(100))

    @property
    def meter_low(self) -> int:
        """Where the meter turns from fine to warning: the lowest threshold."""
        return min(self.budget.thresholds, default=100)

    @property
    def level(self) -> str:
        """ok, warn (past the lowest threshold or projected over) or over (at or past the amount)."""
        if self.spent >= self.budget.amount:
            return "over"
        lowest = min(self.budget.thresholds, default=None)
        if (lowest is not None and self.percent >= lowest) or (self.projected or 0) > self.budget.amount:
            return "warn"
        return "ok"


def budget_status(budget: Budget, *, now: datetime | None = None, history: bool = True) -> BudgetStatus:
    now = now or timezone.now()
    span = budget.span_at(now)
    # Read only: a page view does not open the period's row; the ledger says the same until a call does. A
    # soft budget's spend is read from the ledger (its rollups, written with each record): its period row
    # follows the ledger only at each evaluation, seconds later. A hard limit's row counts every record as
    # it is written.
    period = BudgetPeriod.objects.filter(budget=budget, start=span.start).first()
    if period is None:
        period = BudgetPeriod(budget=budget, start=span.start, end=span.end, spent=services.ledger_spend(budget, span))
    elif not budget.hard_limit:
        period.spent = services.ledger_spend(budget, span)
    fired = [] if period.pk is None else sorted(
        AlertEvent.objects.filter(period=period, kind=AlertEvent.Kind.THRESHOLD).values_list("threshold", flat=True))
    projected = services.projected_spend(period, now) if span.end is not None else None
    return BudgetStatus(
        budget=budget, span=span, spent=period.spent,
        reserved=services.period_reserved(period) if period.pk is not None else Decimal(0), projected=projected,
        chart=_chart(budget, span, now, projected), previous=_previous(budget, span) if history else [],
        fired=fired,
    )


def _buckets(budget: Budget, span: periods.Span, now: datetime) -> tuple[list[Decimal], int]:
    """Spend per bucket of the period (hours of a day, days of a week or month, months of all time) up to
    now, and how many buckets the whole period has."""
    tz = ledger_timezone()
    if span.period == periods.DAILY:
        rows = (UsageRecord.objects.filter(budget.ledger_filter(), created_at__gte=span.starts_at,
                                           created_at__lt=span.ends_at)
                .annotate(hour=TruncHour("created_at", tzinfo=tz)).values("hour").annotate(cost=Sum("cost")))
        by_hour = {timezone.localtime(row["hour"], tz).hour: row["cost"] for row in rows}
        hours = round((span.ends_at - span.starts_at).total_seconds() / 3600)
        elapsed = min(hours, int((now - span.starts_at).total_seconds() // 3600) + 1)
        return [by_hour.get(hour, Decimal(0)) for hour in range(elapsed)], hours
    days = DailyUsage.objects.filter(budget.ledger_filter())
    if span.period == periods.TOTAL:
        rows = days.annotate(month=TruncMonth("day")).values("month").annotate(cost=Sum("cost")).order_by("month")
        by_month = {row["month"]: row["cost"] for row in rows}
        today = periods.local_day(now)
        month = min(by_month, default=today.replace(day=1))
        months = []
        while month <= today:
            months.append(by_month.get(month, Decimal(0)))
            month = periods.span_for(periods.MONTHLY, month).end
        return months, len(months)
    rows = days.filter(day__gte=span.start, day__lt=span.end).values("day").annotate(cost=Sum("cost"))
    by_day = {row["day"]: row["cost"] for row in rows}
    elapsed = min(span.days, (periods.local_day(now) - span.start).days + 1)
    return [by_day.get(span.start + timedelta(days=n), Decimal(0)) for n in range(elapsed)], span.days


def _chart(budget: Budget, span: periods.Span, now: datetime, projected: Decimal | None) -> Chart:
    costs, slots = _buckets(budget, span, now)
    cumulative, total = [Decimal(0)], Decimal(0)
    for cost in costs:
        total += cost
        cumulative.append(total)
    top = max(budget.amount, total, projected or 0) * Decimal("1.1")

    def y(value: Decimal) -> float:
        return round(CHART_HEIGHT - float(value / top) * CHART_HEIGHT, 1)

    step = CHART_WIDTH / max(slots, 1)
    points = " ".join(f"{round(i * step, 1)},{y(value)}" for i, value in enumerate(cumulative))
    chart = Chart(points=points, now_x=round((len(cumulative) - 1) * step, 1), now_y=y(total),
                  limit_y=y(budget.amount), projection_y=y(projected) if projected is not None else None,
                  threshold_lines=[(y(budget.amount * t / 100), t, budget.amount * t / 100)
                                   for t in sorted(set(budget.thresholds)) if t != 100])
    chart.start_label, chart.end_label = _edge_labels(span, now)
    return chart


def _edge_labels(span: periods.Span, now: datetime) -> tuple[str, str]:
    if span.period == periods.DAILY:
        return "00:00", "24:00"
    if span.period == periods.TOTAL:
        return "first month", "now"
    last = span.end - timedelta(days=1)
    return f"{span.start.day} {span.start:%b}", f"{last.day} {last:%b}"


def _previous(budget: Budget, span: periods.Span) -> list[tuple[str, Decimal]]:
    """The totals of the periods before this one, newest first, from the daily rollup."""
    count = PREVIOUS_PERIODS.get(span.period, 0)
    spans: list[periods.Span] = []
    before = span.previous()
    while before is not None and len(spans) < count:
        spans.append(before)
        before = before.previous()
    if not spans:
        return []
    rows = (DailyUsage.objects.filter(budget.ledger_filter(), day__gte=spans[-1].start, day__lt=span.start)
            .values("day").annotate(cost=Sum("cost")))
    totals: dict[date, Decimal] = {s.start: Decimal(0) for s in spans}
    for row in rows:
        totals[periods.span_for(span.period, row["day"]).start] += row["cost"]
    return [(s.label(), totals[s.start]) for s in spans]
