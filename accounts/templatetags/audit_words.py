"""The audit log in plain words: `event|audit_details` gives (label, words) pairs, `action|audit_action` what
an action code did (accounts/audit.py)."""

from typing import Any

from django import template

from accounts import audit

register = template.Library()


@register.filter
def audit_details(event: Any) -> list[tuple[str, str]]:
    return audit.describe(event)


@register.filter
def audit_action(action: str) -> str:
    return audit.action_words(action)


@register.filter
def audit_target(target_type: str) -> str:
    return audit.target_words(target_type)
