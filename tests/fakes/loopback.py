"""What the fake provider servers share: an HTTP server on 127.0.0.1 in a background thread that can be
stopped at once, keep-alive connections and slow handlers included."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class TrackingServer(ThreadingHTTPServer):
    """Remembers its open connections so that stopping can close them: keep-alive handler threads would
    otherwise wait for a next request that never comes.

    Like a real API front it answers with TCP_NODELAY (otherwise its small writes meet the client's
    delayed ACKs on kept-alive connections: 40 ms stalls) and a listen backlog that takes a burst of a
    hundred connections (socketserver's default of 5 refuses them)."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, fake: Any, handler: type[BaseHTTPRequestHandler]) -> None:
        self.fake = fake
        self.accepted = 0  # connections accepted so far: fewer than requests when clients keep them alive
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        self.accepted += 1
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)


class TrackedHandler(BaseHTTPRequestHandler):
    """A fake's request handler: HTTP/1.1 (keep-alive and chunked transfer encoding, as the real APIs), its
    connection known to the TrackingServer while it is open, and no request log."""

    protocol_version = "HTTP/1.1"
    server: TrackingServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackFake:
    """Start and stop (or use as a context manager); `base_url` is "http://127.0.0.1:PORT"."""

    thread_name = "fake-server"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._server: TrackingServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._stopping.clear()
        self._server = TrackingServer(self, self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # wakes handlers sleeping in slow mode
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since the start: shows whether clients reuse their connections."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._server.accepted

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake when the server stops."""
        self._stopping.wait(seconds)
