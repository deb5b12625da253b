"""The ASGI handler keeps request threads (and their database connections) between requests, and
answers the lifespan protocol (aspweb/handler.py)."""

import asyncio
import threading
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection

from aspweb.handler import ASGIHandler, ThreadPool, reset_queries_at_the_end
from tests.asgi_support import asgi_request

pytestmark = pytest.mark.django_db(transaction=True)


def _get(app: ASGIHandler, path: str) -> int:
    """One GET as uvicorn sends it: from a plain event loop, no sync caller above it."""
    outcome: list[Any] = []

    def run() -> None:  # a thread of its own, as uvicorn's loop is: no async_to_sync above the handler
        try:
            outcome.append(asyncio.run(asgi_request(app, "GET", path)).status)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def test_requests_reuse_a_thread_and_its_connection(settings: Any) -> None:
    settings.ASPWEB_IDLE_THREADS = 4
    app = ASGIHandler()
    seen: list[tuple[str, int | None]] = []

    def note(**kwargs: Any) -> None:
        connection.ensure_connection()
        seen.append((threading.current_thread().name, id(connection.connection)))

    request_started.connect(note, dispatch_uid="test-handler-note")
    try:
        assert _get(app, "/v1/openapi.json") == 200
        assert _get(app, "/v1/openapi.json") == 200
    finally:
        request_started.disconnect(dispatch_uid="test-handler-note")
        app.threads.close()
    assert len(seen) == 2 and seen[0][0].startswith("aspweb-request-")
    assert seen[0][0] == seen[1][0] and app.threads.made == 1  # the same thread
    if connection.settings_dict["CONN_MAX_AGE"]:
        assert seen[0][1] == seen[1][1]  # and its connection, still open (with PostgreSQL's pool: the pool's)


def test_the_pool_keeps_only_so_many_idle_threads() -> None:
    pool = ThreadPool(keep=1)
    first, second = pool.borrow(), pool.borrow()
    assert first is not second and pool.made == 2
    pool.give_back(first)
    pool.give_back(second)  # one more than it keeps: retired
    assert pool.idle == [first]
    with pytest.raises(RuntimeError):
        second.submit(print)  # shut down
    assert pool.borrow() is first
    pool.give_back(first)
    pool.close()
    assert pool.idle == []


def test_lifespan_starts_and_shuts_down() -> None:
    app = ASGIHandler()
    app.threads.give_back(app.threads.borrow())
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert app.threads.idle == []


def test_a_request_starts_without_a_thread_hop() -> None:
    """Connections are tidied when requests end, in the request's thread; nothing runs at the start."""
    app = ASGIHandler()
    assert not [receiver for receiver in request_started._live_receivers(None)[0]
                if getattr(receiver, "__module__", "").startswith("django.db")]
    assert {close_old_connections, reset_queries_at_the_end} <= set(request_finished._live_receivers(None)[0])
    app.threads.close()


def test_a_test_clients_queries_stay_in_the_log_once_the_handler_exists(client_as: Any) -> None:
    """The handler clears the query log at the end of its own requests only: a request made otherwise
    keeps its queries for Django's CaptureQueriesContext."""
    from django.test.utils import CaptureQueriesContext

    app = ASGIHandler()
    client = client_as("superuser")  # an admin by the flag: this module's flushes take the role groups away
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/providers/").status_code == 200
    assert any("providers_provider" in query["sql"] for query in captured)
    app.threads.close()
