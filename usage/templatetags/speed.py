"""A call's output speed as people read it, the same wherever it is shown: a usage record (the calls list,
a call's page) or a playground answer, from their output tokens, latency and time to first token."""

from typing import Any

from django import template

from usage.models import tokens_per_second

register = template.Library()


@register.filter
def speed(call: Any) -> str:
    """"87 tok/s" ("8.5 tok/s" below ten), or "—" where usage.models.tokens_per_second has no answer."""
    rate = tokens_per_second(getattr(call, "output_tokens", None), getattr(call, "latency_ms", None),
                             getattr(call, "ttft_ms", None))
    if rate is None:
        return "—"
    return f"{rate:.1f} tok/s" if rate < 9.95 else f"{rate:,.0f} tok/s"
