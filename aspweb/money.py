"""Money as people read it, in one format for the whole product; never float rounding.

Two functions, and nothing else in aspweb formats dollars; templates use them as filters of the same names
(`{% load money %}`, aspweb/templatetags/money.py):

- `money` is an amount read at a glance (spend, budgets, alerts, dashboards, charts, estimates): cents
  from a dollar up, with thousands separators ("$1,234.57"), and below a dollar the first three
  significant digits, at least two decimals ("$0.15", "$0.075", "$0.00412", "$0.00000375"). Two
  different small amounts stay different: a $0.004 budget reads "$0.004", never "$0.00".
- `usd:N` is an exact figure to N decimals, trailing zeros dropped down to cents ("$0.0000375",
  "$1,234.50"): prices per million tokens and the one call's cost on its own page, where every digit
  is the bill.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

SIGNIFICANT = 3


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        return None
    return amount if amount.is_finite() else None


def _dollars(amount: Decimal, places: int) -> str:
    """`amount` to `places` decimals, grouped, trailing zeros dropped down to two decimals."""
    amount = amount.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    text = f"{abs(amount):,f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    if not fraction.strip("0") and not whole.strip("0,"):
        sign = ""  # -0.00 reads as $0.00
    return f"{sign}${whole}.{fraction}"


def usd(value: object, places: int = 6) -> str:
    """An exact figure: `places` decimals at most, two at least ($0.15, $3.00, $0.0000375, $1,234.50)."""
    amount = _decimal(value)
    return "—" if amount is None else _dollars(amount, int(places))


def money(value: object) -> str:
    """An amount to read: cents from $1 up, three significant digits below ($0.075, $0.00412)."""
    amount = _decimal(value)
    if amount is None:
        return "—"
    if amount == 0 or abs(amount) >= 1:
        return _dollars(amount, 2)
    # The position of the first significant digit decides how many decimals three of them need.
    places = max(2, SIGNIFICANT - 1 - abs(amount).adjusted())
    rounded = amount.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    if abs(rounded) >= 1:  # $0.9996 rounds up to a dollar: read it as one
        return _dollars(rounded, 2)
    return _dollars(rounded, places)

