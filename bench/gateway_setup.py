"""What the gateway benchmark seeds and checks, apart from how it measures (bench/gateway_bench.py).

- The rows every run needs: the provider at the fake upstream, its priced model, and an API key owned by a
  person, as keys are in an organisation.
- With --budgets, the budgets a real organisation has: ten covering every bench call (BENCH_BUDGETS) and
  a monthly budget per person for a thousand other people, so that the call path looks its budgets up
  among a realistic number of rows. Every amount is far above what a run can spend: no call is refused.
- Exactly once: after a run, the ledger must hold one usage record per call that the client saw
  succeed. Where the record is written after the answer (or by another process), the count is polled
  until it stops moving.

Django must be set up (by the caller, with the run's environment) before the seeding or counting.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

UPSTREAM_MODEL = "fake-model-a"
# The embedding model of `latency --endpoint embeddings`, priced as OpenAI's text-embedding-3-small.
UPSTREAM_EMBED_MODEL = "fake-embed"
OWNER_EMAIL = "bench-owner@bench.example"
# Far above any run's spend (a bench call costs about $0.00003): alerts never fire, hard limits never refuse.
AMOUNT = Decimal("1000000")
OTHER_PEOPLE = 1000

# (name, scope, period, hard limit, forecast alert): five hard limits, five soft; each covers every bench call.
BENCH_BUDGETS: tuple[tuple[str, str, str, bool, bool], ...] = (
    ("Company, monthly", "global", "monthly", True, True),
    ("Company, daily watch", "global", "daily", False, False),
    ("Provider bench, monthly cap", "provider", "monthly", True, False),
    ("Provider bench, weekly watch", "provider", "weekly", False, False),
    ("Model fake-model-a, monthly cap", "model", "monthly", True, False),
    ("Model fake-model-a, daily watch", "model", "daily", False, True),
    ("Bench key, monthly cap", "api_key", "monthly", True, False),
    ("Bench key, daily watch", "api_key", "daily", False, False),
    ("Key owner, monthly cap", "user", "monthly", True, False),
    ("Key owner, all-time watch", "user", "total", False, False),
)


def seed(upstream_url: str, kind: str, *, budgets: bool) -> str:
    """The provider, its priced chat and embedding models and an API key owned by a person; with `budgets`, the
    10 + 1,000 budgets. Returns the key's text."""
    from django.contrib.auth import get_user_model

    from gateway import apikeys
    from providers.models import Model, Price, Provider

    provider, _ = Provider.objects.update_or_create(
        name="bench", archived_at=None,
        defaults={"kind": kind, "base_url": upstream_url, "api_key": "sk-bench-0001", "max_retries": 0})
    model, created = Model.objects.get_or_create(provider=provider, name=UPSTREAM_MODEL)
    if created:
        Price.objects.create(model=model, input=Decimal("1"), output=Decimal("2"))
    embed, created = Model.objects.get_or_create(provider=provider, name=UPSTREAM_EMBED_MODEL,
                                                 defaults={"type": Model.Type.EMBEDDING})
    if created:
        Price.objects.create(model=embed, input=Decimal("0.02"), output=Decimal("0"))
    owner, _ = get_user_model().objects.get_or_create(email=OWNER_EMAIL, defaults={"name": "Bench owner"})
    key, raw = apikeys.api_key_create(name="bench", user=owner, actor="bench")
    if budgets:
        budgets_seed(provider=provider, model=model, key=key, owner=owner)
    return raw


def budget_rows(*, provider: Any, model: Any, key: Any, owner: Any, others: list[Any]) -> list[dict[str, Any]]:
    """The fields of every budget to seed: BENCH_BUDGETS on the bench call's targets, then one monthly
    budget per other person (every third a hard limit)."""
    targets = {"global": {}, "provider": {"provider": provider}, "model": {"model": model},
               "api_key": {"api_key": key}, "user": {"user": owner}}
    rows = [{"name": name, "scope": scope, "period": period, "hard_limit": hard, "forecast": forecast,
             "amount": AMOUNT, **targets[scope]}
            for name, scope, period, hard, forecast in BENCH_BUDGETS]
    rows += [{"name": f"{person.email}, monthly", "scope": "user", "period": "monthly",
              "hard_limit": index % 3 == 0, "forecast": False, "amount": AMOUNT, "user": person}
             for index, person in enumerate(others)]
    return rows


def budgets_seed(*, provider: Any, model: Any, key: Any, owner: Any) -> None:
    """Bulk-created, before any aspweb process starts (so that nothing kept has to be dropped)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from budgets.models import Budget

    User = get_user_model()
    unusable = make_password(None)
    User.objects.bulk_create([User(email=f"person{number:04d}@bench.example", name=f"Person {number}",
                                   password=unusable) for number in range(OTHER_PEOPLE)], batch_size=500)
    others = list(User.objects.filter(email__startswith="person", email__endswith="@bench.example")
                  .order_by("email"))
    Budget.objects.bulk_create([Budget(**row) for row in budget_rows(provider=provider, model=model, key=key,
                                                                     owner=owner, others=others)],
                               batch_size=500)


# -- exactly once ----------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """The ledger after a run, against what the client saw."""

    calls: int  # answers with status 200 the client received from aspweb
    records: int  # usage records with status ok
    other_records: int  # usage records of any other status (errors, cancellations)
    waited: float  # seconds the ledger took to settle

    @property
    def exact(self) -> bool:
        return self.records == self.calls and self.other_records == 0

    def line(self) -> str:
        verdict = "exactly once" if self.exact else "NOT EXACTLY ONCE"
        return (f"ledger: {self.records:,} usage records (ok) and {self.other_records:,} others for "
                f"{self.calls:,} successful calls, settled in {self.waited:.1f} s: {verdict}")


def settle(count: Callable[[], tuple[int, int]], expected: int, *, quiet: float = 2.0, timeout: float = 120.0,
           poll: float = 0.25, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> tuple[int, int, float]:
    """Poll `count` (ok records, other records) until it has not changed for `quiet` seconds and has
    reached `expected`, or until `timeout`: a record written late, or twice, is still seen. Returns the last
    counts and the seconds waited."""
    started = clock()
    last = count()
    since = started
    while True:
        now = clock()
        if (now - since >= quiet and last[0] + last[1] >= expected) or now - started >= timeout:
            return last[0], last[1], now - started
        sleep(poll)
        current = count()
        if current != last:
            last, since = current, clock()


def ledger_check(calls: int, **settle_options: Any) -> Ledger:
    """Wait for the ledger to settle and compare it with `calls`."""
    from django.db import connection

    from usage.models import UsageRecord

    def count() -> tuple[int, int]:
        ok = UsageRecord.objects.filter(status=UsageRecord.Status.OK).count()
        return ok, UsageRecord.objects.count() - ok

    try:
        records, others, waited = settle(count, calls, **settle_options)
    finally:
        connection.close()
    return Ledger(calls=calls, records=records, other_records=others, waited=waited)


def bodies_line(logged_calls: int) -> str:
    """How many prompts and answers the ledger holds against the successful calls that logged them."""
    from django.db import connection

    from usage.models import CallBody

    try:
        stored = CallBody.objects.count()
    finally:
        connection.close()
    verdict = "one per call" if stored == logged_calls else "NOT ONE PER CALL"
    return f"logged bodies: {stored:,} for {logged_calls:,} successful logged calls: {verdict}"
