"""Reconciliation tasks: thin, they call one service. The beat runs `reconcile_daily` (CELERY_BEAT_SCHEDULE)."""

import logging

from celery import shared_task
from celery.exceptions import Retry
from django.conf import settings

from budgets import notify
from budgets.services import delivery_backoff

from . import alerts, services

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def reconcile_daily() -> None:
    """Every provider with a reporting key, its completed days not settled yet; idempotent."""
    services.reconcile_completed_days()


@shared_task(bind=True, ignore_result=True, max_retries=settings.ALERT_DELIVERY_RETRIES)
def drift_alert_deliver(self, check_id: int, channel: str) -> Retry | None:
    """Send a drift alert by e-mail or webhook, retried as budget alerts are."""
    try:
        alerts.deliver(check_id, channel)
    except notify.DeliveryError as exc:
        retry = exc.retryable and self.request.retries < self.max_retries
        logger.warning("Drift alert %s (%s) failed%s: %s", check_id, channel, ", retrying" if retry else "", exc)
        if retry:
            return self.retry(countdown=delivery_backoff(self.request.retries), throw=False)
    return None
