"""Budgets on the call path: hard limits held by reservation and charged at the ledger write, in a number of
statements that does not grow with the number of budgets.

The money flow of one call through hard-limit budgets:
1. `budget_reserve` (through the limits registered in providers/hooks.py, before any provider is contacted) holds the
   call's worst-case cost on the current period of every hard-limit budget that covers the call, all or
   none, with ONE conditional UPDATE of all those periods: `reserved += cost` where, for each period,
   `spent + reserved + cost <= amount` (its own literal amount); the rows it changed must be all of them,
   or the transaction rolls back and the first budget that does not fit is named. On PostgreSQL the UPDATE
   locks the rows in id order (a FOR UPDATE subquery: no two writers can deadlock) and re-checks each
   row's condition against the row as committed by whoever held it last, so concurrent calls cannot all
   squeeze under the limit. The periods' ids are cached per worker (with the budgets, by period start). A
   call to a model without a price has no worst case: a hard-limit budget that covers it refuses it
   (`BudgetUnpriced`).
2. `usage_records_charge` (usage.signals.records_written, in the ledger's transaction) deletes the batch's
   reservations, and takes them off `reserved` and adds the records' real costs to `spent` of the hard
   budgets' periods, in one UPDATE for the whole batch. Soft budgets get nothing per record: their spend
   is the ledger's, brought into their periods by the evaluation after the batch (budgets/evaluation.py).
   In the production profile both steps hold and settle in Redis instead (`budget_areserve`, one Lua script
   on the event loop; budgets/redisholds.py), and the period rows are charged in the ledger's transaction
   as above, without reservations.
3. A call that never records (its worker crashed) leaves reservations behind; they expire and
   `reservations_release_expired` (the sweep, and any refused reservation first) gives them back. A call
   prepared but then not made gives its own back at once (`reservations_release`).
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_UP, Decimal
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet, Sum
from django.utils import timezone

from aspweb.inline import NeedsThread, inline_or_hop, running_inline
from aspweb.rowcache import RowCache
from providers.hooks import CallLimit
from usage import pricing, rollups
from usage.models import UsageRecord

from . import periods, redisholds, scopes
from .models import Budget, BudgetPeriod, Reservation, next_alert_at
from .refusals import BudgetExceeded, BudgetUnpriced

logger = logging.getLogger(__name__)

# Counters keep ten decimal places, like the ledger's costs.
MONEY_PLACES = Decimal("1e-10")
# Added to the limit in the reservation's condition. Every stored amount is a multiple of 1e-10, so on
# PostgreSQL (exact numerics) it changes nothing; SQLite adds decimals as binary floats, and this absorbs
# their rounding, so that ten reservations of a tenth of the amount all fit there too.
HALF_UNIT = Decimal("0.5e-10")


def holds_in_redis() -> bool:
    """Whether hard limits are held in Redis (budgets/redisholds.py: the production profile's default) rather
    than by the period rows (the embedded default's)."""
    return settings.BUDGET_HOLDS == "redis"


# -- the budgets and their periods, cached per worker ---------------------------------------------------

@dataclass
class _Cached:
    """The budgets as a worker keeps them: all of them; the hard limits by what they cover (scopes.budget_key:
    None for every call, else (target column, value)), so that finding a call's takes a few look-ups however
    many exist (budgets/scopes.py); and
    the ids of their periods found so far, by (budget id, period start): dropped with the budgets, and a
    new period start is a new key."""

    budgets: list[Budget]
    hard: dict[scopes.ScopeKey, list[Budget]] = field(default_factory=dict)
    period_ids: dict[tuple[int, date], int] = field(default_factory=dict)

    @classmethod
    def read(cls) -> "_Cached":
        cached = cls(list(Budget.objects.order_by("pk")))
        for budget in cached.budgets:
            if budget.hard_limit:
                cached.hard.setdefault(scopes.budget_key(budget), []).append(budget)
        return cached


# Every budget, cached per worker and dropped in every process when any budget is saved or deleted (apps.py):
# most calls fall under no hard limit, and then reserving costs no query, nor charging when none exists.
cached_budgets = RowCache("budgets", ttl=60.0)


def _cached() -> _Cached:
    return cached_budgets.get("all", lambda: (_Cached.read(), None))


def budgets_all() -> list[Budget]:
    """Every budget, from this worker's row cache."""
    return _cached().budgets


def hard_budgets_covering(*, provider: Any, model: Any, user: Any, api_key: Any, team_id: int | None = None,
                          tags: tuple[str, ...] = (), end_user: str = "") -> list[Budget]:
    """The hard-limit budgets a call of `user` (or `api_key`) to `model`, attributed to a team, tags and an
    end user, falls under; read from the budgets cached in this worker, without a query."""
    call = SimpleNamespace(provider_id=provider.pk, model_id=model.pk,
                           user_id=user.pk if getattr(user, "is_authenticated", False) else None,
                           api_key_id=api_key.pk if api_key is not None else None,
                           team_id=team_id, tag_list=tags, end_user=end_user)
    return scopes.covering(_cached().hard, call)


def _ledger_rows(budget: Budget, span: periods.Span) -> QuerySet:
    """The budget's rollup rows in `span`, from the narrowest rollup table that has its target column."""
    column = budget.target_column
    rows = rollups.table_for([column] if column else []).objects.filter(budget.ledger_filter())
    if span.end is not None:
        rows = rows.filter(day__gte=span.start, day__lt=span.end)
    return rows


def ledger_spend(budget: Budget, span: periods.Span) -> Decimal:
    """What the ledger says the budget's scope spent in `span`."""
    return _ledger_rows(budget, span).aggregate(total=Sum("cost"))["total"] or Decimal(0)


def budget_period_get(budget: Budget, span: periods.Span) -> tuple[BudgetPeriod, bool]:
    """The budget's row for `span`, created when missing with the spend the ledger already holds for it
    (a budget added mid-month counts the month so far). True when this call created it.

    Inside a usage record's transaction the ledger sum includes that record: the caller must not add it
    again to a row created here. Two writers creating the same row race on its unique key; the loser
    (blocked until the winner commits) reads the winner's row and adds to it.
    """
    period = BudgetPeriod.objects.filter(budget=budget, start=span.start).first()
    if period is not None:
        return period, False
    try:
        with transaction.atomic():
            period = BudgetPeriod.objects.create(budget=budget, start=span.start, end=span.end,
                                                 spent=ledger_spend(budget, span),
                                                 next_alert_at=next_alert_at(budget, set()))
        return period, True
    except IntegrityError:
        return BudgetPeriod.objects.get(budget=budget, start=span.start), False


def _period_ids(wanted: list[tuple[Budget, periods.Span]]) -> tuple[dict[tuple[int, date], int], set[int]]:
    """The period id of each (budget, span), from the ids cached in this worker: one query for those not cached
    yet, and a row made for each that has none (the first call of a period). Also the ids made now: their
    spend, read from the ledger, already counts the current transaction's records. An id is cached once the
    transaction that found or made it commits (at once outside one): rolled back, the row never existed."""
    known = _cached().period_ids
    keyed = {(budget.pk, span.start): (budget, span) for budget, span in wanted}
    ids = {key: known.get(key) for key in keyed}
    missing = {key: pair for key, pair in keyed.items() if ids[key] is None}
    created: dict[tuple[int, date], int] = {}
    if missing:
        rows = BudgetPeriod.objects.filter(budget_id__in={pk for pk, _ in missing},
                                           start__in={start for _, start in missing})
        for pk, budget_id, start in rows.values_list("pk", "budget_id", "start"):
            if (budget_id, start) in missing:
                ids[(budget_id, start)] = pk
        for key in sorted(missing):
            if ids[key] is None:
                period, made = budget_period_get(*missing[key])
                ids[key] = period.pk
                if made:
                    created[key] = period.pk
        # Cached once the rows are surely there: one found may have been made earlier in this transaction.
        found = {key: ids[key] for key in missing}
        transaction.on_commit(lambda: known.update(found))
    return ids, set(created.values())


# The two statements every covered call makes, reserving and charging, are written as SQL: built through
# the ORM (a Q per period, a Case/When per counter), compiling them cost about 1 ms each per call, more
# than running them (bench/gateway_bench.py breakdown --budgets). Both are plain standard SQL, the same on
# SQLite and PostgreSQL but for the lock; amounts go in as parameters cast to NUMERIC, as the ORM casts them.


def _locked_sql(ids: list[int]) -> tuple[str, list[int]]:
    """A subquery of the periods `ids` that locks them in id order (FOR UPDATE on PostgreSQL; SQLite has one
    writer at a time): every writer that changes several period rows in one statement takes their locks in
    the same order, so none of them can deadlock another."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    marks = ", ".join(["%s"] * len(ids))
    # Only the table's name and placeholders are formatted in; every value is a parameter.
    return f"SELECT id FROM {_PERIODS} WHERE id IN ({marks}) ORDER BY id{lock}", list(ids)  # noqa: S608


_PERIODS = BudgetPeriod._meta.db_table


# -- reserving ----------------------------------------------------------------------------------------


def worst_case_cost(price: Any, *, input_tokens: int, output_tokens: int) -> Decimal:
    """The most a call can cost at `price` (usage.pricing.worst_case_cost), rounded up to the ledger's
    places. No price, no cost."""
    if price is None:
        return Decimal(0)
    cost = pricing.worst_case_cost(price, input_tokens=input_tokens, output_tokens=output_tokens)
    return cost.quantize(MONEY_PLACES, rounding=ROUND_UP)


def reservation_ttl(timeout_seconds: int) -> timedelta:
    """How long a reservation outlives its call's start: longer than the call can run."""
    return timedelta(seconds=max(settings.BUDGET_RESERVATION_TTL_SECONDS, timeout_seconds + 60))


def budget_reserve(*, request_id: UUID, provider: Any, model: Any, user: Any, api_key: Any, cost: Decimal | None,
                   ttl: timedelta, now: datetime | None = None, held: set[int] | None = None,
                   again: bool = True, **attribution: Any) -> int:
    """Hold `cost` on every hard-limit budget covering the call, all or none, and return on how many periods
    it held it now. Raises BudgetExceeded (naming the first budget it does not fit in) and holds nothing when
    it does not fit everywhere. Held in Redis in the production profile (`holds_in_redis`), else by the
    period rows. `cost` None: the model has no price, and any hard-limit budget covering the call refuses it
    (BudgetUnpriced).

    `held`: the ids of the periods this call holds already, known to the caller (a route's fallback reserves
    again for its own deployment, and what is held stays as held); the ones held now are added to it. None:
    asked of the database."""
    now = now or timezone.now()
    budgets = hard_budgets_covering(provider=provider, model=model, user=user, api_key=api_key, **attribution)
    if not budgets:
        return 0
    if cost is None:
        raise BudgetUnpriced(budgets[0], model)
    spans = [(budget, budget.span_at(now)) for budget in budgets]
    ids, _ = _period_ids(spans)
    if held is None:
        held = set() if holds_in_redis() else set(
            Reservation.objects.filter(request_id=request_id).values_list("period_id", flat=True))
    wanted = _wanted(spans, ids, held)
    if not wanted:
        return 0
    try:
        if holds_in_redis():
            _redis_hold(wanted, request_id, cost, now + ttl)
            held.update(period_id for _, period_id in wanted)
            return len(wanted)
        reservations = _hold(wanted, request_id, cost, now + ttl)
    except _Stale:
        if not again:
            raise
        return budget_reserve(request_id=request_id, provider=provider, model=model, user=user, api_key=api_key,
                              cost=cost, ttl=ttl, now=now, held=held, again=False, **attribution)
    except BudgetExceeded:
        # Reservations of calls that died without recording may be what is in the way.
        if not reservations_release_expired(now=now, period_ids=[period_id for _, period_id in wanted]):
            raise
        reservations = _hold(wanted, request_id, cost, now + ttl)
    held.update(period_id for _, period_id in wanted)
    return len(reservations)


def _wanted(spans: list[tuple[Budget, periods.Span]], ids: dict[tuple[int, date], int],
            held: set[int]) -> list[tuple[Budget, int]]:
    """The (budget, period id) pairs to hold, in period id order, leaving out the periods already held."""
    wanted = sorted(((budget, ids[(budget.pk, span.start)]) for budget, span in spans), key=lambda pair: pair[1])
    return [(budget, period_id) for budget, period_id in wanted if period_id not in held]


async def budget_areserve(*, request_id: UUID, provider: Any, model: Any, user: Any, api_key: Any,
                          cost: Decimal | None, ttl: timedelta, held: set[int], again: bool = True,
                          **attribution: Any) -> int:
    """`budget_reserve` on the event loop, for holds in Redis: one round trip, and a thread only for what this
    worker does not know yet (a period's id, a period's first counters)."""
    now = timezone.now()
    budgets = await inline_or_hop(hard_budgets_covering, provider=provider, model=model, user=user, api_key=api_key,
                                  **attribution)
    if not budgets:
        return 0
    if cost is None:
        raise await sync_to_async(BudgetUnpriced)(budgets[0], model)  # its words read the budget's target
    spans = [(budget, budget.span_at(now)) for budget in budgets]
    ids, _ = await inline_or_hop(_period_ids, spans)
    wanted = _wanted(spans, ids, held)
    if not wanted:
        return 0
    period_ids, limits = [pk for _, pk in wanted], [budget.amount for budget, _ in wanted]
    tried: set[str] = set()
    try:
        expires_at = (now + ttl).timestamp()
        while not (outcome := await redisholds.ahold(period_ids, limits, request_id, cost, expires_at)).held:
            await sync_to_async(_redis_refused)(wanted, outcome, cost, tried)
    except _Stale:
        if not again:
            raise
        return await budget_areserve(request_id=request_id, provider=provider, model=model, user=user,
                                     api_key=api_key, cost=cost, ttl=ttl, held=held, again=False, **attribution)
    held.update(period_ids)
    return len(wanted)


def _redis_hold(wanted: list[tuple[Budget, int]], request_id: UUID, cost: Decimal, expires_at: datetime) -> None:
    if running_inline():
        raise NeedsThread("Redis")  # on the event loop, budget_areserve holds without blocking it
    period_ids, limits = [pk for _, pk in wanted], [budget.amount for budget, _ in wanted]
    tried: set[str] = set()
    while not (outcome := redisholds.hold(period_ids, limits, request_id, cost, expires_at.timestamp())).held:
        _redis_refused(wanted, outcome, cost, tried)


def _redis_refused(wanted: list[tuple[Budget, int]], outcome: redisholds.Outcome, cost: Decimal,
                   tried: set[str]) -> None:
    """What a hold refused by Redis calls for before it is tried again, each at most once (`tried`): the
    periods' first counters loaded from their rows, or the holds of calls that never recorded given back.
    BudgetExceeded, naming the first budget it does not fit in, when neither is left to try."""
    if outcome.unloaded is not None:
        if "load" in tried:
            raise _Stale
        tried.add("load")
        ids = [period_id for _, period_id in wanted]
        spent = dict(BudgetPeriod.objects.filter(pk__in=ids).values_list("pk", "spent"))
        if len(spent) != len(ids):  # a cached period id whose row is gone: find the ids again
            _cached().period_ids.clear()
            raise _Stale
        redisholds.load(spent)
        return
    if "expired" not in tried:
        tried.add("expired")
        if redisholds.release_expired():
            return
    budget, _ = wanted[outcome.short]
    raise BudgetExceeded(budget, budget.amount - outcome.spent - outcome.reserved, cost)


class _DoesNotFit(Exception):
    pass


class _Stale(Exception):
    pass


def _hold(wanted: list[tuple[Budget, int]], request_id: UUID, cost: Decimal, expires_at: datetime,
          *, again: bool = True) -> list[Reservation]:
    """One UPDATE for every period, each under its own condition, and one INSERT of the reservations; all
    or none."""
    locked, params = _locked_sql([period_id for _, period_id in wanted])
    fits = " OR ".join(["(id = %s AND spent + reserved <= CAST(%s AS NUMERIC))"] * len(wanted))
    for budget, period_id in wanted:
        params += [period_id, budget.amount - cost + HALF_UNIT]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"UPDATE {_PERIODS} SET reserved = reserved + CAST(%s AS NUMERIC) "  # noqa: S608
                           f"WHERE id IN ({locked}) AND ({fits})", [cost, *params])
            if cursor.rowcount != len(wanted):
                raise _DoesNotFit
            return Reservation.objects.bulk_create([
                Reservation(request_id=request_id, period_id=period_id, amount=cost, expires_at=expires_at)
                for _, period_id in wanted
            ])
    except _DoesNotFit:
        pass
    # Rolled back: which one did not fit, read as committed now.
    current = {pk: (spent, reserved) for pk, spent, reserved in BudgetPeriod.objects.filter(
        pk__in=[period_id for _, period_id in wanted]).values_list("pk", "spent", "reserved")}
    if len(current) != len(wanted):
        # A cached period id whose row is gone (deleted by hand): forget the cached ids and find them again.
        _cached().period_ids.clear()
        raise _Stale
    for budget, period_id in wanted:
        spent, reserved = current[period_id]
        if spent + reserved + cost > budget.amount + HALF_UNIT:
            raise BudgetExceeded(budget, budget.amount - spent - reserved, cost)
    if again:  # room was made between the two reads: one more try
        return _hold(wanted, request_id, cost, expires_at, again=False)
    budget, period_id = wanted[0]
    raise BudgetExceeded(budget, budget.amount - sum(current[period_id]), cost)


def reservations_release(*, request_id: UUID) -> int:
    """Give back what a call holds that will not be made after all (a playground stream closed before it
    began). Its reservations are locked first, as a settling record and the sweep lock them, so that none
    of them gives the same reservation back twice. Returns how many were released."""
    if holds_in_redis():
        return redisholds.release([request_id])
    with transaction.atomic():
        reservations = list(Reservation.objects.select_for_update().filter(request_id=request_id)
                            .order_by("period_id").values_list("pk", "period_id", "amount"))
        if reservations:
            _counters_add(reserved={period_id: -amount for _, period_id, amount in reservations})
            Reservation.objects.filter(pk__in=[pk for pk, _, _ in reservations]).delete()
    return len(reservations)


def reservations_release_expired(*, now: datetime | None = None, period_ids: list[int] | None = None) -> int:
    """Give back the reservations that expired (their call never recorded its usage). Each in its own short
    transaction, skipping any a settling call holds at the moment. Returns how many were released."""
    now = now or timezone.now()
    released = 0
    if holds_in_redis() and period_ids is None:
        released = redisholds.release_expired(now.timestamp())
    expired = Reservation.objects.filter(expires_at__lte=now)
    if period_ids is not None:
        expired = expired.filter(period_id__in=period_ids)
    for pk in list(expired.values_list("pk", flat=True)[:1000]):
        with transaction.atomic():
            reservation = (Reservation.objects.select_for_update(skip_locked=True)
                           .filter(pk=pk, expires_at__lte=now).first())
            if reservation is None:
                continue
            BudgetPeriod.objects.filter(pk=reservation.period_id).update(reserved=F("reserved") - reservation.amount)
            reservation.delete()
            released += 1
    if released:
        logger.warning("Released %d expired budget reservations of calls that never recorded their usage", released)
    return released


def redis_counters_reconcile() -> int:
    """The sweep's part for holds in Redis: raise each loaded period's `spent` to its row's (what a crash, a
    budget made mid-call or counters loaded while a batch was being written left out), and forget the counters
    of periods that are gone. Returns how many periods it looked at."""
    if not holds_in_redis():
        return 0
    loaded = redisholds.loaded_periods()
    rows = dict(BudgetPeriod.objects.filter(pk__in=loaded).values_list("pk", "spent"))
    redisholds.forget([pk for pk in loaded if pk not in rows])
    redisholds.lift(rows)
    return len(rows)


def period_reserved(period: BudgetPeriod) -> Decimal:
    """What a period holds for calls under way: in Redis, or its row's `reserved`."""
    if holds_in_redis():
        counters = redisholds.counters(period.pk)
        return counters[1] if counters is not None else Decimal(0)
    return period.reserved


# -- charging -----------------------------------------------------------------------------------------


def _counters_add(*, spent: dict[int, Decimal] | None = None, reserved: dict[int, Decimal] | None = None) -> None:
    """Add to the periods' counters, whatever their number, in one UPDATE (rows locked in id order)."""
    changes = [(name, values) for name, values in (("spent", spent), ("reserved", reserved))
               if values and any(values.values())]
    if not changes:
        return
    ids = sorted({pk for _, values in changes for pk in values})
    settings_sql, params = [], []
    for name, values in changes:
        whens = " ".join(["WHEN %s THEN CAST(%s AS NUMERIC)"] * len(values))
        settings_sql.append(f"{name} = {name} + CASE id {whens} ELSE 0 END")
        params += [item for pk, value in values.items() for item in (pk, value)]
    locked, locked_params = _locked_sql(ids)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_PERIODS} SET {', '.join(settings_sql)} WHERE id IN ({locked})",  # noqa: S608
                       [*params, *locked_params])


_RESERVATIONS = Reservation._meta.db_table


def _reservations_take(request_ids: list[UUID]) -> list[tuple[int, Decimal]]:
    """Delete the calls' reservations and return what they held (period id, amount), in one statement
    (DELETE ... RETURNING, on SQLite 3.35+ and PostgreSQL): a batch's records are its own calls, so no other
    writer deletes the same rows, and the sweep skips the rows this holds."""
    field = Reservation._meta.get_field("request_id")
    values = [field.get_db_prep_value(request_id, connection) for request_id in request_ids]
    marks = ", ".join(["%s"] * len(values))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_RESERVATIONS} WHERE request_id IN ({marks}) "  # noqa: S608 (names only)
                       "RETURNING period_id, amount", values)
        rows = cursor.fetchall()
    # SQLite hands numerics back as floats: to the ledger's places, as the ORM's converter does.
    amount_field = Reservation._meta.get_field("amount")
    return [(period_id, amount_field.to_python(amount).quantize(MONEY_PLACES)) for period_id, amount in rows]


def usage_records_charge(records: list[UsageRecord], **_: Any) -> bool:
    """Settle usage records against the hard-limit budgets, in their transaction (a usage.signals
    .records_written receiver): their calls' reservations are released and each record's cost is added to
    the hard-limit budgets that cover it. True when any record cost something (the evaluation after it is
    then worth scheduling).

    A constant number of statements per batch, whatever the number of records and budgets: none when no
    hard-limit budget exists (then no reservation exists either: they go with their budget's periods, and a
    budget made soft leaves its own to expire); else one to take the reservations (DELETE ... RETURNING) and
    one UPDATE of every period's counters. Soft budgets are not touched here: their spend is the ledger's.
    The budgets are cached per worker, and a budget made a moment ago, in any process, is charged from the
    next record on (aspweb/rowcache.py)."""
    costly = [record for record in records if record.cost]
    hard = _cached().hard
    if not records or not hard:
        return bool(costly)
    reserved: dict[int, Decimal] = defaultdict(Decimal)
    if not holds_in_redis():
        for period_id, amount in _reservations_take([record.request_id for record in records]):
            reserved[period_id] -= amount
    covered, spans = _covered(costly, hard)
    charges: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    for record, keys in covered:
        for key in keys:
            charges[key] += record.cost
    ids, created = _period_ids(list(spans.values())) if spans else ({}, set())
    # A row made just now already counts the batch's records: they are in the rollups it summed
    # (see budget_period_get).
    spent = {ids[key]: cost for key, cost in charges.items() if ids[key] not in created}
    _counters_add(spent=spent, reserved=reserved)
    return bool(costly)


def _covered(records: list[UsageRecord], hard: dict) -> tuple[list[tuple[UsageRecord, list[tuple[int, date]]]],
                                                                dict[tuple[int, date], tuple[Budget, periods.Span]]]:
    """Each record with the (budget id, period start) of every hard limit covering it; and those periods."""
    spans: dict[tuple[int, date], tuple[Budget, periods.Span]] = {}
    covered = []
    for record in records:
        keys = []
        for budget in scopes.covering(hard, record):
            span = budget.span_at(record.created_at)
            spans[(budget.pk, span.start)] = (budget, span)
            keys.append((budget.pk, span.start))
        covered.append((record, keys))
    return covered, spans


def usage_records_settle(records: list[UsageRecord], **_: Any) -> None:
    """Settle hard limits held in Redis for usage records about to be written (a usage.signals.records_priced
    receiver, before the ledger's transaction, so that the period rows the transaction locks are not held
    over a round trip to Redis): each call's holds are given back and its cost added, where it still held
    something. Should the transaction then fail, Redis counts more than was spent, never less: the limit
    errs on the side of refusing, and the record written again (one by one, or from the journal) is not
    charged twice."""
    hard = _cached().hard
    if not records or not hard or not holds_in_redis():
        return
    covered, spans = _covered([record for record in records if record.cost], hard)
    ids, _ = _period_ids(list(spans.values())) if spans else ({}, set())
    costs = {record.request_id: {ids[key]: record.cost for key in keys} for record, keys in covered}
    redisholds.settle([(record.request_id, costs.get(record.request_id, {})) for record in records])


def _call_reservation(*, record: Any, provider: Any, model: Any, user: Any, api_key: Any, price: Any,
                      input_tokens: int, output_tokens: int, timeout_seconds: int,
                      **attribution: Any) -> dict[str, Any]:
    cost = None if price is None else worst_case_cost(price, input_tokens=input_tokens, output_tokens=output_tokens)
    return {"request_id": record.request_id, "provider": provider, "model": model, "user": user, "api_key": api_key,
            "cost": cost, "ttl": reservation_ttl(timeout_seconds), "held": record.held, **attribution}


def _reserve_for_call(**call: Any) -> int:
    return budget_reserve(**_call_reservation(**call))


async def _areserve_for_call(**call: Any) -> int:
    """On the event loop when the holds are in Redis; in a thread, by the period rows, otherwise."""
    if holds_in_redis():
        return await budget_areserve(**_call_reservation(**call))
    return await sync_to_async(_reserve_for_call)(**call)


def _covers_call(*, provider: Any, model: Any, user: Any, api_key: Any, **attribution: Any) -> bool:
    return bool(hard_budgets_covering(provider=provider, model=model, user=user, api_key=api_key, **attribution))


# What providers.calls asks of budgets, registered in providers/hooks.py by BudgetsConfig.ready.
hard_limits = CallLimit(covers=_covers_call, reserve=_reserve_for_call, areserve=_areserve_for_call,
                        release=reservations_release)
