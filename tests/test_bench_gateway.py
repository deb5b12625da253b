"""The gateway benchmark's own helpers (bench/gateway_setup.py): the budgets it seeds and the ledger's
exactly-once count. The measuring itself is the benchmark's, not a test's."""

from decimal import Decimal
from types import SimpleNamespace

from bench.gateway_setup import AMOUNT, BENCH_BUDGETS, Ledger, budget_rows, settle


def _rows(others: int = 4) -> list[dict]:
    people = [SimpleNamespace(email=f"person{n}@bench.example") for n in range(others)]
    return budget_rows(provider="the provider", model="the model", key="the key", owner="the owner", others=people)


def test_ten_budgets_cover_the_bench_call_in_every_scope_hard_and_soft():
    rows = _rows()[:len(BENCH_BUDGETS)]
    assert len(rows) == 10
    assert {row["scope"] for row in rows} == {"global", "provider", "model", "api_key", "user"}
    assert sum(row["hard_limit"] for row in rows) == 5
    targets = {"provider": "the provider", "model": "the model", "api_key": "the key", "user": "the owner"}
    for row in rows:
        if row["scope"] in targets:
            assert row[row["scope"]] == targets[row["scope"]], row
        else:
            assert not set(targets) & set(row), row


def test_other_people_each_get_one_budget_that_never_refuses():
    rows = _rows(others=6)
    others = rows[len(BENCH_BUDGETS):]
    assert [row["user"].email for row in others] == [f"person{n}@bench.example" for n in range(6)]
    assert all(row["scope"] == "user" for row in others)
    assert 0 < sum(row["hard_limit"] for row in others) < len(others)
    assert all(row["amount"] == AMOUNT >= Decimal(1000) for row in rows)
    assert len({row["name"] for row in rows}) == len(rows)


class FakeLedger:
    """Records that appear over time: `counts` is what successive reads see; time moves by each sleep."""

    def __init__(self, counts: list[tuple[int, int]]) -> None:
        self.counts, self.now = counts, 0.0

    def count(self) -> tuple[int, int]:
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _settle(counts: list[tuple[int, int]], expected: int) -> tuple[int, int, float]:
    fake = FakeLedger(counts)
    return settle(fake.count, expected, quiet=1.0, timeout=10.0, poll=0.5, clock=lambda: fake.now, sleep=fake.sleep)


def test_settle_waits_for_late_records():
    records, others, waited = _settle([(3, 0), (3, 0), (7, 0), (10, 0)], expected=10)
    assert (records, others) == (10, 0)
    assert waited >= 1.5 + 1.0  # the last change, then a quiet second


def test_settle_sees_a_record_written_twice_after_reaching_the_count():
    assert _settle([(10, 0), (11, 0)], expected=10)[:2] == (11, 0)


def test_settle_gives_up_at_the_timeout_when_records_are_missing():
    records, _, waited = _settle([(9, 0)], expected=10)
    assert records == 9
    assert waited == 10.0


def test_ledger_is_exact_only_with_one_ok_record_per_successful_call_and_nothing_else():
    assert Ledger(calls=5, records=5, other_records=0, waited=0).exact
    assert not Ledger(calls=5, records=4, other_records=0, waited=0).exact
    assert not Ledger(calls=5, records=6, other_records=0, waited=0).exact
    assert not Ledger(calls=5, records=5, other_records=1, waited=0).exact
    assert "NOT EXACTLY ONCE" in Ledger(calls=5, records=6, other_records=0, waited=0).line()
