"""Django's ASGI handler, with its request threads pooled between requests.

Django runs each request's sync work (sync views, the ORM calls of async views) in a thread of the
request's own: a new thread per request, and with it a new database connection, since connections
belong to threads. On the gateway and the playground's streams that was a thread start and, on SQLite,
a connection with its settings before anything else could happen. Here each request borrows a thread
(a one-thread executor, so its sync work still runs on one thread, in order) from a pool and gives it
back when it ends; the thread keeps its connection, as a WSGI server's threads do. Connections still
follow Django's rules at the end of every request (closed when unusable, when CONN_MAX_AGE says so,
or, with PostgreSQL's pool, returned to it).

Threads beyond ASPWEB_IDLE_THREADS (requests at once beyond that, such as many streams) are not pooled:
their connections are closed and the thread ends.

Django tidies a thread's connections when a request starts and again when it ends (closing obsolete
ones, clearing DEBUG's query log), in the request's thread: a thread hop before the view runs. Here a
request thread's next request starts where its last one ended, so the tidying at the start goes: it
happens at every end, in the same thread. Before the first token of a stream, that was one hop of two.

It also answers the ASGI lifespan protocol, which Django's handler refuses: at start-up, what the apps
registered in `startup_hooks` runs (the ledger writes what a gone process journalled and never committed); at
shutdown, what they registered in `shutdown_hooks` finishes (the ledger's writer commits what it queued), then
the idle threads close their connections.
"""

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

from asgiref.sync import AsyncToSync, ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connections, reset_queries

# Set while this handler serves a request: the query log is cleared at the end of its requests only, so
# that a request made otherwise (a test client's, under Django's CaptureQueriesContext) keeps its log.
_serving: ContextVar[bool] = ContextVar("aspweb_serving", default=False)


# Coroutine functions awaited as a serving process starts, before it serves (usage/apps.py).
startup_hooks: list[Callable[[], Awaitable[None]]] = []
# Coroutine functions awaited as a serving process shuts down, before its idle threads close: registered by
# the apps with work still under way on the loop (the ledger's writer: usage/apps.py).
shutdown_hooks: list[Callable[[], Awaitable[None]]] = []


def serving() -> bool:
    """Whether the running code serves a request of this handler: in a serving process (uvicorn), whose event
    loop outlives the request, rather than through async_to_sync (tests, management commands, tasks)."""
    return _serving.get()


def reset_queries_at_the_end(**kwargs: Any) -> None:
    if _serving.get():
        reset_queries()


class ThreadPool:
    """One-thread executors, lent one per request."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.idle: list[ThreadPoolExecutor] = []
        self.made = 0

    def borrow(self) -> ThreadPoolExecutor:
        if self.idle:
            return self.idle.pop()
        self.made += 1
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"aspweb-request-{self.made}")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        if len(self.idle) < self.keep:
            self.idle.append(executor)
        else:
            self.retire(executor)

    def retire(self, executor: ThreadPoolExecutor) -> None:
        executor.submit(connections.close_all)
        executor.shutdown(wait=False)

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for executor in idle:
            self.retire(executor)


class ASGIHandler(DjangoASGIHandler):
    # A body goes to the server in one message up to this size (Django's default: 64 KB). An embeddings answer
    # of 130-270 KB was three to five messages, each a write that could wait for the client to read the last
    # one: one write lets the transport send it all as the client reads (docs/benchmarks.md, Embeddings).
    chunk_size = 2**20

    def __init__(self) -> None:
        super().__init__()
        self.threads = ThreadPool(settings.ASPWEB_IDLE_THREADS)
        request_started.disconnect(close_old_connections)
        request_started.disconnect(reset_queries)
        request_finished.connect(reset_queries_at_the_end)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"aspweb serves HTTP, not {scope['type']}.")
        if getattr(AsyncToSync.executors, "current", None) is not None:
            # Called from sync code through async_to_sync (tests, management commands): its thread does
            # the sync work, as with Django's handler, so that it sees that thread's transaction.
            await super().__call__(scope, receive, send)
            return
        executor = self.threads.borrow()
        serving = _serving.set(True)
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            _serving.reset(serving)
            self.threads.give_back(executor)

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for hook in startup_hooks:
                    await hook()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for hook in shutdown_hooks:
                    await hook()
                self.threads.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
