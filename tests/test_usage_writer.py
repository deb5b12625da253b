"""usage_record_write: concurrent calls' records written in batches, one batch at a time per event loop,
each caller back with its own record (or its own error) once its batch has committed, and no record lost
to a cancelled caller.

async_to_sync, as the call path's tests use it: the batches then run in the test's thread, inside its
transaction."""

import asyncio
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from providers.models import Model
from tests.budgets_support import ON_POSTGRESQL, SQLITE_REASON, ensure_role_groups, make_model
from tests.usage_support import assert_rollups_exact, spec
from usage import services, writer
from usage.models import UsageRecord


@pytest.fixture
def model(db: None) -> Model:
    return make_model()


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch written, in order; fails the test if two are ever written at once."""
    sizes: list[int] = []
    running = threading.Lock()
    original = writer._write

    def counting(specs: list[dict[str, Any]], entry_ids: list[str | None]) -> Any:
        assert running.acquire(blocking=False), "two batches written at once"
        try:
            sizes.append(len(specs))
            return original(specs, entry_ids)
        finally:
            running.release()

    monkeypatch.setattr(writer, "_write", counting)
    return sizes


def _run(*calls: Callable[[], Any]) -> list[Any]:
    """Run the coroutines the calls make concurrently in one event loop; their results or exceptions."""
    async def go() -> list[Any]:
        return await asyncio.gather(*(call() for call in calls), return_exceptions=True)

    return async_to_sync(go)()


def test_concurrent_callers_share_batches_and_each_gets_its_own_record(model: Model, batches: list[int]) -> None:
    results = _run(*(lambda n=n: writer.usage_record_write(**spec(model, input_tokens=1_000 * (n + 1),
                                                                  output_tokens=0))
                     for n in range(40)))
    assert [r.input_tokens for r in results] == [1_000 * (n + 1) for n in range(40)]
    assert all(r.pk and r.price is not None and r.cost == Decimal(r.input_tokens) / 1_000_000 for r in results)
    assert batches == [40]  # all queued before the first batch started
    assert UsageRecord.objects.count() == 40
    assert_rollups_exact()


def test_records_queued_while_a_batch_is_written_go_into_the_next(model: Model, batches: list[int],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    counting = writer._write
    later: list[asyncio.Future] = []

    def more_meanwhile(specs: list[dict[str, Any]], entry_ids: list[str | None]) -> Any:
        if not later:  # during the first batch, ten more callers arrive
            loop = state["loop"]
            for n in range(10):
                loop.call_soon_threadsafe(lambda n=n: later.append(
                    asyncio.ensure_future(writer.usage_record_write(**spec(model, input_tokens=n)))))
        return counting(specs, entry_ids)

    state: dict[str, Any] = {}
    monkeypatch.setattr(writer, "_write", more_meanwhile)

    async def go() -> None:
        state["loop"] = asyncio.get_running_loop()
        await writer.usage_record_write(**spec(model))
        while len(later) < 10:
            await asyncio.sleep(0)
        await asyncio.gather(*later)

    async_to_sync(go)()
    assert batches == [1, 10]
    assert UsageRecord.objects.count() == 11


def test_a_batch_holds_at_most_the_configured_number_of_records(model: Model, batches: list[int],
                                                                settings: Any) -> None:
    settings.USAGE_WRITE_BATCH = 3
    _run(*(lambda: writer.usage_record_write(**spec(model)) for _ in range(10)))
    assert sum(batches) == 10 and max(batches) == 3
    assert UsageRecord.objects.count() == 10


def test_a_lone_record_is_written_at_once(model: Model, batches: list[int]) -> None:
    record = _run(lambda: writer.usage_record_write(**spec(model)))[0]
    assert batches == [1] and UsageRecord.objects.get() == record


def test_a_wrong_keyword_is_refused_before_anything_is_queued(model: Model, batches: list[int]) -> None:
    [error] = _run(lambda: writer.usage_record_write(**spec(model), tokens=3))
    assert isinstance(error, TypeError)
    assert batches == [] and not UsageRecord.objects.exists()


def test_each_caller_gets_its_own_error_and_the_others_their_records(model: Model, batches: list[int],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    original = services._records_write

    def refuse_the_poisoned(records: list[UsageRecord]) -> None:
        if any(record.error_kind == "poison" for record in records):
            raise ValueError("this record cannot be written")
        original(records)

    monkeypatch.setattr(services, "_records_write", refuse_the_poisoned)
    results = _run(*(lambda n=n: writer.usage_record_write(**spec(model, input_tokens=n,
                                                                  error_kind="poison" if n == 3 else ""))
                     for n in range(8)))
    assert isinstance(results[3], ValueError)
    assert [r.input_tokens for n, r in enumerate(results) if n != 3] == [0, 1, 2, 4, 5, 6, 7]
    assert sorted(UsageRecord.objects.values_list("input_tokens", flat=True)) == [0, 1, 2, 4, 5, 6, 7]
    assert_rollups_exact()


def test_a_cancelled_caller_waits_for_its_record_to_commit(model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller is cancelled while its batch is being written: the record is still written, and the caller
    sees the cancellation only after it is."""
    original = writer._write
    seen: dict[str, Any] = {"committed": False}

    def cancel_meanwhile(specs: list[dict[str, Any]], entry_ids: list[str | None]) -> Any:
        seen["loop"].call_soon_threadsafe(seen["task"].cancel)
        threading.Event().wait(0.2)  # time for a caller that did not wait to be gone already
        written = original(specs, entry_ids)
        seen["committed"] = True
        return written

    monkeypatch.setattr(writer, "_write", cancel_meanwhile)

    async def go() -> None:
        seen["loop"] = asyncio.get_running_loop()
        seen["task"] = asyncio.ensure_future(writer.usage_record_write(**spec(model, input_tokens=7)))
        with pytest.raises(asyncio.CancelledError):
            await seen["task"]
        seen["committed_when_cancelled"] = seen["committed"]

    async_to_sync(go)()
    assert seen["committed_when_cancelled"] is True
    assert UsageRecord.objects.get().input_tokens == 7


def test_a_shielded_write_completes_when_its_caller_is_cancelled(model: Model) -> None:
    async def go() -> None:
        write = asyncio.ensure_future(writer.usage_record_write(**spec(model, input_tokens=9)))
        caller = asyncio.ensure_future(asyncio.shield(write))
        await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert (await write).input_tokens == 9

    async_to_sync(go)()
    assert UsageRecord.objects.get().input_tokens == 9


def test_each_event_loop_writes_its_own_batches(model: Model, batches: list[int]) -> None:
    _run(lambda: writer.usage_record_write(**spec(model)))
    _run(lambda: writer.usage_record_write(**spec(model)))  # a new loop: a writer of its own
    assert batches == [1, 1] and UsageRecord.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_batches_run_in_one_thread_whichever_request_started_the_writer(
        settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """As under ASGI: each request in a thread-sensitive context of its own, which ends with the request.
    The batches must not run in the context of the request that happened to start the writer: once it
    ended, each batch would get a new thread (and database connection) of its own."""
    from asgiref.sync import SyncToAsync, ThreadSensitiveContext
    from django.db import connections

    model = make_model()
    settings.USAGE_WRITE_BATCH = 5  # batches go on after the first request has ended
    original, threads = writer._write, set[threading.Thread]()

    def noting_the_thread(specs: list[dict[str, Any]], entry_ids: list[str | None]) -> Any:
        threads.add(threading.current_thread())  # the thread itself: a new one may reuse an ident
        return original(specs, entry_ids)

    monkeypatch.setattr(writer, "_write", noting_the_thread)

    async def request(n: int) -> UsageRecord:
        async with ThreadSensitiveContext():
            return await writer.usage_record_write(**spec(model, input_tokens=n))

    async def go() -> list[UsageRecord]:
        first = asyncio.ensure_future(request(0))
        await asyncio.sleep(0)  # the first request queues, starting the writer, and ends with its batch
        rest = [asyncio.ensure_future(request(n)) for n in range(1, 20)]
        return [await first, *await asyncio.gather(*rest)]

    results = asyncio.run(go())
    # Outside a request's context: asgiref's one thread for thread-sensitive work, with its own connection.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
    assert len(threads) == 1
    assert [r.input_tokens for r in results] == list(range(20))
    assert UsageRecord.objects.count() == 20
    assert_rollups_exact()


@pytest.mark.skipif(not ON_POSTGRESQL, reason=SQLITE_REASON)
@pytest.mark.django_db(transaction=True)
def test_writers_in_several_threads_keep_the_rollups_exact_on_postgresql() -> None:
    """Four event loops, each with its own connection, each with 30 callers at once, on the same rows."""
    from django.db import connections

    ensure_role_groups()
    models = [make_model("m1"), make_model("m2")]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        async def callers() -> None:
            await asyncio.gather(*(writer.usage_record_write(**spec(models[i % 2], input_tokens=n * 100 + i,
                                                                    status=("ok", "error")[i % 2]))
                                   for i in range(30)))

        try:
            start.wait()
            for _ in range(3):
                async_to_sync(callers)()
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    assert UsageRecord.objects.count() == 4 * 3 * 30
    assert_rollups_exact()
