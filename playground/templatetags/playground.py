from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from playground import markdown as markdown_module
from playground.spent import Spent
from playground.spent import conversation_spent as spent_of

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    """Markdown to sanitised HTML (see playground.markdown)."""
    return mark_safe(markdown_module.render(text or ""))  # noqa: S308 - sanitised by nh3 just above


@register.filter
def duration(ms: int | float | None) -> str:
    """850 ms, 1.84 s, 12.3 s."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


@register.simple_tag
def conversation_spent(conversation: Any) -> Spent:
    """{% conversation_spent conversation as spent %}: what its answers cost, from the usage ledger."""
    return spent_of(conversation)
