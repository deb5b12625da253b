"""Writes to the ledger. `usage_record_create` is the one way a usage record is written; it keeps the daily
rollup equal to the raw records by changing both in one transaction. Re-pricing goes through here too."""

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.audit import audit_log

from . import pricing
from .models import DailyUsage, UsageRecord

# Stored costs have ten decimal places; costs are rounded to them once, before the record and its rollup
# row are written, so that both add up the very same numbers.
COST_PLACES = Decimal("1e-10")
REPRICE_BATCH = 2000


def ledger_timezone() -> ZoneInfo:
    """Days in the ledger are days in settings.TIME_ZONE, whatever time zone a request has activated."""
    return ZoneInfo(settings.TIME_ZONE)


def day_start(day: date) -> datetime:
    """The first instant of `day` in the ledger's time zone."""
    return datetime.combine(day, datetime.min.time(), tzinfo=ledger_timezone())


def record_cost(usage: pricing.UsageLike, price: Any) -> Decimal:
    """The cost stored for `usage` at `price` (a Price or None: no price, no cost)."""
    if price is None:
        return Decimal(0).quantize(COST_PLACES)
    return pricing.cost(usage, price).quantize(COST_PLACES)


def usage_record_create(*, provider: Any, model: Any, source: str, status: str, created_at: datetime | None = None,
                        request_id: UUID | None = None, user: Any = None, api_key: Any = None,
                        error_kind: str = "", error_message: str = "", finish_reason: str = "",
                        input_tokens: int = 0, cache_read_tokens: int = 0, cache_write_tokens: int = 0,
                        output_tokens: int = 0, reasoning_tokens: int = 0, usage_estimated: bool = False,
                        reported_cost: Decimal | None = None, latency_ms: int | None = None,
                        ttft_ms: int | None = None, attempts: int = 1, cached: bool = False) -> UsageRecord:
    """Write one call's record, priced at the model's price version in force at `created_at` (the call's
    start; a `cached` answer, replayed without calling the provider, costs 0), and add it to its daily
    rollup row and to the budgets that cover it, in one transaction. The budgets also release the
    reservations their hard limits hold under the record's `request_id`."""
    # Here, not at the top: budgets build on this module (its time zone and rollup).
    from budgets.services import usage_record_charge

    record = UsageRecord(
        created_at=created_at or timezone.now(), source=source, status=status,
        user=user if getattr(user, "is_authenticated", False) else None, api_key=api_key,
        provider=provider, model=model, provider_name=provider.name, model_name=model.name,
        error_kind=error_kind, error_message=error_message[:500], finish_reason=finish_reason or "",
        input_tokens=input_tokens, cache_read_tokens=cache_read_tokens, cache_write_tokens=cache_write_tokens,
        output_tokens=output_tokens, reasoning_tokens=reasoning_tokens, usage_estimated=usage_estimated,
        reported_cost=reported_cost, latency_ms=latency_ms, ttft_ms=ttft_ms, attempts=attempts, cached=cached,
    )
    if request_id is not None:
        record.request_id = request_id
    with transaction.atomic():
        record.price = None if cached else model.price_at(record.created_at)
        record.cost = Decimal(0) if cached else record_cost(record, record.price)
        record.save(force_insert=True)
        _daily_usage_add(record, _contribution(record))
        usage_record_charge(record)
    return record


def _contribution(record: UsageRecord) -> dict[str, Any]:
    """What one record adds to its rollup row."""
    return {
        "requests": 1,
        "errors": int(record.status == UsageRecord.Status.ERROR),
        "cancelled": int(record.status == UsageRecord.Status.CANCELLED),
        "estimated": int(record.usage_estimated),
        "input_tokens": record.input_tokens,
        "cache_read_tokens": record.cache_read_tokens,
        "cache_write_tokens": record.cache_write_tokens,
        "output_tokens": record.output_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "cost": record.cost,
        "latency_ms_sum": record.latency_ms or 0,
        "latency_count": int(record.latency_ms is not None),
        "ttft_ms_sum": record.ttft_ms or 0,
        "ttft_count": int(record.ttft_ms is not None),
    }


def _dimensions(record: UsageRecord) -> dict[str, Any]:
    return {
        "day": timezone.localtime(record.created_at, ledger_timezone()).date(),
        "provider_id": record.provider_id, "model_id": record.model_id, "user_id": record.user_id,
        "api_key_id": record.api_key_id, "source": record.source,
    }


def _key(dimensions: dict[str, Any]) -> str:
    d = dimensions
    return (f"{d['day'].isoformat()}|p{d['provider_id'] or 0}|m{d['model_id'] or 0}|u{d['user_id'] or 0}"
            f"|k{d['api_key_id'] or 0}|{d['source']}")


def _daily_usage_add(record: UsageRecord, amounts: dict[str, Any]) -> None:
    """Add `amounts` to the record's rollup row, race-free with concurrent writers: an UPDATE with F()
    increments first (the common case, one statement); on a miss an INSERT in a savepoint; and when a
    concurrent writer inserted the row first, that INSERT fails on the unique key and the UPDATE, run
    again, finds the row."""
    dimensions = _dimensions(record)
    key = _key(dimensions)
    increments = {name: F(name) + value for name, value in amounts.items() if value}
    if increments and DailyUsage.objects.filter(key=key).update(**increments):
        return
    try:
        with transaction.atomic():
            DailyUsage.objects.create(key=key, **dimensions, **amounts)
        return
    except IntegrityError:
        pass
    if increments and not DailyUsage.objects.filter(key=key).update(**increments):
        raise RuntimeError(f"Rollup row {key} neither updates nor inserts.")


# -- re-pricing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepriceResult:
    records: int  # in the range
    changed: int  # whose cost or price version changes
    old_total: Decimal
    new_total: Decimal
    applied: bool  # False for a dry run

    @property
    def delta(self) -> Decimal:
        return self.new_total - self.old_total


def usage_reprice(*, model: Any, since: datetime, until: datetime | None = None, actor: Any,
                  dry_run: bool = False) -> RepriceResult:
    """Re-price the model's records from `since` (inclusive) to `until` (exclusive), each at the price
    version in force at its own time, and adjust the rollups in the same transaction; audited. A dry run
    computes the same difference and changes nothing."""
    prices = list(model.prices.order_by("effective_from", "id"))
    starts = [price.effective_from for price in prices]
    records = UsageRecord.objects.filter(model=model, created_at__gte=since).order_by("id")
    if until is not None:
        records = records.filter(created_at__lt=until)
    fields = ("id", "created_at", "provider_id", "model_id", "user_id", "api_key_id", "source", "price_id", "cost",
              "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
    count, changed, old_total, new_total = 0, 0, Decimal(0), Decimal(0)
    deltas: dict[str, Decimal] = defaultdict(Decimal)
    rows: dict[str, UsageRecord] = {}  # a record per rollup row, to name the row
    records = records.only(*fields)
    with transaction.atomic():
        if not dry_run:
            # Locked so that two re-pricings of one range cannot both apply the same difference.
            records = records.select_for_update()
        last_id = 0
        # Batches by id, each read whole before its updates: no cursor stays open on the table while it
        # is written to (SQLite would not isolate the two).
        while batch := list(records.filter(id__gt=last_id)[:REPRICE_BATCH]):
            last_id = batch[-1].id
            updates = []
            for record in batch:
                # The latest version effective at or before the record's time, as Model.price_at picks it.
                position = bisect.bisect_right(starts, record.created_at)
                price = prices[position - 1] if position else None
                cost = record_cost(record, price)
                count += 1
                old_total += record.cost
                new_total += cost
                if cost == record.cost and record.price_id == (price.pk if price else None):
                    continue
                changed += 1
                key = _key(_dimensions(record))
                deltas[key] += cost - record.cost
                rows.setdefault(key, record)
                record.cost, record.price = cost, price
                updates.append(record)
            if updates and not dry_run:
                UsageRecord.objects.bulk_update(updates, ["cost", "price"])
        result = RepriceResult(records=count, changed=changed, old_total=old_total, new_total=new_total,
                               applied=not dry_run)
        if dry_run or not changed:
            return result
        for key, delta in deltas.items():
            if delta:
                _daily_usage_add(rows[key], {"cost": delta})
        audit_log(actor, "usage.reprice", model, since=since.isoformat(),
                  until=until.isoformat() if until else "", records=count, changed=changed,
                  old_total=str(old_total), new_total=str(new_total), delta=str(result.delta))
    return result


# -- rebuilding ---------------------------------------------------------------------------------


def daily_usage_rebuild(*, since: date | None = None, until: date | None = None) -> int:
    """Recompute the rollup rows of the days from `since` to `until` (inclusive; open ends: all) from the
    raw records. For records written in bulk outside `usage_record_create` (seeding a benchmark) or after
    TIME_ZONE changed. Returns the number of rollup rows written."""
    tz = ledger_timezone()
    records = UsageRecord.objects.all()
    rows = DailyUsage.objects.all()
    if since is not None:
        records, rows = records.filter(created_at__gte=day_start(since)), rows.filter(day__gte=since)
    if until is not None:
        records = records.filter(created_at__lt=day_start(until + timedelta(days=1)))
        rows = rows.filter(day__lte=until)
    sums = (
        records.order_by()
        .annotate(day=TruncDate("created_at", tzinfo=tz))
        .values("day", "provider_id", "model_id", "user_id", "api_key_id", "source")
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=Q(status=UsageRecord.Status.ERROR)),
            cancelled=Count("id", filter=Q(status=UsageRecord.Status.CANCELLED)),
            estimated=Count("id", filter=Q(usage_estimated=True)),
            input_tokens=Sum("input_tokens"), cache_read_tokens=Sum("cache_read_tokens"),
            cache_write_tokens=Sum("cache_write_tokens"), output_tokens=Sum("output_tokens"),
            reasoning_tokens=Sum("reasoning_tokens"), cost=Sum("cost"),
            latency_ms_sum=Coalesce(Sum("latency_ms"), 0), latency_count=Count("latency_ms"),
            ttft_ms_sum=Coalesce(Sum("ttft_ms"), 0), ttft_count=Count("ttft_ms"),
        )
    )
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Writers wait until the rebuild commits, then add to the rebuilt rows.
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {DailyUsage._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        rows.delete()
        built = [DailyUsage(key=_key(values), **values) for values in sums.iterator(chunk_size=2000)]
        DailyUsage.objects.bulk_create(built, batch_size=1000)
    return len(built)
