"""What the reconciliation pages show: per provider a month's strip of days and its totals, and one day's
models side by side."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum

from providers.models import Model, Provider

from . import reports
from .models import REPORTING_KINDS, Comparison, DayCheck, ReportingCredential

SETTLED = (DayCheck.State.MATCH, DayCheck.State.DRIFT)


@dataclass
class Day:
    day: date
    state: str  # a DayCheck state, or "none" (never looked at) or "open" (today, or in the future)
    label: str
    check: DayCheck | None


@dataclass
class ProviderMonth:
    provider: Provider
    credential: ReportingCredential | None
    days: list[Day]
    ledger_total: Decimal
    provider_total: Decimal | None
    checked_days: int
    drift_days: int
    cost_scope: str


def month_of(text: str | None, today: date) -> date:
    """The first day of the month asked for ("2026-11"), or of this month for anything else."""
    try:
        year, month = (int(part) for part in (text or "").split("-"))
        return date(year, month, 1)
    except ValueError:
        return today.replace(day=1)


def month_end(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def providers_month(first: date, now: datetime) -> list[ProviderMonth]:
    today = now.astimezone(UTC).date()
    end = month_end(first)
    providers = (Provider.objects.filter(kind__in=REPORTING_KINDS, archived_at__isnull=True)
                 .select_related("reporting").order_by("name"))
    result = []
    for provider in providers:
        credential = getattr(provider, "reporting", None)  # RelatedObjectDoesNotExist is an AttributeError
        checks = {c.day: c for c in DayCheck.objects.filter(provider=provider, day__gte=first, day__lt=end)}
        days = []
        day = first
        while day < end:
            check = checks.get(day)
            if day >= today:
                state, label = "open", "open"
            elif check is None:
                state, label = "none", "never checked"
            else:
                state, label = check.state, check.get_state_display().lower()
            days.append(Day(day, state, label, check))
            day += timedelta(days=1)
        totals = DayCheck.objects.filter(provider=provider, day__gte=first, day__lt=end, state__in=SETTLED).aggregate(
            ledger=Sum("ledger_cost"), theirs=Sum("provider_cost"), days=Count("pk"),
            drift=Count("pk", filter=Q(state=DayCheck.State.DRIFT)))
        scope = next((c.cost_scope for c in sorted(checks.values(), key=lambda c: c.day, reverse=True)
                      if c.state in SETTLED), "")
        result.append(ProviderMonth(provider, credential, days, totals["ledger"] or Decimal(0), totals["theirs"],
                                    totals["days"], totals["drift"], scope))
    return result


@dataclass
class Row:
    comparison: Comparison
    model: Model | None


def day_rows(check: DayCheck) -> list[Row]:
    """The day's models, each with the catalog's model where there is one (for its price history and
    re-pricing)."""
    catalog = {reports.model_key(m.name): m for m in Model.objects.filter(provider_id=check.provider_id)}
    return [Row(row, catalog.get(reports.model_key(row.model_name))) for row in check.comparisons.all()]
