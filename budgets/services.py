"""Budgets: hard limits by reservation, spend kept equal to the ledger, alerts fired exactly once.

The call path's part (reserving before a call, charging hard limits at the ledger write) is in
budgets/holds.py, and the evaluation of every budget after usage in budgets/evaluation.py; their public
names are imported here too, for the rest of the app.

`spent` of a hard-limit budget's period is the ledger's sum for its scope and period: a period row starts
from the daily rollup, each batch of records adds its cost in its own transaction, and the sweep
reconciles the two under the period's row lock (which also brings in re-pricing). A soft budget's period
takes the ledger's sum at each evaluation (seconds after usage) and at the sweep; its pages read the ledger.
Alerts are AlertEvent rows with a unique constraint per budget, period, kind and threshold: whoever inserts
first fires it; everyone else gets an IntegrityError and fires nothing.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from accounts.audit import audit_log
from aspweb.roles import ADMIN, FINANCE, has_role

from . import notify, periods, tasks
from .holds import (  # noqa: F401 (the budgets' public names, for the rest of the app)
    MONEY_PLACES,
    BudgetExceeded,
    _ledger_rows,
    budget_period_get,
    budget_reserve,
    cached_budgets,
    ledger_spend,
    reservations_release_expired,
)
from .models import AlertEvent, Budget, BudgetPeriod, Delivery, Notification, next_alert_at

logger = logging.getLogger(__name__)


# -- which budgets ----------------------------------------------------------------------------------


def budgets_visible_to(user: Any) -> QuerySet[Budget]:
    """Finance and admins see every budget; anyone else the ones that apply to their calls: global, provider
    and model budgets, their own user budget, those of their API keys and those of their teams (a team's
    spend is a total, as "My usage" shows it). Tag and end-user budgets count anyone's calls: not theirs."""
    budgets = Budget.objects.select_related("provider", "model__provider", "user", "api_key", "team")
    if has_role(user, ADMIN, FINANCE):
        return budgets
    teams = user.teams.values("pk") if getattr(user, "is_authenticated", False) else []
    return budgets.filter(Q(scope__in=[Budget.Scope.GLOBAL, Budget.Scope.PROVIDER, Budget.Scope.MODEL])
                          | Q(scope=Budget.Scope.USER, user=user)
                          | Q(scope=Budget.Scope.API_KEY, api_key__user=user)
                          | Q(scope=Budget.Scope.TEAM, team__in=teams))


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
    after = next_alert_at(budget, {t for kind, t in done if kind == AlertEvent.Kind.THRESHOLD} | set(crossed))
    if after != period.next_alert_at:
        # The next threshold to watch for: past the ones fired now, or moved by a changed amount or thresholds.
        BudgetPeriod.objects.filter(pk=period.pk).update(next_alert_at=after)
        period.next_alert_at = after
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
