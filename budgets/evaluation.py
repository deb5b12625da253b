"""Alerts after usage: every budget's current period evaluated at most once every BUDGET_EVALUATE_SECONDS
per process, off the call path, in a number of queries that does not grow with the number of budgets.

After a batch of usage records that cost something commits, `evaluation_schedule` asks for one evaluation
of all budgets unless one is already due in this process: with a worker (Celery on Redis) as a task sent
with that countdown; on the embedded default (eager tasks, no worker) on a timer thread, so that it never
runs in a request; at 0 seconds at once, on commit, in the committing thread (what tests use for
determinism). An evaluation started after a commit always sees it: a commit skips scheduling only while
an evaluation is still to start.

`budgets_evaluate` reads every budget and its current period (two queries), the soft budgets' spend from
the narrowest daily rollup, one grouped query per (target column, period) group, and writes the soft
spends that changed in bulk. A period whose spend is below its `next_alert_at` (the spend of its lowest
threshold not fired yet) costs one comparison; only those at or past it go through the firing code
(services._evaluate), which fires each alert once (a unique constraint) and moves `next_alert_at` on.
Periods that ended less than LATE_RECORDS ago are looked at too (a long call's record is written after
its period ended), without opening any. The forecast alerts are left to the sweep (every minute), which
evaluates each budget whole.
"""

import logging
import threading
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import reduce
from operator import or_
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from usage import rollups

from . import holds, periods
from .models import AlertEvent, Budget, BudgetPeriod, next_alert_at

logger = logging.getLogger(__name__)


# -- evaluating ---------------------------------------------------------------------------------------


def ledger_spends(budgets: list[Budget], now: datetime) -> dict[int, Decimal]:
    """What the ledger says each budget's scope spent in its current period: one query per target column
    and period span (at most eight columns times four kinds of period), not one per budget."""
    groups: dict[tuple[str | None, periods.Span], list[Budget]] = defaultdict(list)
    for budget in budgets:
        groups[(budget.target_column, budget.span_at(now))].append(budget)
    spends = {budget.pk: Decimal(0) for budget in budgets}
    for (column, span), members in groups.items():
        rows = rollups.table_for([column] if column else []).objects.all()
        if span.end is not None:
            rows = rows.filter(day__gte=span.start, day__lt=span.end)
        if column is None:
            total = rows.aggregate(total=Sum("cost"))["total"] or Decimal(0)
            for budget in members:
                spends[budget.pk] = total
            continue
        targets = {budget.target_value for budget in members}
        totals = dict(rows.filter(**{f"{column}__in": targets}).order_by().values(column)
                      .annotate(total=Sum("cost")).values_list(column, "total"))
        for budget in members:
            spends[budget.pk] = totals.get(budget.target_value) or Decimal(0)
    return spends


# A call's record counts in the period its call started in, and a long call's record may be written after
# that period ended: the evaluation also looks at the periods that ended this long ago, so that a threshold
# such a record crosses still fires.
LATE_RECORDS = timedelta(minutes=15)


def budgets_evaluate(*, now: datetime | None = None) -> list[AlertEvent]:
    """Bring the soft budgets' current periods to the ledger's spend, open the periods no call opened yet,
    and fire the threshold alerts due; then the same for periods that ended less than LATE_RECORDS ago.
    Returns the alerts fired."""
    now = now or timezone.now()
    budgets = {budget.pk: budget for budget in Budget.objects.order_by("pk")}
    if not budgets:
        return []
    fired = _evaluate_at(budgets, now, now, open_missing=True)
    earlier = now - LATE_RECORDS
    ended = {pk: budget for pk, budget in budgets.items() if budget.span_at(earlier) != budget.span_at(now)}
    if ended:
        fired += _evaluate_at(ended, earlier, now, open_missing=False)
    return fired


def _evaluate_at(budgets: dict[int, Budget], at: datetime, now: datetime, *,
                 open_missing: bool) -> list[AlertEvent]:
    """budgets_evaluate for the periods in force at `at`; `open_missing`: open those that have no row yet
    (a period that ended without one had no spend to evaluate)."""
    from .services import _evaluate

    spans = {pk: budget.span_at(at) for pk, budget in budgets.items()}
    current = _current_periods(budgets, spans)
    missing = [pk for pk in budgets if pk not in current] if open_missing else []
    soft = [budget for pk, budget in budgets.items() if not budget.hard_limit or pk in missing]
    spends = ledger_spends(soft, at) if soft else {}
    if missing:
        BudgetPeriod.objects.bulk_create([
            BudgetPeriod(budget_id=pk, start=spans[pk].start, end=spans[pk].end, spent=spends[pk],
                         next_alert_at=next_alert_at(budgets[pk], set()))
            for pk in missing
        ], ignore_conflicts=True)  # a call or another evaluation may open one at the same moment: theirs stands
        current.update(_current_periods(budgets, spans, only=missing))
    changed = []
    for period in current.values():
        budget = period.budget
        if not budget.hard_limit and period.spent != spends[budget.pk]:
            period.spent = spends[budget.pk]
            changed.append(period)
    if changed:
        BudgetPeriod.objects.bulk_update(changed, ["spent"])
    fired: list[AlertEvent] = []
    for pk in sorted(current):
        period = current[pk]
        if period.next_alert_at is not None and period.spent > 0 and period.spent >= period.next_alert_at:
            fired.extend(_evaluate(period, now))
    return fired


def _current_periods(budgets: dict[int, Budget], spans: dict[int, periods.Span],
                     only: list[int] | None = None) -> dict[int, BudgetPeriod]:
    """Each budget's period row for its span, where there is one: one query, by kind of period and start
    (`only`: of these budgets alone)."""
    starts: set[tuple[str, date]] = {(budgets[pk].period, spans[pk].start) for pk in only or budgets}
    rows = BudgetPeriod.objects.filter(reduce(or_, (Q(budget__period=kind, start=start) for kind, start in starts)))
    if only is not None:
        rows = rows.filter(budget_id__in=only)
    current = {}
    for period in rows:
        budget = budgets.get(period.budget_id)
        if budget is not None and period.start == spans[budget.pk].start:
            period.budget = budget
            current[budget.pk] = period
    return current


# -- scheduling ---------------------------------------------------------------------------------------

_lock = threading.Lock()
# time.monotonic() at which the evaluation this process scheduled last starts; until then, none is needed.
_due: list[float] = [0.0]


def evaluation_schedule() -> None:
    """Ask for one evaluation of every budget, unless one this process asked for has not started yet. Run
    when usage records that cost something committed (never in their transaction)."""
    from . import tasks

    delay = float(settings.BUDGET_EVALUATE_SECONDS)
    if delay <= 0:
        budgets_evaluate()
        return
    with _lock:
        now = time.monotonic()
        if now < _due[0]:
            return
        _due[0] = now + delay
    if tasks.budgets_evaluate.app.conf.task_always_eager:
        # No worker to send it to: a thread of its own, out of every request.
        timer = threading.Timer(delay, _evaluate_on_timer)
        timer.daemon = True
        timer.start()
    else:
        tasks.budgets_evaluate.apply_async(countdown=delay)


def _evaluate_on_timer() -> None:
    try:
        budgets_evaluate()
    except Exception:
        logger.exception("Budget evaluation failed; the sweep evaluates every budget within a minute")
    finally:
        connections.close_all()  # this thread's own


def records_written(sender: Any, records: list, **kwargs: Any) -> None:
    """usage.signals.records_written: charge the hard limits in the batch's transaction, and once it
    commits schedule the evaluation, when a record cost something and any budget exists."""
    if holds.usage_records_charge(records) and holds.budgets_all():
        transaction.on_commit(evaluation_schedule, robust=True)
