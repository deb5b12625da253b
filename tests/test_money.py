from decimal import Decimal

import pytest

from aspweb.money import money, usd


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.15"), "$0.15"),
        (Decimal("0.150000"), "$0.15"),
        (Decimal("3"), "$3.00"),
        (Decimal("0.075"), "$0.075"),
        (Decimal("0.0000004"), "$0.00"),
        (Decimal("12.3456789"), "$12.345679"),
        (Decimal("1234567.5"), "$1,234,567.50"),
        (Decimal("-0.0000001"), "$0.00"),
        (None, "—"),
        ("abc", "—"),
        (Decimal("NaN"), "—"),
    ],
)
def test_usd_is_exact_to_its_places(value: object, text: str) -> None:
    assert usd(value) == text


def test_usd_with_fewer_places() -> None:
    assert usd(Decimal("1.23456"), 2) == "$1.23"
    assert usd(Decimal("0.00000375"), 12) == "$0.00000375"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.004"), "$0.004"),  # the budget that used to read $0.00
        (Decimal("0.0048"), "$0.0048"),
        (Decimal("0.00000375"), "$0.00000375"),
        (Decimal("0.0041234"), "$0.00412"),
        (Decimal("0.0041239"), "$0.00412"),
        (Decimal("0.0041250"), "$0.00413"),
        (Decimal("0.15"), "$0.15"),
        (Decimal("0.1"), "$0.10"),
        (Decimal("0.123456"), "$0.123"),
        (Decimal("0.075"), "$0.075"),
        (Decimal("0.99996"), "$1.00"),
        (Decimal("1"), "$1.00"),
        (Decimal("1.005"), "$1.01"),
        (Decimal("12.3456"), "$12.35"),
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("98765432.109"), "$98,765,432.11"),
        (Decimal("0"), "$0.00"),
        (Decimal("0E-10"), "$0.00"),
        (0, "$0.00"),
        (2.5, "$2.50"),
        ("0.0125", "$0.0125"),
        (Decimal("-0.004"), "-$0.004"),
        (Decimal("-1234.5"), "-$1,234.50"),
        (None, "—"),
        ("", "—"),
        ("abc", "—"),
        (Decimal("Infinity"), "—"),
    ],
)
def test_money_reads_at_a_glance(value: object, text: str) -> None:
    assert money(value) == text


def test_money_tells_small_amounts_apart() -> None:
    amounts = [Decimal("0.004"), Decimal("0.0048"), Decimal("0.005"), Decimal("0.0051")]
    assert len({money(a) for a in amounts}) == len(amounts)

