from django import template
from django.utils.safestring import SafeString, mark_safe

from playground import markdown as markdown_module

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
