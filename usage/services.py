"""Writes to the ledger. `usage_records_create` (and its one-record form `usage_record_create`) is the one
way usage records are written; it keeps every rollup table equal to the raw records by changing them in
the records' transaction. Re-pricing and rebuilding the rollups go through here too. The call path writes
through `usage.writer.usage_record_write`, which gathers concurrent calls' records into batches."""

import copy
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.audit import audit_log
from aspweb.text import storable
from providers.prices import model_prices, price_in_force

from . import bodies, pricing, rollups, signals
from .attribution import tags_text
from .models import ROLLUPS, UPSTREAM_ID_LENGTH, CallBody, DailyUsage, UsageRecord

logger = logging.getLogger(__name__)

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


def record_price(record: UsageRecord, price: Any, *, bills_reported_cost: bool) -> None:
    """Set what a record costs at `price` (the version in force at its start, or None): its computed cost,
    its cost, and whether it is unpriced.

    - An answer replayed from the gateway's response cache called no provider: it costs 0, unpriced or not.
    - Where the provider is the billing party (`bills_reported_cost`) and reported its charge, that charge
      is the cost; aspweb's computation stays beside it in `computed_cost`.
    - A record that used tokens and has neither a price nor a reported charge is `unpriced`: its cost is 0,
      and every total counts it apart.
    """
    if record.cached:
        record.price, record.computed_cost, record.cost, record.unpriced = None, None, Decimal(0), False
        return
    record.price = price
    record.computed_cost = record_cost(record, price) if price is not None else None
    reported = record.reported_cost if bills_reported_cost else None
    if reported is not None:
        record.cost = reported.quantize(COST_PLACES)
    else:
        record.cost = record.computed_cost if record.computed_cost is not None else Decimal(0).quantize(COST_PLACES)
    record.unpriced = price is None and reported is None and record.total_tokens > 0


def usage_record_build(*, provider: Any, model: Any, source: str, status: str, created_at: datetime | None = None,
                       request_id: UUID | None = None, user: Any = None, api_key: Any = None,
                       team_id: int | None = None, tags: tuple[str, ...] = (), end_user: str = "",
                       error_kind: str = "", error_message: str = "", finish_reason: str = "",
                       input_tokens: int = 0, cache_read_tokens: int = 0, cache_write_tokens: int = 0,
                       cache_write_1h_tokens: int = 0, output_tokens: int = 0, reasoning_tokens: int = 0,
                       usage_estimated: bool = False,
                       reported_cost: Decimal | None = None, upstream_id: str = "", latency_ms: int | None = None,
                       ttft_ms: int | None = None, attempts: int = 1, cached: bool = False,
                       body: dict[str, Any] | None = None) -> UsageRecord:
    """One call's record, not yet priced nor saved: the keyword arguments of `usage_record_create` (and of
    `usage_records_create`'s specs and `usage.writer.usage_record_write`) are these. `tags` and `end_user`
    come checked (usage/attribution.py). `body`: the call's prompt and answer when they are logged
    (usage/bodies.py), written with the record as a CallBody."""
    record = UsageRecord(
        created_at=created_at or timezone.now(), source=source, status=status,
        user=user if getattr(user, "is_authenticated", False) else None, api_key=api_key,
        team_id=team_id, tags=tags_text(tags), end_user=end_user,
        provider=provider, model=model, provider_name=provider.name, model_name=model.name,
        error_kind=error_kind, error_message=storable(error_message)[:500], finish_reason=finish_reason or "",
        input_tokens=input_tokens, cache_read_tokens=cache_read_tokens, cache_write_tokens=cache_write_tokens,
        cache_write_1h_tokens=cache_write_1h_tokens, output_tokens=output_tokens, reasoning_tokens=reasoning_tokens,
        usage_estimated=usage_estimated,
        reported_cost=reported_cost, latency_ms=latency_ms, ttft_ms=ttft_ms, attempts=attempts, cached=cached,
        # An id longer than any provider's is not one: cut rather than refuse the record.
        upstream_id=upstream_id[:UPSTREAM_ID_LENGTH],
    )
    if request_id is not None:
        record.request_id = request_id
    record.logged_body = body
    return record


def usage_record_create(**fields: Any) -> UsageRecord:
    """Write one call's record (the keyword arguments of `usage_record_build`), priced at the model's price
    version in force at `created_at` (the call's start; a `cached` answer, replayed without calling the
    provider, costs 0), and add it to its rollup rows, in one transaction; what is built on the ledger adds
    its part in that transaction (usage.signals.records_written: budgets release the reservations held under
    the record's `request_id` and charge their hard limits).
    A batch of one: see `usage_records_create`."""
    record = usage_record_build(**fields)
    _records_write([record])
    return record


class UsageRecordsFailed(Exception):
    """Some records of a batch could not be written; every other one was. `records` follows the specs'
    order, None where one failed; `errors` maps those positions to what went wrong."""

    def __init__(self, records: list[UsageRecord | None], errors: dict[int, Exception]) -> None:
        self.records, self.errors = records, errors
        first = next(iter(errors.values()))
        super().__init__(f"{len(errors)} of {len(records)} usage records could not be written, e.g.: {first!r}")


def usage_records_create(specs: Iterable[dict[str, Any]]) -> list[UsageRecord]:
    """Write many calls' records (each spec: the keyword arguments of `usage_record_build`) in one
    transaction: priced as `usage_record_create` prices one, inserted in one statement, added to each
    rollup table with one statement and charged to the budgets (records_written) with a few queries for the
    whole batch.

    A batch stands or falls as one transaction, but no record is lost for another's sake: when it fails
    (a record's model was deleted meanwhile, a deadlock), the records are written again one by one, and
    UsageRecordsFailed then names the ones that still failed, after every other one was written."""
    records: list[UsageRecord | None] = []
    errors: dict[int, Exception] = {}
    for n, spec in enumerate(specs):
        try:
            records.append(usage_record_build(**spec))
        except Exception as exc:  # reported with the others below: one caller's mistake is not all of theirs
            records.append(None)
            errors[n] = exc
    ready = [record for record in records if record is not None]
    try:
        _records_write(ready)
    except Exception as exc:
        if not connection.in_atomic_block and not connection.is_usable():
            connection.close()  # the next query reconnects
        if len(ready) == 1 and not errors:
            _record_write_alone(ready[0], failed=exc)  # raises its own error when it truly cannot be written
            return ready
        logger.warning("A batch of %d usage records failed (%r); writing them one by one", len(ready), exc)
        for n, record in enumerate(records):
            if record is None:
                continue
            try:
                _record_write_alone(record)
            except Exception as own:
                records[n], errors[n] = None, own
    if errors:
        raise UsageRecordsFailed(records, errors)
    return ready


# What a record may lose rather than be lost: the rows its call named that were deleted while it waited in a
# batch (a person or a team removed; a key with no record yet). Its provider and model it cannot lose.
_FORGETTABLE = ("user", "team", "api_key")


def _record_write_alone(record: UsageRecord, *, failed: Exception | None = None) -> None:
    """Write a record of a failed batch alone (`failed`: how it failed alone already); where it names a person,
    team or API key deleted since its call, it is written without them (logged) instead of not at all."""
    if failed is None:
        record.pk, record._state.adding, record._state.db = None, True, None
        try:
            _records_write([record])
            return
        except Exception as exc:
            failed = exc
    gone = [name for name in _FORGETTABLE if getattr(record, f"{name}_id") is not None
            and not UsageRecord._meta.get_field(name).related_model._base_manager.filter(
                pk=getattr(record, f"{name}_id")).exists()]
    if not gone:
        raise failed
    logger.warning("The usage record of call %s names a %s deleted since its call: written without it",
                   record.request_id, " and ".join(gone))
    for name in gone:
        setattr(record, name, None)
    record.pk, record._state.adding, record._state.db = None, True, None
    _records_write([record])


def _records_write(records: list[UsageRecord]) -> None:
    if not records:
        return
    record_prices(records)
    signals.records_priced.send(sender=UsageRecord, records=records)
    # Redacted before the transaction, so that the rows it locks are not held meanwhile (the field encrypts
    # on insert).
    logged = [(record, _body_row(record)) for record in records if getattr(record, "logged_body", None)]
    with transaction.atomic():
        UsageRecord.objects.bulk_create(records)
        if logged:
            for record, body in logged:
                body.record_id = record.pk
            CallBody.objects.bulk_create([body for _, body in logged])
        additions = rollups.Additions()
        for record in records:
            additions.add(record)
        additions.write()
        # Budgets settle their reservations and charge their hard limits here, in this transaction.
        signals.records_written.send(sender=UsageRecord, records=records)


def _body_row(record: UsageRecord) -> CallBody:
    prepared = bodies.prepare(record.logged_body)
    return CallBody(created_at=record.created_at, content=prepared.content, truncated=prepared.truncated,
                    search_tokens=prepared.search_tokens)


def call_bodies_expire(*, now: datetime | None = None) -> int:
    """Delete the logged bodies of calls older than LOG_BODIES_RETENTION_DAYS; how many were deleted."""
    until = (now or timezone.now()) - timedelta(days=settings.LOG_BODIES_RETENTION_DAYS)
    deleted, _ = CallBody.objects.filter(created_at__lt=until).delete()
    return deleted


def call_body_read(*, record: UsageRecord, viewer: Any, purpose: str = "view") -> dict[str, Any] | None:
    """The call's logged prompt and answer for `viewer`, audited; None when none was logged. Whether the
    viewer may read it is the caller's check (usage.views.body_readable)."""
    body = CallBody.objects.filter(record=record).first()
    if body is None:
        return None
    audit_log(viewer, f"callbody.{purpose}", target_type="call", target_label=str(record.request_id))
    data = bodies.read(body.content)
    data["truncated"] = body.truncated
    return data


def call_bodies_exported(*, viewer: Any, query: str) -> None:
    """Audit an export of calls that includes their prompts and answers."""
    audit_log(viewer, "callbody.export", target_type="call", target_label="calls export", filters=query[:500])


def record_prices(records: list[UsageRecord]) -> None:
    """Set each record's price version and cost (record_price)."""
    versions = {model_id: model_prices(model_id)
                for model_id in {record.model_id for record in records if not record.cached}}
    for record in records:
        price = None if record.cached else price_in_force(versions[record.model_id], record.created_at)
        record_price(record, price, bills_reported_cost=record.provider.kind_preset.bills_reported_cost)


# -- re-pricing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepriceResult:
    records: int  # in the range
    changed: int  # whose cost or price version changes
    old_total: Decimal
    new_total: Decimal
    applied: bool  # False for a dry run
    unpriced: int = 0  # still without a price after re-pricing: no version was in force at their time
    first_unpriced: datetime | None = None

    @property
    def delta(self) -> Decimal:
        return self.new_total - self.old_total


def usage_reprice(*, model: Any, since: datetime, until: datetime | None = None, actor: Any,
                  dry_run: bool = False) -> RepriceResult:
    """Re-price the model's records from `since` (inclusive) to `until` (exclusive), each at the price
    version in force at its own time (record_price: a cached answer stays at 0, a reported charge of the
    billing party stays the cost), and adjust the rollups in the same transaction; audited. Records that
    used no tokens (errors before anything was generated) have nothing to re-price and are left alone. A
    dry run computes the same difference and changes nothing."""
    prices = list(model.prices.prefetch_related("tiers").order_by("effective_from", "id"))
    bills_reported_cost = model.provider.kind_preset.bills_reported_cost
    records = UsageRecord.objects.filter(model=model, created_at__gte=since).order_by("id")
    if until is not None:
        records = records.filter(created_at__lt=until)
    fields = ("id", "created_at", "provider_id", "model_id", "user_id", "api_key_id", "source", "team_id",
              "end_user", "tags", "status",
              "usage_estimated", "price_id", "cost", "computed_cost", "reported_cost", "unpriced", "cached",
              "input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens",
              "reasoning_tokens", "latency_ms", "ttft_ms")
    updated = ("cost", "computed_cost", "price", "unpriced")
    count, changed, old_total, new_total = 0, 0, Decimal(0), Decimal(0)
    unpriced, first_unpriced = 0, None
    additions = rollups.Additions()
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
                count += 1
                old_total += record.cost
                if record.cached or not record.total_tokens:
                    new_total += record.cost
                    continue
                before = copy.copy(record)
                record_price(record, price_in_force(prices, record.created_at),
                             bills_reported_cost=bills_reported_cost)
                new_total += record.cost
                if record.unpriced:
                    unpriced += 1
                    first_unpriced = min(first_unpriced or record.created_at, record.created_at)
                if all(getattr(record, name) == getattr(before, name)
                       for name in ("cost", "computed_cost", "price_id", "unpriced")):
                    continue
                changed += 1
                additions.add(record, rollups.repricing_amounts(before, record))
                updates.append(record)
            if updates and not dry_run:
                UsageRecord.objects.bulk_update(updates, list(updated))
        result = RepriceResult(records=count, changed=changed, old_total=old_total, new_total=new_total,
                               applied=not dry_run, unpriced=unpriced, first_unpriced=first_unpriced)
        if dry_run or not changed:
            return result
        additions.write()
        audit_log(actor, "usage.reprice", model, since=since.isoformat(),
                  until=until.isoformat() if until else "", records=count, changed=changed,
                  old_total=str(old_total), new_total=str(new_total), delta=str(result.delta))
    return result


# -- rebuilding ---------------------------------------------------------------------------------


def daily_usage_rebuild(*, since: date | None = None, until: date | None = None) -> int:
    """Recompute every rollup table's rows of the days from `since` to `until` (inclusive; open ends: all)
    from the raw records. For records written in bulk outside `usage_records_create` (seeding a benchmark),
    after TIME_ZONE changed, or to fill a new rollup table. Returns the number of rows written to the full
    table (DailyUsage)."""
    tz = ledger_timezone()
    records = UsageRecord.objects.all()
    if since is not None:
        records = records.filter(created_at__gte=day_start(since))
    if until is not None:
        records = records.filter(created_at__lt=day_start(until + timedelta(days=1)))
    written = 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Writers wait until the rebuild commits, then add to the rebuilt rows; locked in the order
            # writers lock them.
            with connection.cursor() as cursor:
                for model in ROLLUPS:
                    cursor.execute(f"LOCK TABLE {model._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        for model in ROLLUPS:
            rows = model.objects.all()
            if since is not None:
                rows = rows.filter(day__gte=since)
            if until is not None:
                rows = rows.filter(day__lte=until)
            rows.delete()
            if rollups.TAG in model.DIMENSIONS:
                _tag_rows_rebuild(model, records.exclude(tags=""))
                continue
            own = records.exclude(end_user="") if "end_user" in model.DIMENSIONS else records
            sums = (
                own.order_by()
                .annotate(day=TruncDate("created_at", tzinfo=tz))
                .values("day", *model.DIMENSIONS)
                .annotate(
                    # First: the token columns below are shadowed by their sums once annotated.
                    unpriced_tokens=Coalesce(Sum(F("input_tokens") + F("cache_read_tokens") + F("cache_write_tokens")
                                                 + F("cache_write_1h_tokens") + F("output_tokens"),
                                                 filter=Q(unpriced=True)), 0),
                    unpriced=Count("id", filter=Q(unpriced=True)),
                    requests=Count("id"),
                    errors=Count("id", filter=Q(status=UsageRecord.Status.ERROR)),
                    cancelled=Count("id", filter=Q(status=UsageRecord.Status.CANCELLED)),
                    estimated=Count("id", filter=Q(usage_estimated=True)),
                    input_tokens=Sum("input_tokens"), cache_read_tokens=Sum("cache_read_tokens"),
                    cache_write_tokens=Sum("cache_write_tokens"), cache_write_1h_tokens=Sum("cache_write_1h_tokens"),
                    output_tokens=Sum("output_tokens"),

                    reasoning_tokens=Sum("reasoning_tokens"), cost=Sum("cost"),
                    latency_ms_sum=Coalesce(Sum("latency_ms"), 0), latency_count=Count("latency_ms"),
                    ttft_ms_sum=Coalesce(Sum("ttft_ms"), 0), ttft_count=Count("ttft_ms"),
                )
            )
            built = [model(key=rollups.row_key(model, values["day"], values), **values)
                     for values in sums.iterator(chunk_size=2000)]
            model.objects.bulk_create(built, batch_size=1000)
            if model is DailyUsage:
                written = len(built)
    return written


def _tag_rows_rebuild(model: Any, records: Any) -> None:
    """The tag table's rows from the records: a record adds to one row per tag, which no GROUP BY over the
    records' columns expresses, so they are summed here as the writer sums a batch."""
    fields = ("id", "created_at", "provider_id", "model_id", "user_id", "api_key_id", "source", "team_id",
              "end_user", "tags", "status", "usage_estimated", "cost", "unpriced", "input_tokens",
              "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens",
              "reasoning_tokens", "latency_ms", "ttft_ms")
    additions = rollups.Additions()
    for record in records.order_by().only(*fields).iterator(chunk_size=2000):
        additions.add(record)
    model.objects.bulk_create([model(key=key, day=day, **dict(zip(model.DIMENSIONS, values, strict=True)),
                                     **dict(zip(rollups.SUM_FIELDS, amounts, strict=True)))
                               for key, day, values, amounts in additions.table_rows(model)], batch_size=1000)
