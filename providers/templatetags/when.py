"""Times as people read them: "just now", "2 minutes ago", and the exact time to the second (no
microseconds, which mean nothing to a reader and clutter a tooltip)."""

from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()

_UNITS = ((86_400, "day"), (3_600, "hour"), (60, "minute"))


@register.filter
def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago `value` was: "just now" under a minute (or a moment in the future, a clock's skew),
    else "1 minute ago", "3 hours ago", "2 days ago" (the largest whole unit); from 30 days, the date."""
    if value is None:
        return ""
    seconds = ((now or timezone.now()) - value).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds >= 30 * 86_400:
        return f"on {timezone.localtime(value):%Y-%m-%d}"
    for size, unit in _UNITS:
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"  # unreachable: a minute or more always has a unit


@register.filter
def exact(value: datetime | None) -> str:
    """The time to the second, in the site's time zone: 2026-12-05 14:29:06 UTC."""
    if value is None:
        return ""
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S %Z}"


@register.filter
def iso(value: datetime | None) -> str:
    """ISO 8601 to the second, for <time datetime>: 2026-12-05T14:29:06+00:00."""
    if value is None:
        return ""
    return timezone.localtime(value).replace(microsecond=0).isoformat()
