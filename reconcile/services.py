"""Reconciliation: fetch a provider's report for a completed UTC day, compare it with the ledger per model,
store the verdicts, and alert once per provider and day on drift.

A day is compared only once it has closed and settled (RECONCILE_SETTLE_HOURS past midnight UTC): the
providers' reports of an open day are partial. A report that cannot be fetched for a reason that passes
(down, rate-limited) leaves the day "not checked yet" for the next run; a wrong or revoked key says so.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, Sum, Window
from django.db.models.functions import Mod, RowNumber
from django.utils import timezone

from accounts.audit import audit_log
from providers import crypto
from providers.models import Provider
from usage.models import UsageRecord

from . import alerts, reports
from .models import OWN_KEY_KINDS, REPORTING_KINDS, Comparison, DayCheck, ReportingCredential

logger = logging.getLogger(__name__)

TOKEN_CLASSES = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
                 "output_tokens")
# Providers bill in cents: a smaller difference of cost is rounding, whatever the share.
COST_FLOOR = Decimal("0.01")


# -- credentials ------------------------------------------------------------------------------------


def credential_save(*, provider: Provider, actor: Any, admin_key: str = "", **fields: Any) -> ReportingCredential:
    """Create or change a provider's reporting credential; a blank `admin_key` keeps the stored one (for
    OWN_KEY_KINDS, none stored means the provider's own API key reads the reports)."""
    if provider.kind not in REPORTING_KINDS:
        raise ValueError(f"aspweb cannot read {provider.get_kind_display()} usage reports.")
    credential = ReportingCredential.objects.filter(provider=provider).first()
    created = credential is None
    if created:
        if not admin_key and provider.kind not in OWN_KEY_KINDS:
            raise ValueError("Enter the admin key.")
        credential = ReportingCredential(provider=provider)
    if admin_key:
        credential.admin_key = admin_key
        credential.last_error = ""
    for name, value in fields.items():
        setattr(credential, name, value)
    credential.save()
    audit_log(actor, "reconcile.credential_created" if created else "reconcile.credential_changed", provider,
              key_changed=bool(admin_key))
    return credential


def credential_delete(*, credential: ReportingCredential, actor: Any) -> None:
    provider = credential.provider
    credential.delete()
    audit_log(actor, "reconcile.credential_deleted", provider)


# -- days -------------------------------------------------------------------------------------------


def day_closed(day: date, now: datetime | None = None) -> bool:
    """Whether the providers' report of `day` (UTC) is complete enough to compare."""
    now = now or timezone.now()
    end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return now >= end + timedelta(hours=settings.RECONCILE_SETTLE_HOURS)


def days(since: date, until: date) -> Iterator[date]:
    day = since
    while day <= until:
        yield day
        day += timedelta(days=1)


def ledger_figures(provider: Provider, day: date, upstream_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The ledger's day for one provider, per model key: what reached the provider (answers from aspweb's
    own response cache did not), summed in the database. With `upstream_ids`, only those calls, each one
    request whatever its status (the calls looked up at OpenRouter: each is a generation it may bill)."""
    records = _day_records(provider, day)
    if upstream_ids is None:
        requests = Count("pk", filter=~Q(status=UsageRecord.Status.ERROR))
    else:
        records, requests = records.filter(upstream_id__in=upstream_ids), Count("pk")
    rows = (records.values("model_name")
            .annotate(requests=requests, cost=Sum("cost"), **{name: Sum(name) for name in TOKEN_CLASSES}))
    figures: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = reports.model_key(row["model_name"])
        into = figures.setdefault(key, {"name": row["model_name"], "requests": 0, "cost": Decimal(0),
                                        **dict.fromkeys(TOKEN_CLASSES, 0)})
        into["requests"] += row["requests"]
        into["cost"] += row["cost"] or Decimal(0)
        for name in TOKEN_CLASSES:
            into[name] += row[name] or 0
    return figures


def within(a: Decimal | int, b: Decimal | int, tolerance_percent: Decimal, floor: Decimal | int = 0) -> bool:
    """Whether two figures agree: the difference is at most the tolerance's share of the larger, or the floor."""
    difference = abs(Decimal(a) - Decimal(b))
    return difference <= floor or difference <= max(abs(Decimal(a)), abs(Decimal(b))) * tolerance_percent / 100


@dataclass
class Verdict:
    status: str
    price_drift: bool = False


def judge(ledger: dict[str, Any] | None, provider: reports.Figures | None, tolerance: Decimal) -> Verdict:
    """One model's day: matches, drifts, or is missing on one side."""
    ledger_used = bool(ledger) and any(ledger[name] for name in TOKEN_CLASSES)
    provider_used = provider is not None and any(getattr(provider, name) for name in TOKEN_CLASSES)
    if provider_used and not ledger_used:
        return Verdict(Comparison.Status.MISSING_IN_LEDGER)
    if ledger_used and not provider_used:
        return Verdict(Comparison.Status.MISSING_AT_PROVIDER)
    if not ledger_used:
        # No tokens on either side: a cost alone (a fee the ledger cannot see) is all there is to compare.
        cost_ok = provider is None or provider.cost is None or within(
            ledger["cost"] if ledger else 0, provider.cost, tolerance, COST_FLOOR)
        return Verdict(Comparison.Status.MATCH if cost_ok else Comparison.Status.MISSING_IN_LEDGER)
    tokens_ok = all(within(ledger[name], getattr(provider, name), tolerance) for name in TOKEN_CLASSES)
    if provider.requests is not None:
        tokens_ok = tokens_ok and within(ledger["requests"], provider.requests, tolerance)
    cost_ok = provider.cost is None or within(ledger["cost"], provider.cost, tolerance, COST_FLOOR)
    if tokens_ok and cost_ok:
        return Verdict(Comparison.Status.MATCH)
    return Verdict(Comparison.Status.DRIFT, price_drift=tokens_ok and not cost_ok)


def reconcile(*, provider: Provider, since: date, until: date, now: datetime | None = None) -> list[DayCheck]:
    """Check a provider's days from `since` to `until` (UTC, both included) and store the verdicts, one row
    per model and day however often it runs. The closed days' reports are fetched in one run of pages;
    open days are left "not checked yet"."""
    now = now or timezone.now()
    checks = {day: DayCheck.objects.get_or_create(provider=provider, day=day)[0] for day in days(since, until)}
    credential = ReportingCredential.objects.filter(provider=provider).first()
    if credential is None:
        return [_unchecked(check, DayCheck.State.FAILED, "No reporting key: an admin adds one in the provider's "
                                                         "reporting key settings.") for check in checks.values()]
    closed = [day for day in checks if day_closed(day, now)]
    for day in checks:
        if day not in closed:
            _unchecked(checks[day], DayCheck.State.PENDING, "The day is still open: its report is not complete.")
    if not closed:
        return list(checks.values())
    looked_up: dict[date, list[str]] = {}
    try:
        if provider.kind == "openrouter":
            fetched, looked_up = _openrouter(provider, credential, closed)
        else:
            fetched = reports.fetch(reports.Credential(
                kind=provider.kind, base_url=provider.effective_base_url,
                admin_key=crypto.reveal(credential.admin_key), api_key_id=credential.api_key_id,
                project_id=credential.project_id), min(closed), max(closed))
    except reports.ReportError as exc:
        state = DayCheck.State.PENDING if exc.retryable else DayCheck.State.FAILED
        ReportingCredential.objects.filter(pk=credential.pk).update(last_error=str(exc)[:300])
        logger.warning("Reconciliation of %s from %s to %s: %s", provider.name, min(closed), max(closed), exc)
        for day in closed:
            _unchecked(checks[day], state, str(exc))
        return list(checks.values())
    if credential.last_error:
        ReportingCredential.objects.filter(pk=credential.pk).update(last_error="")
    for day in closed:
        checks[day] = _compare(checks[day], fetched[day], credential, now, looked_up.get(day))
    return list(checks.values())


def reconcile_day(*, provider: Provider, day: date, now: datetime | None = None) -> DayCheck:
    return reconcile(provider=provider, since=day, until=day, now=now)[0]


def _openrouter(provider: Provider, credential: ReportingCredential,
                days: list[date]) -> tuple[dict[date, reports.Report], dict[date, list[str]]]:
    """OpenRouter's side of each day: the generations of aspweb's calls that carry OpenRouter's id, at most
    RECONCILE_OPENROUTER_LOOKUPS a day (an even sample of the day beyond that, and the ledger's side is then the
    same sample); with the reporting key where one is stored, else the provider's own API key. Also the ids
    looked up per day, which the ledger's side is restricted to."""
    key = crypto.reveal(credential.admin_key) or crypto.reveal(provider.api_key)
    calls: dict[date, list[reports.LedgerCall]] = {}
    notes: dict[date, list[str]] = {}
    bound = max(settings.RECONCILE_OPENROUTER_LOOKUPS, 1)
    for day in days:
        records = _day_records(provider, day)
        named = records.exclude(upstream_id="")
        total = named.count()
        notes[day] = []
        if total > bound:
            # Every step-th call in the day's order, picked in the database: a busy day's ids are not all read.
            step = -(-total // bound)
            named = named.alias(n=Window(RowNumber(), order_by=[F("created_at").asc(), F("pk").asc()])).alias(
                nth=Mod(F("n") - 1, step)).filter(nth=0)
        found = list(named.order_by("created_at", "pk").values_list(
            "upstream_id", "model_name", "cache_write_tokens", "cache_write_1h_tokens"))
        if total > bound:
            notes[day].append(f"a sample of {len(found)} of the day's {total} calls was looked up")
        calls[day] = [reports.LedgerCall(*row) for row in found]
        # Calls that used tokens without an answer's id (refused or cut before OpenRouter named the
        # generation) cannot be looked up.
        nameless = records.filter(upstream_id="").exclude(
            input_tokens=0, cache_read_tokens=0, cache_write_tokens=0, cache_write_1h_tokens=0,
            output_tokens=0).count()
        if nameless:
            notes[day].append(f"{nameless} call{'s' if nameless != 1 else ''} without OpenRouter's id could "
                              "not be looked up")
    fetched = reports.openrouter(reports.Credential(kind=provider.kind, base_url=provider.effective_base_url,
                                                    admin_key=key), calls)
    for day, report in fetched.items():
        said = [report.note] if report.note else []
        report.note = "; ".join(said + notes[day])
    return fetched, {day: [call.upstream_id for call in day_calls] for day, day_calls in calls.items()}


def _day_records(provider: Provider, day: date) -> Any:
    """The provider's calls of a day that reached it (answers from aspweb's own response cache did not)."""
    start, end = reports.day_bounds(day)
    return UsageRecord.objects.filter(provider=provider, created_at__gte=start, created_at__lt=end, cached=False)


def _compare(check: DayCheck, report: reports.Report, credential: ReportingCredential, now: datetime,
             upstream_ids: list[str] | None = None) -> DayCheck:
    ledger = ledger_figures(check.provider, check.day, upstream_ids)
    tolerance = credential.tolerance_percent
    rows = []
    for key in sorted(set(ledger) | set(report.models)):
        mine, theirs = ledger.get(key), report.models.get(key)
        verdict = judge(mine, theirs, tolerance)
        name = mine["name"] if mine else sorted(theirs.names)[0]
        row = Comparison(model_name=name[:200], status=verdict.status, price_drift=verdict.price_drift,
                         provider_requests=theirs.requests if theirs else None,
                         provider_cost=theirs.cost if theirs and theirs.cost is not None
                         else (Decimal(0) if report.cost_scope else None))
        if mine:
            row.ledger_requests, row.ledger_cost = mine["requests"], mine["cost"]
        for token_class in TOKEN_CLASSES:
            setattr(row, f"ledger_{token_class}", mine[token_class] if mine else 0)
            setattr(row, f"provider_{token_class}", getattr(theirs, token_class) if theirs else 0)
        rows.append(row)
    drift = any(row.status != Comparison.Status.MATCH for row in rows)
    with transaction.atomic():
        check = DayCheck.objects.select_for_update().select_related("provider").get(pk=check.pk)
        check.comparisons.all().delete()
        for row in rows:
            row.day_check = check
        Comparison.objects.bulk_create(rows)
        check.state = DayCheck.State.DRIFT if drift else DayCheck.State.MATCH
        check.message = report.note[:300]
        check.cost_scope = report.cost_scope
        check.ledger_cost = sum((row.ledger_cost for row in rows), Decimal(0))
        check.provider_cost = (sum((row.provider_cost or Decimal(0) for row in rows), Decimal(0))
                               if report.cost_scope else None)
        check.checked_at = now
        check.save()
        if drift:
            alerts.drift_alert(check=check, credential=credential, now=now)
    return check


def _unchecked(check: DayCheck, state: str, message: str) -> DayCheck:
    """A day that was not compared now says why; a verdict it already had stays, since a report that could
    not be fetched again does not undo it."""
    if check.state in (DayCheck.State.MATCH, DayCheck.State.DRIFT) and state == DayCheck.State.PENDING:
        check.message = message[:300]
    else:
        check.state, check.message = state, message[:300]
    check.save(update_fields=["state", "message"])
    return check


def reconcile_completed_days(*, now: datetime | None = None) -> list[DayCheck]:
    """The beat's daily pass: for every provider with a reporting key, the completed days of the last
    RECONCILE_LOOKBACK_DAYS that are not settled yet (never checked, or not checked yet), fetched as one
    span; a day settled before the span's first is not fetched again."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    since = today - timedelta(days=settings.RECONCILE_LOOKBACK_DAYS)
    done = []
    for credential in ReportingCredential.objects.select_related("provider").filter(
            provider__archived_at__isnull=True):
        settled = set(DayCheck.objects.filter(
            provider=credential.provider, day__gte=since,
            state__in=[DayCheck.State.MATCH, DayCheck.State.DRIFT]).values_list("day", flat=True))
        due = [day for day in days(since, today - timedelta(days=1)) if day not in settled and day_closed(day, now)]
        if due:
            done += [check for check in reconcile(provider=credential.provider, since=min(due), until=max(due),
                                                  now=now) if check.day in due]
    return done
