"""Budget tasks: thin, they take ids and call one service. Dispatched with transaction.on_commit; run
inline when CELERY_TASK_ALWAYS_EAGER (the embedded default), by `celery -A aspweb worker -B` otherwise."""

from celery import shared_task
from celery.exceptions import Retry
from django.conf import settings

from . import evaluation, services


@shared_task(ignore_result=True)
def budgets_evaluate(period_ids: list[int] | None = None) -> None:
    """After usage records (evaluation.evaluation_schedule, debounced): bring every budget's current period
    up to date and fire the alerts due. `period_ids`: those periods alone, as a task sent by an older
    version asked."""
    if period_ids is None:
        evaluation.budgets_evaluate()
    else:
        services.budget_periods_evaluate(period_ids=period_ids)


@shared_task(ignore_result=True)
def budget_evaluate(budget_id: int) -> None:
    """After a budget is made or changed: fire the alerts its current period's spend already calls for."""
    services.budget_evaluate_by_id(budget_id=budget_id)


@shared_task(ignore_result=True)
def budgets_sweep() -> None:
    """The beat's pass (CELERY_BEAT_SCHEDULE): roll-overs, forecasts, expired reservations."""
    services.budgets_sweep()


@shared_task(bind=True, ignore_result=True, max_retries=settings.ALERT_DELIVERY_RETRIES)
def alert_deliver(self, delivery_id: int) -> Retry | None:
    """Send one delivery; retried with exponential backoff while the failure is worth retrying. Returned,
    not raised: a worker schedules the retry all the same, and an eager run (no worker) makes it at once
    instead of propagating the Retry to whoever dispatched the task."""
    last_try = self.request.retries >= self.max_retries
    if services.delivery_attempt(delivery_id=delivery_id, last_try=last_try):
        return self.retry(countdown=services.delivery_backoff(self.request.retries), throw=False)
    return None
