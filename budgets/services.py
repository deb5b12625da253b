"""Budgets: hard limits by reservation, spend kept equal to the ledger, alerts fired exactly once.

The money flow of one call through a hard-limit budget:
1. `budget_reserve` (from providers.calls, before any provider is contacted) holds the call's worst-case
   cost on the current period of every hard-limit budget that covers the call, all or none, with one
   conditional UPDATE per period: `reserved += cost WHERE spent + reserved + cost <= amount`. On
   PostgreSQL the UPDATE re-checks its condition against the row as committed by whoever held it last,
   so concurrent calls cannot all squeeze under the limit. A call to a model without a price has no worst
   case: a hard-limit budget that covers it refuses it (`BudgetUnpriced`).
2. `usage_records_charge` (from usage.services.usage_records_create, in the usage records' transaction)
   deletes the calls' reservations, takes them off `reserved`, and adds each record's real cost to
   `spent` of every budget that covers it, hard or not.
3. A call that never records (its worker crashed) leaves reservations behind; they expire and
   `reservations_release_expired` (the sweep, and any refused reservation first) gives them back. A call
   prepared but then not made gives its own back at once (`reservations_release`).

`spent` is always the ledger's sum for the budget's scope and period: a period row starts from the daily
rollup, each record adds its cost in its own transaction, and the sweep reconciles the two under the
period's row lock (which also brings in re-pricing). Alerts are AlertEvent rows with a unique constraint
per budget, period, kind and threshold: whoever inserts first fires it; everyone else gets an
IntegrityError and fires nothing.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_UP, Decimal
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from accounts.audit import audit_log
from aspweb.money import money
from aspweb.roles import ADMIN, FINANCE, has_role
from aspweb.rowcache import RowCache
from usage import pricing, rollups
from usage.models import UsageRecord

from . import notify, periods, tasks
from .models import AlertEvent, Budget, BudgetPeriod, Delivery, Notification, Reservation

logger = logging.getLogger(__name__)

# Counters keep ten decimal places, like the ledger's costs.
MONEY_PLACES = Decimal("1e-10")
# Added to the limit in the reservation's condition. Every stored amount is a multiple of 1e-10, so on
# PostgreSQL (exact numerics) it changes nothing; SQLite adds decimals as binary floats, and this absorbs
# their rounding, so that ten reservations of a tenth of the amount all fit there too.
HALF_UNIT = Decimal("0.5e-10")


class BudgetExceeded(Exception):
    """A call does not fit in a hard-limit budget. `message` is plain words naming the budget and what is left."""

    def __init__(self, budget: Budget, remaining: Decimal, cost: Decimal) -> None:
        left = max(remaining, Decimal(0))
        self.budget, self.remaining, self.cost = budget, left, cost
        self.message = (
            f"Budget “{budget.name}” ({budget.target_label}, {budget.period}) has {money(left)} left of "
            f"{money(budget.amount)}, and this call could cost up to {money(cost)}. "
            "Ask a finance user to raise the budget, or use a smaller max_tokens."
        )
        super().__init__(self.message)


class BudgetUnpriced(BudgetExceeded):
    """A hard-limit budget covers a call to a model without a price. Nothing bounds what such a call costs,
    so it is refused rather than let through unseen, until an admin sets the model's price."""

    def __init__(self, budget: Budget, model: Any) -> None:
        self.budget, self.remaining, self.cost = budget, None, None
        self.message = (
            f"Model {model} has no price, and budget “{budget.name}” ({budget.target_label}, {budget.period}) "
            "is a hard limit: a call whose cost cannot be known in advance is refused. An admin must set the "
            f"model's price in aspweb's catalog (Providers, {model.provider.name}, {model.name}) before it can "
            "be called."
        )
        Exception.__init__(self, self.message)


# -- which budgets ----------------------------------------------------------------------------------


def budgets_visible_to(user: Any) -> QuerySet[Budget]:
    """Finance and admins see every budget; anyone else the ones that apply to their calls: global, provider
    and model budgets, their own user budget and those of their API keys."""
    budgets = Budget.objects.select_related("provider", "model__provider", "user", "api_key")
    if has_role(user, ADMIN, FINANCE):
        return budgets
    return budgets.filter(Q(scope__in=[Budget.Scope.GLOBAL, Budget.Scope.PROVIDER, Budget.Scope.MODEL])
                          | Q(scope=Budget.Scope.USER, user=user)
                          | Q(scope=Budget.Scope.API_KEY, api_key__user=user))


# -- period rows ------------------------------------------------------------------------------------


def _ledger_rows(budget: Budget, span: periods.Span) -> QuerySet:
    """The budget's rollup rows in `span`, from the narrowest rollup table that has its target column."""
    column = Budget.TARGETS.get(budget.scope)
    rows = rollups.table_for([f"{column}_id"] if column else []).objects.filter(budget.ledger_filter())
    if span.end is not None:
        rows = rows.filter(day__gte=span.start, day__lt=span.end)
    return rows


def ledger_spend(budget: Budget, span: periods.Span) -> Decimal:
    """What the ledger says the budget's scope spent in `span`."""
    return _ledger_rows(budget, span).aggregate(total=Sum("cost"))["total"] or Decimal(0)


@dataclass(frozen=True)
class Unpriced:
    """What a budget's spend cannot count: its scope's calls without a price in the period (recorded at 0),
    and, for a hard limit, the models it refuses for want of a price."""

    calls: int
    tokens: int
    refused_models: list[Any]


def budget_unpriced(budget: Budget, span: periods.Span, *, now: datetime | None = None) -> Unpriced:
    from providers.models import Model, Price

    sums = _ledger_rows(budget, span).aggregate(calls=Sum("unpriced"), tokens=Sum("unpriced_tokens"))
    refused: list[Any] = []
    if budget.hard_limit:
        models = Model.objects.filter(enabled=True, provider__enabled=True, provider__archived_at__isnull=True)
        if budget.scope == Budget.Scope.PROVIDER:
            models = models.filter(provider_id=budget.provider_id)
        elif budget.scope == Budget.Scope.MODEL:
            models = models.filter(pk=budget.model_id)
        priced = Price.objects.filter(effective_from__lte=now or timezone.now()).values("model_id")
        refused = list(models.exclude(pk__in=priced).select_related("provider").order_by("provider__name", "name"))
    return Unpriced(sums["calls"] or 0, sums["tokens"] or 0, refused)


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
                                                 spent=ledger_spend(budget, span))
        return period, True
    except IntegrityError:
        return BudgetPeriod.objects.get(budget=budget, start=span.start), False


# -- reserving --------------------------------------------------------------------------------------


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


def hard_budgets_covering(*, provider: Any, model: Any, user: Any, api_key: Any) -> list[Budget]:
    """The hard-limit budgets a call of `user` (or `api_key`) to `model` falls under; read from the budgets
    cached in this worker, without a query."""
    call = SimpleNamespace(provider_id=provider.pk, model_id=model.pk,
                           user_id=user.pk if getattr(user, "is_authenticated", False) else None,
                           api_key_id=api_key.pk if api_key is not None else None)
    return [budget for budget in _budgets() if budget.hard_limit and _covers(budget, call)]


def budget_reserve(*, request_id: UUID, provider: Any, model: Any, user: Any, api_key: Any, cost: Decimal | None,
                   ttl: timedelta, now: datetime | None = None) -> list[Reservation]:
    """Hold `cost` on every hard-limit budget covering the call, all or none. Raises BudgetExceeded (naming
    the first budget it does not fit in) and holds nothing when it does not fit everywhere. `cost` None: the
    model has no price, and any hard-limit budget covering the call refuses it (BudgetUnpriced)."""
    now = now or timezone.now()
    budgets = hard_budgets_covering(provider=provider, model=model, user=user, api_key=api_key)
    if not budgets:
        return []
    if cost is None:
        raise BudgetUnpriced(budgets[0], model)
    held = [(budget, budget_period_get(budget, budget.span_at(now))[0]) for budget in budgets]
    # A route's fallback reserves again for its own deployment: periods this call already holds stay as held.
    already = set(Reservation.objects.filter(request_id=request_id).values_list("period_id", flat=True))
    held = [(budget, period) for budget, period in held if period.pk not in already]
    if not held:
        return []
    # One order for every writer that locks several period rows: no two of them can deadlock.
    held.sort(key=lambda pair: pair[1].pk)
    try:
        return _hold(held, request_id, cost, now + ttl)
    except BudgetExceeded:
        # Reservations of calls that died without recording may be what is in the way.
        if not reservations_release_expired(now=now, period_ids=[period.pk for _, period in held]):
            raise
    return _hold(held, request_id, cost, now + ttl)


# Every budget, in a row cache of each worker, dropped in every process when any budget is saved or deleted
# (apps.py):
# most calls fall under no hard limit, and then reserving costs no query, nor charging when no budget exists.
cached_budgets = RowCache("budgets", ttl=60.0)


def _budgets() -> list[Budget]:
    return cached_budgets.get("all", lambda: (list(Budget.objects.order_by("pk")), None))


def _covers(budget: Budget, call: Any) -> bool:
    """Whether `budget` covers a call (a usage record, or anything with its four ids)."""
    column = Budget.TARGETS.get(budget.scope)
    return column is None or getattr(budget, f"{column}_id") == getattr(call, f"{column}_id")


def _hold(held: list[tuple[Budget, BudgetPeriod]], request_id: UUID, cost: Decimal,
          expires_at: datetime) -> list[Reservation]:
    with transaction.atomic():
        for budget, period in held:
            fits = (BudgetPeriod.objects.filter(pk=period.pk)
                    .alias(committed=F("spent") + F("reserved"))
                    .filter(committed__lte=budget.amount - cost + HALF_UNIT)
                    .update(reserved=F("reserved") + cost))
            if not fits:
                current = BudgetPeriod.objects.get(pk=period.pk)
                raise BudgetExceeded(budget, budget.amount - current.spent - current.reserved, cost)
        return Reservation.objects.bulk_create([
            Reservation(request_id=request_id, period=period, amount=cost, expires_at=expires_at)
            for _, period in held
        ])


def reservations_release(*, request_id: UUID) -> int:
    """Give back what a call holds that will not be made after all (a playground stream closed before it
    began). Its reservations are locked first, as a settling record and the sweep lock them, so that none
    of them gives the same reservation back twice. Returns how many were released."""
    with transaction.atomic():
        reservations = list(Reservation.objects.select_for_update().filter(request_id=request_id)
                            .order_by("period_id"))
        for reservation in reservations:
            BudgetPeriod.objects.filter(pk=reservation.period_id).update(reserved=F("reserved") - reservation.amount)
        Reservation.objects.filter(pk__in=[reservation.pk for reservation in reservations]).delete()
    return len(reservations)


def reservations_release_expired(*, now: datetime | None = None, period_ids: list[int] | None = None) -> int:
    """Give back the reservations that expired (their call never recorded its usage). Each in its own short
    transaction, skipping any a settling call holds at the moment. Returns how many were released."""
    now = now or timezone.now()
    expired = Reservation.objects.filter(expires_at__lte=now)
    if period_ids is not None:
        expired = expired.filter(period_id__in=period_ids)
    released = 0
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


# -- charging ---------------------------------------------------------------------------------------


def usage_record_charge(record: UsageRecord) -> None:
    """`usage_records_charge` for one record."""
    usage_records_charge([record])


def usage_records_charge(records: list[UsageRecord]) -> None:
    """Settle usage records against the budgets, in their transaction (usage_records_create calls this, after
    adding them to the rollups): their calls' reservations are released and each record's cost is added
    to every budget that covers it. Alert evaluation of the periods it added to is dispatched once the
    transaction commits.

    A few queries per batch, not per record, and none when no budget exists at all: then no reservation
    exists either (they go with their budget's periods). The budgets are cached per worker, and a budget
    made a moment ago, in any process, is charged from the next record on (aspweb/rowcache.py)."""
    budgets = _budgets()
    if not records or not budgets:
        return
    deltas: dict[int, dict[str, Decimal]] = defaultdict(lambda: {"reserved": Decimal(0), "spent": Decimal(0)})
    reservations = list(Reservation.objects.select_for_update()
                        .filter(request_id__in=[record.request_id for record in records]).order_by("pk"))
    for reservation in reservations:
        deltas[reservation.period_id]["reserved"] -= reservation.amount
    if reservations:
        Reservation.objects.filter(pk__in=[r.pk for r in reservations]).delete()
    costly = [record for record in records if record.cost]
    # Which period of which budget each record goes to; the periods fetched (or made) once each, in one
    # order for every writer, so that two batches opening the same new periods cannot deadlock.
    charges: dict[tuple[int, Any], list[UsageRecord]] = defaultdict(list)
    spans: dict[tuple[int, Any], Any] = {}
    for record in costly:
        for budget in budgets:
            if _covers(budget, record):
                span = budget.span_at(record.created_at)
                charges[(budget.pk, span.start)].append(record)
                spans[(budget.pk, span.start)] = (budget, span)
    charged = []
    for key in sorted(charges):
        budget, span = spans[key]
        period, created = budget_period_get(budget, span)
        # A row created just now already counts the batch's records: they are in the rollups it summed
        # (see budget_period_get).
        if not created:
            deltas[period.pk]["spent"] += sum((record.cost for record in charges[key]), Decimal(0))
        charged.append(period.pk)
    for period_id in sorted(deltas):
        changes = {name: F(name) + value for name, value in deltas[period_id].items() if value}
        if changes:
            BudgetPeriod.objects.filter(pk=period_id).update(**changes)
    if charged:
        transaction.on_commit(lambda: tasks.budgets_evaluate.delay(sorted(charged)), robust=True)


def budget_period_reconcile(*, period_id: int) -> bool:
    """Set the period's spend to the ledger's and its reserved amount to its live reservations, under the
    row's lock: writers that hold it commit first and are counted; writers after it add to the new values.
    Catches what the running counters could not: calls already under way when the budget was made, and
    re-priced history. True when something changed."""
    with transaction.atomic():
        period = BudgetPeriod.objects.select_for_update().select_related("budget").filter(pk=period_id).first()
        if period is None:
            return False
        spent = ledger_spend(period.budget, period.span)
        reserved = period.reservations.aggregate(total=Sum("amount"))["total"] or Decimal(0)
        if (spent, reserved) == (period.spent, period.reserved):
            return False
        logger.info("Budget %s, %s: spent %s -> %s, reserved %s -> %s (reconciled with the ledger)",
                    period.budget, period.span.label(), period.spent, spent, period.reserved, reserved)
        BudgetPeriod.objects.filter(pk=period.pk).update(spent=spent, reserved=reserved)
        return True


# -- alerts -----------------------------------------------------------------------------------------


def projected_spend(period: BudgetPeriod, now: datetime) -> Decimal | None:
    """The period's spend at its end at the run-rate so far; None for all-time budgets and before
    BUDGET_FORECAST_MIN_ELAPSED of the period has passed (an hour into a month says nothing)."""
    elapsed = period.span.elapsed(now)
    if elapsed is None or elapsed <= 0 or elapsed < settings.BUDGET_FORECAST_MIN_ELAPSED:
        return None
    return (period.spent / Decimal(repr(elapsed))).quantize(MONEY_PLACES)


def budget_periods_evaluate(*, period_ids: list[int], now: datetime | None = None) -> list[AlertEvent]:
    """Fire the alerts the periods' spend calls for and that have not fired yet."""
    now = now or timezone.now()
    fired = []
    for period in BudgetPeriod.objects.select_related("budget").filter(pk__in=period_ids).order_by("pk"):
        fired.extend(_evaluate(period, now))
    return fired


def _evaluate(period: BudgetPeriod, now: datetime) -> list[AlertEvent]:
    budget = period.budget
    done = set(AlertEvent.objects.filter(period=period).exclude(kind=AlertEvent.Kind.TEST)
               .values_list("kind", "threshold"))
    crossed = [t for t in sorted(set(budget.thresholds))
               if period.spent > 0 and period.spent * 100 >= budget.amount * t
               and (AlertEvent.Kind.THRESHOLD, t) not in done]
    projected = projected_spend(period, now)
    forecast = (budget.forecast and (AlertEvent.Kind.FORECAST, 0) not in done and projected is not None
                and (period.span.elapsed(now) or 0) < 1 and period.spent < budget.amount < projected)
    if not crossed and not forecast:
        return []
    fired = []
    with transaction.atomic():
        for threshold in crossed:
            # Several thresholds crossed at once: all are recorded, so none fires later, but only the
            # highest is sent.
            event = _fire(period, AlertEvent.Kind.THRESHOLD, threshold, notified=threshold == crossed[-1])
            if event is not None:
                fired.append(event)
        if forecast:
            event = _fire(period, AlertEvent.Kind.FORECAST, 0, projected=projected)
            if event is not None:
                fired.append(event)
        for event in fired:
            if event.notified:
                _send(event)
    return fired


def _fire(period: BudgetPeriod, kind: str, threshold: int, *, notified: bool = True,
          projected: Decimal | None = None) -> AlertEvent | None:
    """Insert the alert; None when it had already fired (the unique constraint says so, even for a
    concurrent evaluation that committed a moment ago)."""
    event = AlertEvent(budget=period.budget, period=period, kind=kind, threshold=threshold, spent=period.spent,
                       amount=period.budget.amount, projected=projected, notified=notified)
    event.message = notify.describe(event)
    try:
        with transaction.atomic():
            event.save(force_insert=True)
    except IntegrityError:
        return None
    logger.info("Budget alert: %s", event.message)
    return event


def alert_recipients(budget: Budget) -> QuerySet:
    """Who gets a budget's in-app alerts: finance users, admins, and the person the budget or its API key
    belongs to."""
    people = (Q(groups__name__in=[FINANCE, ADMIN]) | Q(is_superuser=True))
    if budget.user_id:
        people |= Q(pk=budget.user_id)
    if budget.api_key_id and budget.api_key.user_id:
        people |= Q(pk=budget.api_key.user_id)
    return get_user_model().objects.filter(people, is_active=True).distinct()


def _send(event: AlertEvent, *, channels: tuple[str, ...] | None = None, in_app_to: Any = None) -> list[Delivery]:
    """Create the alert's deliveries: in-app at once (the notifications are rows in this transaction), the
    others queued for alert_deliver once it commits."""
    budget = event.budget
    wanted = channels or tuple(channel for channel, on in (
        (Delivery.Channel.IN_APP, True), (Delivery.Channel.EMAIL, bool(budget.emails)),
        (Delivery.Channel.WEBHOOK, bool(budget.webhook_url)),
    ) if on)
    deliveries, queued = [], []
    now = timezone.now()
    for channel in wanted:
        if channel == Delivery.Channel.IN_APP:
            users = [in_app_to] if in_app_to is not None else list(alert_recipients(budget))
            title = notify.title(event)
            Notification.objects.bulk_create([
                Notification(user=user, alert=event, title=title, body=event.message,
                             url=reverse("budget_detail", args=[budget.pk]))
                for user in users
            ])
            deliveries.append(Delivery.objects.create(alert=event, channel=channel, status=Delivery.Status.SENT,
                                                      attempts=1, sent_at=now))
        else:
            delivery = Delivery.objects.create(alert=event, channel=channel)
            deliveries.append(delivery)
            queued.append(delivery.pk)
    for pk in queued:
        transaction.on_commit(lambda pk=pk: tasks.alert_deliver.delay(pk), robust=True)
    return deliveries


def budget_test_alert(*, budget: Budget, channel: str, actor: Any) -> Delivery:
    """Send a test alert through one channel, now. In-app goes to the person asking only. Raises
    ValueError when the budget has no recipients or URL for the channel."""
    if channel == Delivery.Channel.EMAIL and not budget.emails:
        raise ValueError("This budget has no e-mail recipients to test.")
    if channel == Delivery.Channel.WEBHOOK and not budget.webhook_url:
        raise ValueError("This budget has no webhook URL to test.")
    if channel not in Delivery.Channel.values:
        raise ValueError("Choose a channel to test: in-app, e-mail or webhook.")
    now = timezone.now()
    with transaction.atomic():
        period, _ = budget_period_get(budget, budget.span_at(now))
        event = AlertEvent(budget=budget, period=period, kind=AlertEvent.Kind.TEST, spent=period.spent,
                           amount=budget.amount, projected=projected_spend(period, now))
        event.message = notify.describe(event, requested_by=getattr(actor, "email", ""))
        event.save(force_insert=True)
        delivery = _send(event, channels=(channel,), in_app_to=actor)[0]
        audit_log(actor, "budget.test_alert", budget, channel=channel)
    return delivery


# -- delivering -------------------------------------------------------------------------------------


def delivery_backoff(retries: int) -> float:
    """Seconds before retry number `retries + 1`: ALERT_RETRY_BASE_SECONDS doubled each time, capped."""
    return min(settings.ALERT_RETRY_MAX_SECONDS, settings.ALERT_RETRY_BASE_SECONDS * 2 ** retries)


def delivery_attempt(*, delivery_id: int, last_try: bool) -> bool:
    """Send a queued delivery once and record how it went. True when it failed in a way worth retrying
    and this was not the last try."""
    delivery = (Delivery.objects.select_related("alert__budget", "alert__period").filter(pk=delivery_id).first())
    if delivery is None or delivery.status in (Delivery.Status.SENT, Delivery.Status.FAILED):
        return False  # deleted with its budget, or already settled by an earlier run of the task
    try:
        notify.deliver(delivery)
    except notify.DeliveryError as exc:
        retry = exc.retryable and not last_try
        Delivery.objects.filter(pk=delivery.pk).update(
            attempts=F("attempts") + 1, last_error=str(exc)[:500], updated_at=timezone.now(),
            status=Delivery.Status.RETRYING if retry else Delivery.Status.FAILED,
        )
        log = logger.info if retry else logger.warning
        log("Alert delivery %s (%s) failed%s: %s", delivery.pk, delivery.channel,
            ", retrying" if retry else "", exc)
        return retry
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(attempts=F("attempts") + 1, status=Delivery.Status.SENT,
                                                   sent_at=now, updated_at=now)
    return False


# -- the sweep --------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    released: int = 0
    reconciled: int = 0
    fired: list[AlertEvent] = field(default_factory=list)


def budgets_sweep(*, now: datetime | None = None) -> SweepResult:
    """The periodic pass: release expired reservations, open every budget's current period (a roll-over
    starts here even with no traffic), reconcile it with the ledger, and fire what is due, forecasts
    included. Running it again fires nothing new."""
    now = now or timezone.now()
    result = SweepResult(released=reservations_release_expired(now=now))
    for budget in Budget.objects.order_by("pk"):
        reconciled, fired = budget_evaluate(budget, now=now)
        result.reconciled += reconciled
        result.fired.extend(fired)
    return result


def budget_evaluate(budget: Budget, *, now: datetime | None = None) -> tuple[bool, list[AlertEvent]]:
    """One budget's part of the sweep: open its current period (with what the ledger holds for it),
    reconcile it with the ledger, and fire the alerts due. Also run once a budget is made or changed, so
    that one made below what its scope already spent fires its crossed thresholds at once rather than at
    the next paid call. Returns whether the period was reconciled, and the alerts fired."""
    now = now or timezone.now()
    period, _ = budget_period_get(budget, budget.span_at(now))
    reconciled = budget_period_reconcile(period_id=period.pk)
    return reconciled, budget_periods_evaluate(period_ids=[period.pk], now=now)


def budget_evaluate_by_id(*, budget_id: int) -> list[AlertEvent]:
    """`budget_evaluate` for the budget with this id, if it still exists."""
    budget = Budget.objects.filter(pk=budget_id).first()
    return [] if budget is None else budget_evaluate(budget)[1]


# -- editing ----------------------------------------------------------------------------------------


def budget_save(*, budget: Budget, actor: Any, changed: list[str] | None = None) -> Budget:
    """Create or update a budget, audited. Its current period's alerts stay fired: raising the amount does
    not re-send the 50% alert this period. Once saved (the transaction committed, like every other
    dispatch here), the budget is evaluated as the sweep would (`budget_evaluate`): thresholds its scope's
    spend already crossed fire now. `changed` is the form's changed fields; empty means nothing changed,
    None that the caller does not know."""
    creating = budget.pk is None
    with transaction.atomic():
        if creating and getattr(actor, "is_authenticated", False):
            budget.created_by = actor
        budget.full_clean()
        budget.save()
        if creating:
            audit_log(actor, "budget.create", budget, scope=budget.scope, covers=budget.target_label,
                      period=budget.period, amount=str(budget.amount), hard_limit=budget.hard_limit)
        elif changed:
            audit_log(actor, "budget.update", budget, changed=sorted(changed))
        if creating or changed is None or changed:
            transaction.on_commit(lambda pk=budget.pk: tasks.budget_evaluate.delay(pk), robust=True)
    return budget


def budget_delete(*, budget: Budget, actor: Any) -> None:
    with transaction.atomic():
        audit_log(actor, "budget.delete", budget, amount=str(budget.amount))
        budget.delete()


def notifications_mark_read(*, user: Any, notification_id: int | None = None) -> int:
    """Mark one of the user's notifications (or all of them) read. Returns how many changed."""
    unread = Notification.objects.filter(user=user, read_at__isnull=True)
    if notification_id is not None:
        unread = unread.filter(pk=notification_id)
    return unread.update(read_at=timezone.now())
