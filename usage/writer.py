"""Group commit for the call path: concurrent calls' usage records written together, one transaction per
batch, each call returning once its own record is committed; or, in a serving process of the production
process (USAGE_WRITE_BEHIND), once its record is in the ledger's journal (usage/journal.py: a Redis stream, or
a file without Redis), the batch committing right after and removing its entries.

    record = await usage_record_write(provider=..., model=..., source=..., status=..., ...)

Per event loop, records queue up while a batch is being written, and the next batch takes all of them
(at most USAGE_WRITE_BATCH): no timer, no waiting for company. At low load every batch is one record,
written at once; under load a batch holds what arrived during the previous one, so the per-transaction
costs (a round trip per statement, the commit's flush to disk, the budgets' lookups) are paid once per
batch instead of once per call.

One batch at a time per event loop, through `sync_to_async(thread_sensitive=True)` like the rest of the
app's ORM work. The batches run in a task of their own, started with an empty context: not in the
thread-sensitive context of whichever request happened to queue first, which ends with that request
while the task goes on writing other requests' records (every batch after that would start a thread,
and a database connection, of its own). So under ASGI they run in asgiref's one thread for
thread-sensitive work outside requests, on one long-lived connection; under `async_to_sync` (tests, the
CLI) in the calling thread, on its connection and inside its transaction.
"""

import asyncio
import contextvars
import inspect
import logging
import time
import weakref
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from redis.exceptions import RedisError

from aspweb import metrics
from aspweb.handler import serving
from aspweb.inline import inline_or_hop

from . import journal, journalfile
from .models import UsageRecord
from .services import UsageRecordsFailed, record_prices, usage_record_build, usage_records_create

logger = logging.getLogger(__name__)

_SIGNATURE = inspect.signature(usage_record_build)


async def usage_record_write(**fields: Any) -> UsageRecord:
    """Write one call's record (the keyword arguments of `usage.services.usage_record_create`) in the next
    batch and return it, with its `price` and `cost`, once that batch has committed.

    The caller's own failure comes back as its exception; other records of the batch are not affected
    (see usage_records_create). Cancelling the caller does not cancel the write: the record stays in its
    batch, and the cancellation is raised once the batch has committed, so that the record is on disk
    when the caller's task ends. Safe under asyncio.shield as well."""
    _SIGNATURE.bind(**fields)  # a wrong keyword is the caller's error, raised here, before anything is queued
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = _Writer(loop)
    if settings.USAGE_WRITE_BEHIND and serving():
        # Only where the loop outlives the request: a command's or a task's loop ends with its call. In a task
        # of its own, so that a caller cancelled meanwhile (a client gone after its answer's last byte, while
        # the record is being written) leaves the record journalled and queued, not half done.
        record = await _uncancelled(loop.create_task(_journalled(writer, fields)))
        if record is not None:
            return record
    return await _uncancelled(writer.enqueue(fields))


async def _journalled(writer: "_Writer", fields: dict[str, Any]) -> UsageRecord | None:
    """The record priced, in the journal and queued for its batch; None where the journal is out of reach."""
    record = await inline_or_hop(_priced, fields)
    try:
        entry_id = await journal.append(fields)
    except (RedisError, OSError) as exc:
        logger.warning("The ledger's journal is out of reach (%r): the record is written before the answer", exc)
        return None
    writer.enqueue(fields, entry_id)
    return record


async def _uncancelled(future: "asyncio.Future[Any]") -> Any:
    """The future's result, awaited to its end even when the caller is cancelled meanwhile; the cancellation
    is raised after."""
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled
    return future.result()


class _Writer:
    """One event loop's queue and the task that writes it out, batch after batch, while it is not empty."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # (fields, future, journal entry id, time queued)
        self.queue: list[tuple[dict[str, Any], asyncio.Future, str | None, float]] = []
        self.task: asyncio.Task | None = None

    def enqueue(self, fields: dict[str, Any], entry_id: str | None = None) -> asyncio.Future:
        """Queue a record; its future has the written row. `entry_id`: its journal entry, removed once it is
        committed (a record of the journal is not awaited: what fails stays in the journal for its replay)."""
        written = self.loop.create_future()
        if entry_id is not None:
            written.add_done_callback(_observed)
        self.queue.append((fields, written, entry_id, time.perf_counter()))
        if self.task is None:
            self.task = self.loop.create_task(self._drain(), context=contextvars.Context())
        return written

    async def _drain(self) -> None:
        try:
            while self.queue:
                size = settings.USAGE_WRITE_BATCH
                batch, self.queue = self.queue[:size], self.queue[size:]
                try:
                    outcomes = await sync_to_async(_write, thread_sensitive=True)(
                        [fields for fields, *_ in batch], [entry_id for _, _, entry_id, _ in batch])
                except asyncio.CancelledError:
                    # The loop is closing. The batch under way may still commit in its thread; nothing
                    # queued after it will (a journalled record's replay will).
                    for _, written, *_ in batch + self.queue:
                        if not written.done():
                            written.set_exception(RuntimeError("The usage writer stopped with its event loop."))
                    self.queue = []
                    raise
                except Exception as exc:  # not a record's failure (those come back as outcomes): a bug
                    logger.exception("The usage writer failed on a batch of %d records", len(batch))
                    for _, written, *_ in batch:
                        written.set_exception(exc)
                    metrics.ledger_batch_written(len(batch), (), failures=len(batch))
                    continue
                committed = time.perf_counter()
                metrics.ledger_batch_written(
                    len(batch), [committed - queued for _, _, _, queued in batch],
                    failures=sum(isinstance(outcome, Exception) for outcome in outcomes))
                for (_, written, _, _), outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, Exception):
                        written.set_exception(outcome)
                    else:
                        written.set_result(outcome)
        finally:
            # Nothing awaits between the queue found empty and here: whatever is queued after this starts
            # a new task.
            self.task = None


async def writer_drain() -> None:
    """Wait until this event loop's writer has written everything queued (a serving process shutting down:
    aspweb/handler.py's shutdown_hooks), so that a restart leaves nothing for the journal's replay."""
    writer = _writers.get(asyncio.get_running_loop())
    while writer is not None and writer.task is not None:
        await asyncio.shield(writer.task)
    if journal.on_disk():
        journalfile.close()


async def journal_recover() -> None:
    """A serving process starting writes what a gone process journalled on this machine's disk and never
    committed (the journal in Redis is the beat's to replay). A failure is logged: the segments stay for the
    next start."""
    if not (settings.USAGE_WRITE_BEHIND and journal.on_disk()):
        return
    try:
        await sync_to_async(journal.replay, thread_sensitive=True)()
    except Exception:
        logger.exception("Could not replay the ledger's journal; its segments stay for the next start")


# Event loop -> its writer; a loop that is gone takes its writer with it.
_writers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writer]" = weakref.WeakKeyDictionary()


def _write(specs: list[dict[str, Any]], entry_ids: list[str | None]) -> list[UsageRecord | Exception]:
    """Write a batch; each spec's record or its own exception, in order. The journal entries of the records
    written are removed once they are committed."""
    if not connection.in_atomic_block and connection.connection is not None and connection.errors_occurred:
        # A batch failed on this long-lived connection: start the next one on a working connection.
        connection.close_if_unusable_or_obsolete()
    try:
        outcomes: list[UsageRecord | Exception] = list(usage_records_create(specs))
    except UsageRecordsFailed as failed:
        logger.error("Could not write %d of %d usage records", len(failed.errors), len(specs))
        outcomes = [failed.errors[n] if record is None else record for n, record in enumerate(failed.records)]
    except Exception as exc:
        if len(specs) != 1:
            raise
        outcomes = [exc]
    committed = [entry_id for entry_id, outcome in zip(entry_ids, outcomes, strict=True)
                 if entry_id is not None and not isinstance(outcome, Exception)]
    if committed:
        try:
            journal.remove(committed)
        except (RedisError, OSError) as exc:  # the replay finds them in the ledger and drops them then
            logger.warning("Could not drop %d committed entries from the ledger's journal: %r", len(committed), exc)
    return outcomes


def _priced(fields: dict[str, Any]) -> UsageRecord:
    """The record the fields make, priced as it will be written, not saved: what a call answered before its
    record is committed tells its caller."""
    record = usage_record_build(**fields)
    record_prices([record])
    return record


def _observed(written: asyncio.Future) -> None:
    """Nobody awaits a journalled record's write: its failure is logged by the writer, and the journal keeps it."""
    if not written.cancelled():
        written.exception()
