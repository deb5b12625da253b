"""Answers being generated, for every page that shows them.

An answer's generation runs in the worker whose stream claimed it, as a task of its own (`start`): a
browser that goes away (a reload, a closed tab) leaves it running, and only Stop ends it early. Its text
reaches the pages following it two ways:

- in this worker, from the generation itself (`Generation.follow`): the page that sent the prompt, and
  any other stream this worker serves, get each token as it arrives;
- in any worker, through Django's cache (Redis when several workers serve): the generation writes the
  text that arrived since its last write as one more batch every FLUSH_SECONDS, with a heartbeat, and a
  stream elsewhere reads the batches so far, then the next ones as they come (`shared_read`). No token
  waits for this: it happens beside the generation, never in its way. With a cache of the process's own
  memory (the embedded default, one worker) there is no elsewhere, and nothing is written.

Stop reaches a generation in this worker at once (`stop`), and one in another worker through a flag in
the cache that the generation reads each time it writes. A generation nothing has been heard from for
STALE_SECONDS went with its worker.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import AsyncToSync, ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections

from aspweb.handler import ThreadPool
from aspweb.inline import cache_is_local

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.2
# How often a stream on another worker looks for more.
POLL_SECONDS = 0.2
# A generation waiting for its first token still says it is alive this often.
BEAT_SECONDS = 2.0
STALE_SECONDS = 15.0
# How long the shared text is stored: longer than any call may last.
KEEP_SECONDS = 3600
# A finished generation's heartbeat stays this long, for the streams that were following it.
DONE_KEEP_SECONDS = 60
# Stop asked of another worker: longer than that worker takes to see it, and than Stop waits for it.
STOP_KEEP_SECONDS = 10

# This worker's generations, by answer id.
_running: dict[int, "Generation"] = {}
_threads: ThreadPool | None = None


def _meta_key(answer_id: int) -> str:
    return f"playground:live:{answer_id}"


def _batch_key(answer_id: int, n: int) -> str:
    return f"playground:live:{answer_id}:{n}"


def _stop_key(answer_id: int) -> str:
    return f"playground:stop:{answer_id}"


async def _cache(function: Callable[..., Any], *args: Any) -> Any:
    """A cache call: here when the cache is this process's memory, else in a thread (it is network I/O)."""
    if cache_is_local():
        return function(*args)
    return await sync_to_async(function, thread_sensitive=False)(*args)


@dataclass(frozen=True)
class Meta:
    """What the shared store says of a generation: how many batches of text it wrote, when it last wrote,
    and whether it has ended (its answer is then saved)."""

    batches: int
    beat: float
    done: bool

    @property
    def stale(self) -> bool:
        return not self.done and time.time() - self.beat > STALE_SECONDS


class Generation:
    """One answer being generated in this worker: its text so far, in the parts it arrived in."""

    def __init__(self, answer_id: int) -> None:
        self.answer_id = answer_id
        self.parts: list[str] = []
        self.finished = False
        # The done event's HTML, rendered as the answer was saved (None until then, or if that failed).
        self.final_html: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._flushed = 0  # parts written to the shared store
        self._batches = 0
        self._beat = 0.0

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def push(self, text: str) -> None:
        self.parts.append(text)
        self._notify()

    def finish(self) -> None:
        self.finished = True
        self._notify()

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def follow(self) -> AsyncIterator[list[str]]:
        """The parts so far (when there are any), then the new parts each time some arrive, until the
        generation has ended and its answer is saved."""
        seen = 0
        while True:
            wake = self._wake
            if seen < len(self.parts):
                new = self.parts[seen:]
                seen += len(new)
                yield new
            elif self.finished:
                return
            else:
                await wake.wait()

    async def flush(self, *, done: bool = False) -> bool:
        """Write the text that arrived since the last flush as the next batch, with the heartbeat (when
        there is new text, the heartbeat is due, or at the end); True when Stop was asked elsewhere."""
        values: dict[str, Any] = {}
        if len(self.parts) > self._flushed:
            values[_batch_key(self.answer_id, self._batches)] = "".join(self.parts[self._flushed:])
            self._flushed = len(self.parts)
            self._batches += 1
        now = time.time()
        if values or done or now - self._beat >= BEAT_SECONDS:
            self._beat = now
            values[_meta_key(self.answer_id)] = (self._batches, now, done)
        return await _cache(_exchange, self.answer_id, values, DONE_KEEP_SECONDS if done else KEEP_SECONDS)


def _exchange(answer_id: int, values: dict[str, Any], timeout: int) -> bool:
    """One generation's write to the shared store (batches first, then what counts them), and whether Stop
    was asked for it."""
    if values:
        cache.set_many(values, timeout)
    stopped = cache.get(_stop_key(answer_id)) is not None
    if stopped:
        cache.delete(_stop_key(answer_id))
    return stopped


def local(answer_id: int) -> Generation | None:
    """The answer's generation when it runs in this worker."""
    return _running.get(answer_id)


def quiet_limit() -> float:
    """How long a stream waits to hear of a generation it did not find before deciding there is none: no
    time at all when the cache is this process's own (the embedded default runs one worker, so the
    generation would be here), else STALE_SECONDS."""
    return 0.0 if cache_is_local() else STALE_SECONDS


def start(answer_id: int, generate: Callable[[Generation], Awaitable[None]]) -> Generation:
    """Run `generate` for the answer as a task of this worker, apart from the request that started it."""
    generation = Generation(answer_id)
    _running[answer_id] = generation
    generation.task = asyncio.create_task(_run(generation, generate), name=f"playground-answer-{answer_id}")
    return generation


def _pool() -> ThreadPool:
    global _threads
    if _threads is None:
        _threads = ThreadPool(settings.ASPWEB_IDLE_THREADS)
    return _threads


async def _run(generation: Generation, generate: Callable[[Generation], Awaitable[None]]) -> None:
    try:
        if getattr(AsyncToSync.executors, "current", None) is not None:
            # Started from sync code through async_to_sync (tests, commands): its thread does the sync work.
            await _generate(generation, generate)
            return
        # Its own thread for the database, as a request has: the request's ends with the request.
        executor = _pool().borrow()
        try:
            async with ThreadSensitiveContext(executor=executor):
                try:
                    await _generate(generation, generate)
                finally:
                    await sync_to_async(close_old_connections)()
        finally:
            _pool().give_back(executor)
    finally:
        _running.pop(generation.answer_id, None)
        generation.finish()


async def _generate(generation: Generation, generate: Callable[[Generation], Awaitable[None]]) -> None:
    if cache_is_local():
        await generate(generation)
        return
    flusher = asyncio.create_task(_flush_every(generation))
    try:
        await generate(generation)
    finally:
        flusher.cancel()
        try:
            await asyncio.shield(generation.flush(done=True))
        except Exception:
            logger.exception("Could not write the end of answer %s to the cache", generation.answer_id)


async def _flush_every(generation: Generation) -> None:
    """The generation's writes to the shared store: one as it starts (the answer is being generated),
    then every FLUSH_SECONDS."""
    while True:
        try:
            if await generation.flush():
                generation.cancel()
                return
        except Exception:
            # The followers on other workers wait; the answer itself goes on.
            logger.exception("Could not write answer %s to the cache", generation.answer_id)
        await asyncio.sleep(FLUSH_SECONDS)


async def shared_read(answer_id: int, seen: int) -> tuple[Meta | None, str]:
    """From the shared store: the generation's state (None when it has written nothing, or its record has
    expired) and the text of its batches from number `seen` on."""
    meta = await _cache(cache.get, _meta_key(answer_id))
    if meta is None:
        return None, ""
    meta = Meta(*meta)
    if meta.batches <= seen:
        return meta, ""
    keys = [_batch_key(answer_id, n) for n in range(seen, meta.batches)]
    batches = await _cache(cache.get_many, keys)
    return meta, "".join(batches.get(key, "") for key in keys)


def stop(answer_id: int) -> None:
    """Stop the answer's generation, wherever it runs (from any thread). Its text so far is saved, stopped."""
    generation = _running.get(answer_id)
    if generation is not None:
        generation.loop.call_soon_threadsafe(generation.cancel)
    else:
        cache.set(_stop_key(answer_id), True, STOP_KEEP_SECONDS)


def stop_many(answer_ids: Iterable[int]) -> None:
    for answer_id in answer_ids:
        stop(answer_id)


async def drain() -> None:
    """Wait for this worker's generations to end (tests)."""
    tasks = [generation.task for generation in list(_running.values()) if generation.task is not None]
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
