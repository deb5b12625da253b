"""usage_records_create: many records in one transaction, priced and rolled up as one by one, charged to
the budgets in a few queries per batch, and no record lost when another of its batch cannot be written."""

import random
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from budgets import services as budget_services
from budgets.models import Budget, BudgetPeriod, Reservation
from gateway.models import ApiKey
from providers import prices
from providers.models import Model, Price
from tests.budgets_support import (
    ON_POSTGRESQL,
    SQLITE_REASON,
    ensure_role_groups,
    evaluated,
    make_budget,
    make_model,
    period_of,
)
from tests.usage_support import assert_rollups_exact, spec
from usage import services
from usage.models import DailyUsage, UsageRecord

WHEN = datetime(2025, 5, 1, 12, tzinfo=UTC)


def _specs(models: list[Model], people: list[User | None], n: int, *, seed: int = 1, **fields: object) -> list[dict]:
    """n varied calls over `models` and `people`, over two days."""
    rng = random.Random(seed)
    return [spec(rng.choice(models), user=rng.choice(people), created_at=WHEN + timedelta(hours=rng.randrange(48)),
                 source=rng.choice(["playground", "gateway", "cli"]),
                 status=rng.choice(["ok", "ok", "error", "cancelled"]),
                 input_tokens=rng.randrange(5000), cache_read_tokens=rng.choice([0, rng.randrange(900)]),
                 output_tokens=rng.randrange(900), usage_estimated=rng.random() < 0.2,
                 latency_ms=rng.choice([None, rng.randrange(9000)]), ttft_ms=rng.choice([None, 80]), **fields)
            for _ in range(n)]


@pytest.fixture
def models(db: None) -> list[Model]:
    return [make_model("m1"), make_model("m2"), make_model("m3", provider="p2")]


def test_a_batch_equals_the_same_records_written_one_by_one(models: list[Model],
                                                            make_user: Callable[..., User]) -> None:
    people = [make_user("member", email=f"u{n}@example.com") for n in range(3)] + [None]
    specs = _specs(models, people, 80)
    records = services.usage_records_create(specs)
    assert len(records) == 80 and all(r.pk for r in records)
    assert_rollups_exact()
    batched = {table: list(table.objects.order_by("key").values()) for table in (DailyUsage,)}
    totals = sorted((r.request_id, r.cost, r.price_id) for r in UsageRecord.objects.all())

    UsageRecord.objects.all().delete()
    for table in batched:
        table.objects.all().delete()
    for one, record in zip(specs, records, strict=True):
        services.usage_record_create(**{**one, "request_id": record.request_id})
    assert sorted((r.request_id, r.cost, r.price_id) for r in UsageRecord.objects.all()) == totals
    assert [{k: v for k, v in row.items() if k != "id"} for row in DailyUsage.objects.order_by("key").values()] == [
        {k: v for k, v in row.items() if k != "id"} for row in batched[DailyUsage]]


def test_each_record_is_priced_at_the_version_in_force_at_its_time(models: list[Model]) -> None:
    model = models[0]
    Price.objects.create(model=model, effective_from=WHEN - timedelta(days=1), input=Decimal("10"),
                         output=Decimal("20"))
    later = Price.objects.create(model=model, effective_from=WHEN, input=Decimal("30"), output=Decimal("40"))
    records = services.usage_records_create([
        spec(model, created_at=WHEN - timedelta(seconds=1), input_tokens=100, output_tokens=0),
        spec(model, created_at=WHEN, input_tokens=1000, output_tokens=0),
        spec(model, created_at=WHEN, input_tokens=1000, output_tokens=0, cached=True),
        spec(models[1], created_at=WHEN, input_tokens=1000, output_tokens=0),
    ])
    assert [r.cost for r in records] == [Decimal("0.001"), Decimal("0.03"), 0, Decimal("0.001")]
    assert records[1].price == later == model.price_at(WHEN) and records[2].price is None
    assert [r.price for r in records] == [None if r.cached else r.model.price_at(r.created_at) for r in records]


def test_a_batch_costs_the_same_queries_however_many_records_it_holds(models: list[Model],
                                                                      make_user: Callable[..., User]) -> None:
    people = [make_user("member", email=f"u{n}@example.com") for n in range(4)]
    counts = []
    # SQLite takes at most 999 parameters a statement: beyond 30 records its inserts come in several.
    for n, size in enumerate((5, 200) if ON_POSTGRESQL else (5, 30)):
        specs = _specs(models, people, size, seed=n)
        # Each batch reads its models' prices (one query a model) and the budgets afresh.
        prices.price_versions.forget()
        budget_services.cached_budgets.forget()
        with CaptureQueriesContext(connection) as queries:
            services.usage_records_create(specs)
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert_rollups_exact()


def test_no_budget_costs_one_query_and_a_budget_made_now_is_charged_from_the_next_record(
        models: list[Model]) -> None:
    model = models[0]
    with CaptureQueriesContext(connection) as queries:
        services.usage_records_create([spec(model, input_tokens=1_000_000, output_tokens=0)] * 3)
    budget_queries = [q["sql"] for q in queries if "budgets_" in q["sql"]]
    assert len(budget_queries) == 1  # "is there any budget?"

    budget = make_budget(amount=Decimal(100), hard_limit=True)
    budget_services.budget_period_get(budget, budget.span_at(datetime.now(UTC)))
    assert period_of(budget).spent == 3  # the month so far, from the ledger
    services.usage_records_create([spec(model, input_tokens=1_000_000, output_tokens=0)] * 2)
    assert period_of(budget).spent == 5


def test_a_batch_settles_its_reservations_and_charges_every_budget_covering_each_record(
        models: list[Model], make_user: Callable[..., User], database_holds: None) -> None:
    alice, bob = make_user("member", email="alice@example.com"), make_user("member", email="bob@example.com")
    key = ApiKey.objects.create(name="ci", user=bob, prefix="asp_ci", key_hash="1" * 64)
    now = datetime.now(UTC)
    every = make_budget("All", amount=Decimal(1000), hard_limit=True)
    for_alice = make_budget("Alice", scope=Budget.Scope.USER, user=alice, amount=Decimal(1000), hard_limit=True)
    for_key = make_budget("Key", scope=Budget.Scope.API_KEY, api_key=key, amount=Decimal(1000), hard_limit=True)
    for_m2 = make_budget("m2", scope=Budget.Scope.MODEL, model=models[1], amount=Decimal(1000))  # soft
    for budget in (every, for_alice, for_key, for_m2):  # periods that exist: the batch adds to them
        budget_services.budget_period_get(budget, budget.span_at(now))
    ids = [uuid.uuid4() for _ in range(30)]
    for request_id in ids[:20]:
        Reservation.objects.create(request_id=request_id, period=period_of(every), amount=Decimal("0.5"),
                                   expires_at=now + timedelta(minutes=5))
    BudgetPeriod.objects.filter(budget=every).update(reserved=Decimal(10))
    rng = random.Random(3)
    specs = [spec(rng.choice(models), request_id=request_id, created_at=now, user=rng.choice([alice, bob, None]),
                  input_tokens=rng.randrange(1, 10**6), output_tokens=0) for request_id in ids]
    for one in specs[::3]:
        one["api_key"], one["user"] = key, bob
    records = services.usage_records_create(specs)

    assert not Reservation.objects.exists() and period_of(every).reserved == 0
    assert period_of(every).spent == sum(r.cost for r in records)
    assert period_of(for_alice).spent == sum(r.cost for r in records if r.user_id == alice.pk) > 0
    assert period_of(for_key).spent == sum(r.cost for r in records if r.api_key_id == key.pk) > 0
    # The soft budget is not charged per record: its spend comes from the ledger when budgets are evaluated.
    assert period_of(for_m2).spent == 0
    assert evaluated(for_m2).spent == sum(r.cost for r in records if r.model_id == models[1].pk) > 0


def test_a_budget_period_opened_by_a_batch_counts_the_batch_once(models: list[Model]) -> None:
    budget = make_budget(amount=Decimal(100), hard_limit=True)
    records = services.usage_records_create([spec(models[0], input_tokens=1_000_000, output_tokens=0)] * 4)
    assert period_of(budget).spent == sum(r.cost for r in records) == 4


@pytest.mark.django_db(transaction=True)
def test_a_record_that_cannot_be_written_does_not_take_its_batch_with_it(models: list[Model]) -> None:
    gone = make_model("gone")
    Model.objects.filter(pk=gone.pk).delete()  # deleted meanwhile; the instance keeps its id
    specs = [spec(models[0], input_tokens=n + 1) for n in range(3)]
    specs.insert(1, spec(gone))
    with pytest.raises(services.UsageRecordsFailed) as failed:
        services.usage_records_create(specs)
    assert list(failed.value.errors) == [1]
    assert failed.value.records[1] is None and all(failed.value.records[n].pk for n in (0, 2, 3))
    assert sorted(UsageRecord.objects.values_list("input_tokens", flat=True)) == [1, 2, 3]
    assert_rollups_exact()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("alone", [True, False], ids=["alone", "in a batch"])
def test_a_record_whose_person_team_or_new_key_was_deleted_meanwhile_is_written_without_them(
        models: list[Model], make_user: Callable[..., User], alone: bool) -> None:
    from accounts.models import Team
    from tests.gateway_support import make_key

    person, team = make_user("member"), Team.objects.create(name="Gone soon")
    key = make_key(person, name="new key")[0]
    waiting = spec(models[0], user=person, team_id=team.pk, api_key=key, input_tokens=7)
    ApiKey.objects.filter(pk=key.pk).delete()  # it has no record yet
    User.objects.filter(pk=person.pk).delete()
    Team.objects.filter(pk=team.pk).delete()

    written = services.usage_records_create([waiting] if alone else [spec(models[1], input_tokens=1), waiting])

    record = UsageRecord.objects.get(input_tokens=7)
    assert record.pk == written[-1].pk and record.cost == written[-1].cost > 0
    assert (record.user_id, record.team_id, record.api_key_id) == (None, None, None)
    assert UsageRecord.objects.count() == (1 if alone else 2)
    assert_rollups_exact()


@pytest.mark.django_db(transaction=True)
def test_one_record_that_cannot_be_written_raises_its_own_error() -> None:
    model = make_model("gone")
    Model.objects.filter(pk=model.pk).delete()
    with pytest.raises(Exception) as failed:
        services.usage_record_create(**spec(model))
    assert not isinstance(failed.value, services.UsageRecordsFailed)
    assert not UsageRecord.objects.exists() and not DailyUsage.objects.exists()


@pytest.mark.skipif(not ON_POSTGRESQL, reason=SQLITE_REASON)
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_keep_every_rollup_table_and_the_budgets_exact_on_postgresql() -> None:
    """Batches that touch the same rows in every order: no deadlock, nothing lost, every table exact."""
    ensure_role_groups()
    models = [make_model("m1"), make_model("m2"), make_model("m3", provider="p2")]
    people = [User.objects.create_user(f"u{n}@example.com", "x") for n in range(3)] + [None]
    every = make_budget("All", amount=Decimal(10**6), hard_limit=True)
    for_user = make_budget("One", scope=Budget.Scope.USER, user=people[0], amount=Decimal(10**6), hard_limit=True)
    soft = make_budget("Soft", scope=Budget.Scope.USER, user=people[1], amount=Decimal(10**6))
    threads, batches, size = 6, 8, 40
    start = threading.Barrier(threads)
    errors: list[BaseException] = []
    now = datetime.now(UTC)

    def writer(n: int) -> None:
        try:
            start.wait()
            for b in range(batches):
                specs = _specs(models, people, size, seed=n * 100 + b)
                for one in specs:
                    one["created_at"] = now  # this month: every record is charged
                random.Random(b).shuffle(specs)
                services.usage_records_create(specs)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    assert UsageRecord.objects.count() == threads * batches * size
    assert_rollups_exact()
    records = list(UsageRecord.objects.all())
    assert period_of(every).spent == sum(r.cost for r in records)
    assert period_of(for_user).spent == sum(r.cost for r in records if r.user_id == people[0].pk)
    assert evaluated(soft).spent == sum(r.cost for r in records if r.user_id == people[1].pk)
