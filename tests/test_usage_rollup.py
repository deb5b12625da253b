"""The daily rollup equals the raw records: after many writes, across day boundaries in TIME_ZONE, with
absent users and keys, inside failing transactions, and with concurrent writers on PostgreSQL."""

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connections, transaction
from django.db.models import Sum

from accounts.models import User
from gateway.models import ApiKey
from providers.models import Model, Price, Provider
from tests.usage_support import assert_rollups_exact, raw_sums, rollup_sums, write
from usage import rollups, services
from usage.models import DailyApiKeyUsage, DailyModelUsage, DailyUsage, DailyUserUsage, UsageRecord

ON_POSTGRESQL = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def _model(name: str = "m1", provider: str = "p1") -> Model:
    provider_row, _ = Provider.objects.get_or_create(name=provider, kind="openai_compatible",
                                                     base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider_row, name=name)
    Price.objects.create(model=model, effective_from=datetime(2020, 1, 1, tzinfo=UTC), input=Decimal("0.15"),
                         output=Decimal("0.6"), cache_read=Decimal("0.075"))
    return model


@pytest.fixture
def model(db: None) -> Model:
    return _model()


def test_rollup_equals_raw_sums_after_many_mixed_writes(model: Model, make_user: Callable[..., User]) -> None:
    other_model = _model("m2", provider="p2")
    alice, bob = make_user("member", email="alice@example.com"), make_user("member", email="bob@example.com")
    key = ApiKey.objects.create(name="ci", user=bob, prefix="asp_ci", key_hash="1" * 64)
    start = datetime(2025, 5, 1, 9, tzinfo=UTC)
    for i in range(60):
        write(
            model if i % 3 else other_model,
            created_at=start + timedelta(hours=7 * i),
            user=(alice, bob, None)[i % 3], api_key=key if i % 4 == 0 else None,
            source=("playground", "gateway", "cli")[i % 5 % 3],
            status=("ok", "ok", "error", "cancelled")[i % 4], error_kind="server" if i % 4 == 2 else "",
            input_tokens=100 + i, cache_read_tokens=i * 3, cache_write_tokens=i % 2, output_tokens=7 * i,
            reasoning_tokens=i, usage_estimated=i % 6 == 0,
            latency_ms=None if i % 7 == 0 else 500 + i, ttft_ms=None if i % 5 == 0 else 100 + i,
        )
    rollup, raw = rollup_sums(), raw_sums()
    assert rollup == raw
    assert len(rollup) > 20  # many distinct rows, not one big bucket
    assert_rollups_exact()
    assert DailyModelUsage.objects.count() < len(rollup)  # narrower: fewer rows
    totals = DailyUsage.objects.aggregate(requests=Sum("requests"), cost=Sum("cost"))
    assert totals["requests"] == 60
    assert totals["cost"] == UsageRecord.objects.aggregate(cost=Sum("cost"))["cost"] > 0


def test_absent_user_and_key_share_one_row(model: Model) -> None:
    """NULLs never collide in a UNIQUE constraint: the key column is what keeps these in one row."""
    when = datetime(2025, 5, 1, 12, tzinfo=UTC)
    for _ in range(3):
        write(model, created_at=when, user=None, api_key=None)
    row = DailyUsage.objects.get()
    assert (row.requests, row.input_tokens, row.user_id, row.api_key_id) == (3, 300, None, None)


def test_days_are_days_in_the_configured_time_zone(model: Model, settings: object) -> None:
    settings.TIME_ZONE = "America/New_York"
    write(model, created_at=datetime(2025, 3, 10, 3, 30, tzinfo=UTC))  # 23:30 on the 9th in New York
    write(model, created_at=datetime(2025, 3, 10, 4, 30, tzinfo=UTC))  # 00:30 on the 10th
    assert sorted(DailyUsage.objects.values_list("day", "requests")) == [(date(2025, 3, 9), 1),
                                                                         (date(2025, 3, 10), 1)]


def test_record_and_rollup_commit_or_roll_back_together(model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        write(model)
        raise RuntimeError("the caller's transaction fails")
    assert not UsageRecord.objects.exists() and not DailyUsage.objects.exists()

    def broken(*args: object) -> None:
        raise RuntimeError("rollup write fails")

    monkeypatch.setattr(rollups.Additions, "write", broken)
    with pytest.raises(RuntimeError):
        write(model)
    assert not UsageRecord.objects.exists()


def test_cost_is_priced_at_the_version_in_force_at_the_record_time(model: Model) -> None:
    Price.objects.create(model=model, effective_from=datetime(2025, 6, 1, tzinfo=UTC), input=Decimal("1"),
                         output=Decimal("2"))
    before = write(model, created_at=datetime(2025, 5, 31, 23, 59, tzinfo=UTC), input_tokens=1000,
                   output_tokens=1000)
    after = write(model, created_at=datetime(2025, 6, 1, tzinfo=UTC), input_tokens=1000, output_tokens=1000)
    assert (before.cost, after.cost) == (Decimal("0.00075"), Decimal("0.003"))
    assert before.price.effective_from.year == 2020 and after.price.effective_from.month == 6


def test_rebuild_recomputes_the_rollup_from_raw_records(model: Model, make_user: Callable[..., User]) -> None:
    user = make_user("member")
    for day in (1, 1, 2, 3):
        write(model, created_at=datetime(2025, 5, day, 10, tzinfo=UTC), user=user)
    expected = rollup_sums()
    # Records written in bulk, outside usage_record_create, are not in the rollup until a rebuild.
    UsageRecord.objects.bulk_create([
        UsageRecord(created_at=datetime(2025, 5, 2, 11, tzinfo=UTC), provider=model.provider, model=model,
                    provider_name="p1", model_name="m1", source="cli", status="ok", input_tokens=5,
                    cost=Decimal("0.01")),
    ])
    DailyUsage.objects.filter(day=date(2025, 5, 1)).update(requests=99)  # and a damaged row
    assert services.daily_usage_rebuild(since=date(2025, 5, 2), until=date(2025, 5, 2)) == 2
    assert DailyUsage.objects.get(day=date(2025, 5, 1)).requests == 99  # outside the range: untouched
    DailyUserUsage.objects.update(requests=5)
    services.daily_usage_rebuild()
    assert rollup_sums() == raw_sums() != expected
    assert_rollups_exact()


def test_the_rebuild_command(model: Model) -> None:
    write(model, created_at=datetime(2025, 5, 1, 10, tzinfo=UTC))
    DailyUsage.objects.update(requests=7)
    out = StringIO()
    call_command("rebuild_daily_usage", since="2025-05-01", until="2025-05-31", stdout=out)
    assert out.getvalue().strip() == "1 daily usage rows rebuilt."
    assert rollup_sums() == raw_sums()
    with pytest.raises(CommandError, match="is not a date"):
        call_command("rebuild_daily_usage", since="May")


@pytest.mark.skipif(not ON_POSTGRESQL, reason="SQLite serialises writers with a database lock; the race "
                                              "this guards against exists only on PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_the_rollup_exact_on_postgresql() -> None:
    model = _model()
    threads, per_thread = 8, 25
    start = threading.Barrier(threads)
    errors: list[BaseException] = []
    when = datetime(2025, 5, 1, 12, tzinfo=UTC)

    def writer(n: int) -> None:
        try:
            start.wait()  # all at once, so that they race for the row's first INSERT too
            for i in range(per_thread):
                write(model, created_at=when + timedelta(seconds=i), input_tokens=n + 1, output_tokens=i,
                      cache_read_tokens=1)
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
    assert UsageRecord.objects.count() == threads * per_thread
    row = DailyUsage.objects.get()
    assert row.requests == threads * per_thread
    assert row.input_tokens == per_thread * sum(range(1, threads + 1))
    assert_rollups_exact()


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_narrow_tables_from_the_full_rollup(make_user: Callable[..., User]) -> None:
    """A ledger that predates the narrow tables gets them equal to its records when it migrates."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    model, alice = _model(), make_user("member")
    key = ApiKey.objects.create(name="ci", user=alice, prefix="asp_ci", key_hash="1" * 64)
    for i in range(12):
        write(model, created_at=datetime(2025, 5, 1 + i % 40, tzinfo=UTC) + timedelta(days=5 * i),
              user=alice if i % 2 else None, api_key=key if i % 3 == 0 else None,
              source=("playground", "gateway", "cli")[i % 3], input_tokens=10 * i)
    executor = MigrationExecutor(connection)
    executor.migrate([("usage", "0003_daily_usage_person_and_key_indexes")])
    executor.loader.build_graph()
    executor.migrate([("usage", "0004_narrow_rollups")])
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())  # the later columns, which the models read
    assert_rollups_exact()
    assert DailyUserUsage.objects.count() > 1 and DailyApiKeyUsage.objects.filter(api_key=key).exists()
