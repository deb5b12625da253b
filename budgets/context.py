from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from .models import Notification


def unread_notifications(request: HttpRequest) -> dict[str, Any]:
    """The bell's unread count, counted once and only when a page shows it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"unread_notifications": SimpleLazyObject(
        lambda: Notification.objects.filter(user=user, read_at__isnull=True).count())}
