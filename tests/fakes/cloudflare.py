"""A fake Cloudflare Workers AI REST API served over real loopback HTTP.

Serves, under ``/client/v4/accounts/{account_id}/ai/``:
- ``POST run/{model}`` (model names keep their slashes and @, e.g. ``@cf/meta/llama-3.1-8b-instruct-fast``),
  streamed as SSE ``data: {"response": "..."}`` events ending with ``data: [DONE]`` when the body asks
  for ``"stream": true``, otherwise one JSON envelope with the answer at ``result.response``;
- ``GET models/search``, the model catalog.

Errors use Cloudflare's envelope ``{"success": false, "errors": [{"code", "message"}], ...}`` with
Workers AI's documented internal codes. Behaviour is driven from tests by attribute assignment
(``reply``, ``send_usage``, ``usage``, ``chunk_delay``, ``models``, ``api_key``, ``account_id``,
``mode``) and a queue of one-shot faults (``fail_next``), like ``tests.fakes.upstream.FakeUpstream``.
Each request snapshots the configuration when it starts.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .loopback import LoopbackFake, TrackedHandler

DEFAULT_REPLY = "Hello from the fake Workers AI."
DEFAULT_MODELS = ("@cf/meta/llama-3.1-8b-instruct-fast", "@cf/meta/llama-3.3-70b-instruct-fp8-fast")
DEFAULT_ACCOUNT = "0123456789abcdef0123456789abcdef"
DEFAULT_RETRY_AFTER = 1
DEFAULT_SLOW_DELAY = 0.5

# Status -> (Workers AI internal code, message), as the real API answers.
ERRORS: dict[int, tuple[int, str]] = {
    400: (5006, "Error: required properties at '/' are 'messages'"),
    401: (10000, "Authentication error"),
    403: (10000, "Authentication error"),
    404: (3042, "The model name is invalid"),
    408: (3007, "Request timeout"),
    429: (971, "Please wait and consider throttling your request speed"),
    500: (3043, "Internal server error"),
    503: (3043, "Service unavailable"),
}
FAULT_KINDS = frozenset({"ok", "cut", "slow", "malformed", *(str(status) for status in ERRORS)})

_RUN = re.compile(r"^/client/v4/accounts/(?P<account>[^/]+)/ai/run/(?P<model>.+)$")
_SEARCH = re.compile(r"^/client/v4/accounts/(?P<account>[^/]+)/ai/models/search$")


@dataclass(frozen=True)
class Fault:
    """How to (mis)behave for one request.

    ``kind``: "ok"; "cut" (stream ``cut_after`` events, or half, then drop the connection; a plain answer
    is truncated); "slow" (wait ``delay`` seconds between events, or before a plain answer); "malformed"
    (a stream event, or a plain answer, that is not JSON); or an HTTP status such as "429", answered with
    Cloudflare's error envelope, ``code`` and ``message`` overriding the defaults of ``ERRORS``.
    """

    kind: str = "ok"
    retry_after: int = DEFAULT_RETRY_AFTER
    delay: float = DEFAULT_SLOW_DELAY
    cut_after: int | None = None
    code: int | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string, percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, the raw text when it is not JSON, or None
    account_id: str | None
    model: str | None  # for run/{model}
    api_key: str | None  # the Bearer token


@dataclass(frozen=True)
class _Snapshot:
    reply: str
    chunk_delay: float
    models: tuple[str, ...]
    send_usage: bool
    usage: dict[str, int]
    api_key: str | None
    account_id: str | None


class _StreamCut(Exception):
    pass


class FakeCloudflare(LoopbackFake):
    """Fake Workers AI on 127.0.0.1 in a background thread; a context manager, or ``start()``/``stop()``.

    ``api_key`` and ``account_id``: when set, requests must carry that Bearer token (else 401) and
    account (else Cloudflare's 404 "could not route"). Adapters take ``base_url + "/client/v4"``.
    """

    thread_name = "fake-cloudflare"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def __init__(self, *, api_key: str | None = None, account_id: str | None = DEFAULT_ACCOUNT) -> None:
        super().__init__()
        self.api_key = api_key
        self.account_id = account_id
        self.reply = DEFAULT_REPLY
        self.chunk_delay = 0.0
        self.models: list[str] = list(DEFAULT_MODELS)
        # Some models report usage, some do not; ``usage`` overrides prompt_tokens, completion_tokens and
        # total_tokens (by default their sum).
        self.send_usage = True
        self.usage: dict[str, int] = {}
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._mode = Fault()
        self._requests: list[RecordedRequest] = []

    @property
    def api_base_url(self) -> str:
        """What the adapter's preset base URL ("https://api.cloudflare.com/client/v4") stands for."""
        return self.base_url + "/client/v4"

    # -- behaviour control ------------------------------------------------------------------

    def fail_next(self, kind: str | int, **options: Any) -> None:
        """Queue a fault for the next request; options are ``Fault``'s (retry_after, delay, cut_after, ...)."""
        with self._lock:
            self._faults.append(Fault(str(kind), **options))

    @property
    def mode(self) -> str:
        """Persistent fault kind used when the queue is empty ("ok" by default)."""
        return self._mode.kind

    @mode.setter
    def mode(self, kind: str | int) -> None:
        self.set_mode(kind)

    def set_mode(self, kind: str | int, **options: Any) -> None:
        self._mode = Fault(str(kind), **options)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise LookupError("FakeCloudflare has received no request")
            return self._requests[-1]

    # -- used by the handler ----------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_fault(self) -> Fault:
        with self._lock:
            return self._faults.popleft() if self._faults else self._mode

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            return _Snapshot(self.reply, self.chunk_delay, tuple(self.models), self.send_usage, dict(self.usage),
                             self.api_key, self.account_id)



def _chunks(text: str) -> list[str]:
    """Word by word, keeping the whitespace, so the chunks join back to ``text``."""
    return re.findall(r"\S+\s*|\s+", text)


def _prompt_text(body: dict[str, Any]) -> str:
    texts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part.get("text", "") for part in content if isinstance(part, dict))
    return "".join(texts)


class _Handler(TrackedHandler):
    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionError:  # the client hung up, often mid-stream: nothing left to answer
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        path = unquote(url.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        raw = self.rfile.read(int(headers.get("content-length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        run = _RUN.match(path) if self.command == "POST" else None
        search = _SEARCH.match(path) if self.command == "GET" else None
        route = run or search
        bearer = headers.get("authorization", "")
        record = RecordedRequest(
            method=self.command, path=path, query=dict(parse_qsl(url.query)), headers=headers, body=body,
            account_id=route["account"] if route else None, model=run["model"] if run else None,
            api_key=bearer[len("Bearer "):] if bearer.startswith("Bearer ") else None,
        )
        fake._record(record)
        snapshot = fake._snapshot()
        if route is None or (snapshot.account_id is not None and record.account_id != snapshot.account_id):
            self._error(404, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?")
            return
        fault = fake._next_fault()
        if fault.kind.isdigit():
            status = int(fault.kind)
            code, message = ERRORS[status]
            self._error(status, fault.code or code, fault.message or message,
                        retry_after=fault.retry_after if status == 429 else None)
            return
        if snapshot.api_key is not None and record.api_key != snapshot.api_key:
            self._error(401, *ERRORS[401])
            return
        if search:
            self._models(snapshot, fault)
        elif not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._error(400, *ERRORS[400])
        elif record.model not in snapshot.models:
            self._error(400, 5007, f"No such model {record.model} or task")
        elif body.get("stream"):
            self._stream(body, snapshot, fault)
        else:
            self._answer(body, snapshot, fault)

    # -- endpoints ---------------------------------------------------------------------------

    def _usage(self, body: dict[str, Any], snapshot: _Snapshot, chunks: list[str]) -> dict[str, int]:
        usage = {"prompt_tokens": max(1, len(_prompt_text(body)) // 4), "completion_tokens": len(chunks),
                 **snapshot.usage}
        return {**usage, "total_tokens": usage.get("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])}

    def _models(self, snapshot: _Snapshot, fault: Fault) -> None:
        result = [
            {
                "id": f"00000000-0000-0000-0000-{index:012d}",
                "name": name,
                "description": f"Fake {name}",
                "task": {"id": "c329a1f9-323d-4e91-b2aa-582dd4188d34", "name": "Text Generation"},
                "properties": [{"property_id": "context_window", "value": "128000"}],
            }
            for index, name in enumerate(snapshot.models)
        ]
        info = {"count": len(result), "page": 1, "per_page": 100, "total_count": len(result)}
        self._send_json(200, self._envelope(result) | {"result_info": info}, fault)

    def _answer(self, body: dict[str, Any], snapshot: _Snapshot, fault: Fault) -> None:
        result: dict[str, Any] = {"response": snapshot.reply}
        if snapshot.send_usage:
            result["usage"] = self._usage(body, snapshot, _chunks(snapshot.reply))
        self._send_json(200, self._envelope(result), fault)

    def _stream(self, body: dict[str, Any], snapshot: _Snapshot, fault: Fault) -> None:
        chunks = _chunks(snapshot.reply)

        def events() -> Iterator[str]:
            cut_after = fault.cut_after if fault.cut_after is not None else max(1, len(chunks) // 2)
            for index, text in enumerate(chunks):
                if fault.kind == "cut" and index >= cut_after:
                    raise _StreamCut
                if fault.kind == "malformed" and index == 1:
                    yield '{"response": "unterminated'
                # "p" is the padding Cloudflare adds against length side channels.
                yield json.dumps({"response": text, "p": "abcdefghij"[: index % 10]})
            if snapshot.send_usage:
                yield json.dumps({"response": "", "usage": self._usage(body, snapshot, chunks)})
            yield "[DONE]"

        delay = fault.delay if fault.kind == "slow" else snapshot.chunk_delay
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for position, data in enumerate(events()):
                if position:
                    self.server.fake._sleep(delay)
                frame = f"data: {data}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.write(b"0\r\n\r\n")
        except _StreamCut:
            self._abort()

    # -- writing -----------------------------------------------------------------------------

    @staticmethod
    def _envelope(result: Any) -> dict[str, Any]:
        return {"result": result, "success": True, "errors": [], "messages": []}

    def _error(self, status: int, code: int, message: str, *, retry_after: int | None = None) -> None:
        body = {"result": None, "success": False, "errors": [{"code": code, "message": message}], "messages": []}
        self._send_json(status, body, headers={"Retry-After": str(retry_after)} if retry_after is not None else {})

    def _send_json(self, status: int, payload: Any, fault: Fault | None = None,
                   headers: dict[str, str] | None = None) -> None:
        data = b"{not json" if fault is not None and fault.kind == "malformed" else json.dumps(payload).encode()
        if fault is not None and fault.kind == "slow":
            self.server.fake._sleep(fault.delay)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if fault is not None and fault.kind == "cut":
            self.wfile.write(data[: len(data) // 2])  # promise the whole body, deliver half
            self._abort()
            return
        self.wfile.write(data)

    def _abort(self) -> None:
        """Drop the connection mid-answer, like a crashed or cut-off upstream."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
