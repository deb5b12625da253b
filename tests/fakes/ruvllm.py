"""A fake ruvLLM server (`ruvllm-server`, RuVector's examples/ruvLLM/src/bin/server.rs) over real loopback HTTP.

Serves what the real one routes:
- ``GET /health``: ``{"status": "healthy", "version"}``, or 503 while ``ready`` is False;
- ``POST /query`` with ``{"query", "session_id"?}``: ``{"text", "model_used", "context_size", "confidence",
  "latency_ms"}``; ``model_used`` as the server writes its ModelSize (``M350``, ``M700``, ``B1_2``, ``B2_6``),
  ``context_size`` the turns its session holds (a session it does not know is created, as the real one does);
- ``POST /session``: ``{"session_id"}``;
- ``POST /feedback`` with ``{"query", "response", "quality"}``: 200 and no body;
- ``GET /stats``.
Errors are a status with a plain-text body, as axum's handlers and JSON extractor answer them.

Tests drive it by attributes (``reply``: a fixed text, else it answers "You asked: <query>"; ``ready``;
``fail_next(status, text)``) and read ``queries`` (the bodies of /query) and ``sessions`` (id -> turns).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any

from .loopback import LoopbackFake, TrackedHandler

VERSION = "0.1.0"


class FakeRuvLLM(LoopbackFake):
    thread_name = "fake-ruvllm"

    def __init__(self) -> None:
        super().__init__()
        self.reply: str | None = None
        self.ready = True
        self.queries: list[dict[str, Any]] = []
        self.sessions: dict[str, list[tuple[str, str]]] = {}
        self.faults: deque[tuple[int, str]] = deque()
        self.lock = threading.Lock()

    def fail_next(self, status: int, text: str = "inference failed") -> None:
        self.faults.append((status, text))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _Handler


class _Handler(TrackedHandler):
    @property
    def fake(self) -> FakeRuvLLM:
        return self.server.fake

    def _send(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.send_response(status)
        if body is not None:
            content_type = "text/plain; charset=utf-8" if isinstance(body, str) else "application/json"
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return json.loads(raw) if raw else None

    def do_GET(self) -> None:
        if self.path == "/health":
            if not self.fake.ready:
                self._send(503, "not ready")
            else:
                self._send(200, {"status": "healthy", "version": VERSION})
        elif self.path == "/stats":
            with self.fake.lock:
                total = len(self.fake.queries)
            self._send(200, {"total_queries": total, "cache_hits": 0, "avg_latency_ms": 0.1, "memory_nodes": 0,
                             "router_updates": 0})
        else:
            self._send(404)

    def do_POST(self) -> None:
        fake = self.fake
        try:
            body = self._json()
        except ValueError:
            self._send(400, "Failed to parse the request body as JSON")
            return
        with fake.lock:
            fault = fake.faults.popleft() if fake.faults else None
        if fault is not None:
            self._send(*fault)
            return
        if self.path == "/session":
            session = str(uuid.uuid4())
            with fake.lock:
                fake.sessions[session] = []
            self._send(200, {"session_id": session})
        elif self.path == "/query":
            if not isinstance(body, dict) or not isinstance(body.get("query"), str):
                self._send(422, "Failed to deserialize the JSON body into the target type: missing field `query`")
                return
            with fake.lock:
                fake.queries.append(body)
                session = body.get("session_id") or str(uuid.uuid4())
                turns = fake.sessions.setdefault(session, [])
                text = fake.reply if fake.reply is not None else f"You asked: {body['query']}"
                turns += [("user", body["query"]), ("assistant", text)]
                context = len(turns)
            self._send(200, {"text": text, "model_used": "M700", "context_size": context, "confidence": 0.87,
                             "latency_ms": 0.42})
        elif self.path == "/feedback":
            if not isinstance(body, dict) or not {"query", "response", "quality"} <= set(body):
                self._send(422, "Failed to deserialize the JSON body into the target type")
                return
            self._send(200)
        else:
            self._send(404)
