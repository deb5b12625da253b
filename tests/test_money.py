from decimal import Decimal

import pytest

from providers.templatetags.money import usd


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.15"), "$0.15"),
        (Decimal("0.150000"), "$0.15"),
        (Decimal("3"), "$3.00"),
        (Decimal("0.075"), "$0.075"),
        (Decimal("0.0000004"), "$0.00"),
        (Decimal("12.3456789"), "$12.345679"),
        (None, "—"),
        ("abc", "—"),
    ],
)
def test_usd(value: object, text: str) -> None:
    assert usd(value) == text


def test_usd_with_fewer_places() -> None:
    assert usd(Decimal("1.23456"), 2) == "$1.23"
