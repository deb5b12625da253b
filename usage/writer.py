"""Group commit for the call path: concurrent calls' usage records written together, one transaction per
batch, each call returning once its own record is committed.

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
import weakref
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from .models import UsageRecord
from .services import UsageRecordsFailed, usage_record_build, usage_records_create

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
    written = writer.enqueue(fields)
    cancelled: asyncio.CancelledError | None = None
    while not written.done():
        try:
            await asyncio.shield(written)
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled
    return written.result()


class _Writer:
    """One event loop's queue and the task that writes it out, batch after batch, while it is not empty."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: list[tuple[dict[str, Any], asyncio.Future]] = []
        self.task: asyncio.Task | None = None

    def enqueue(self, fields: dict[str, Any]) -> asyncio.Future:
        written = self.loop.create_future()
        self.queue.append((fields, written))
        if self.task is None:
            self.task = self.loop.create_task(self._drain(), context=contextvars.Context())
        return written

    async def _drain(self) -> None:
        try:
            while self.queue:
                size = settings.USAGE_WRITE_BATCH
                batch, self.queue = self.queue[:size], self.queue[size:]
                try:
                    outcomes = await sync_to_async(_write, thread_sensitive=True)([fields for fields, _ in batch])
                except asyncio.CancelledError:
                    # The loop is closing. The batch under way may still commit in its thread; nothing
                    # queued after it will.
                    for _, written in batch + self.queue:
                        if not written.done():
                            written.set_exception(RuntimeError("The usage writer stopped with its event loop."))
                    self.queue = []
                    raise
                except Exception as exc:  # not a record's failure (those come back as outcomes): a bug
                    logger.exception("The usage writer failed on a batch of %d records", len(batch))
                    for _, written in batch:
                        written.set_exception(exc)
                    continue
                for (_, written), outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, Exception):
                        written.set_exception(outcome)
                    else:
                        written.set_result(outcome)
        finally:
            # Nothing awaits between the queue found empty and here: whatever is queued after this starts
            # a new task.
            self.task = None


# Event loop -> its writer; a loop that is gone takes its writer with it.
_writers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writer]" = weakref.WeakKeyDictionary()


def _write(specs: list[dict[str, Any]]) -> list[UsageRecord | Exception]:
    """Write a batch; each spec's record or its own exception, in order."""
    if not connection.in_atomic_block and connection.connection is not None and connection.errors_occurred:
        # A batch failed on this long-lived connection: start the next one on a working connection.
        connection.close_if_unusable_or_obsolete()
    try:
        return list(usage_records_create(specs))
    except UsageRecordsFailed as failed:
        logger.error("Could not write %d of %d usage records", len(failed.errors), len(specs))
        return [failed.errors[n] if record is None else record for n, record in enumerate(failed.records)]
    except Exception as exc:
        if len(specs) != 1:
            raise
        return [exc]
