"""Money as people read it: USD with the digits that matter, never float rounding."""

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()


@register.filter
def usd(value: Decimal | int | str | None, places: int = 6) -> str:
    """$0.15, $3.00, $0.075, $0.000123: at least 2 and at most `places` decimals, no trailing zeros."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(value).quantize(Decimal(1).scaleb(-int(places)))
    except (InvalidOperation, ValueError):
        return "—"
    text = f"{amount:f}"
    if "." in text:
        whole, fraction = text.split(".")
        fraction = fraction.rstrip("0").ljust(2, "0")
        text = f"{whole}.{fraction}"
    else:
        text += ".00"
    return f"${text}"
