"""A fake LLM provider (OpenAI, Azure OpenAI, Anthropic) served over real loopback HTTP; OpenAI's Responses
API is in responses.py.

The test-suite talks to it through the official SDKs, so everything here mimics the
providers' wire formats closely enough for those SDKs to parse: JSON bodies, SSE
streams sent with chunked transfer encoding, error bodies and status codes.

Behaviour is driven from the tests by plain attribute assignment (``reply``,
``chunk_delay``, ``models``, ``usage``, ``raw_usage``, ``usage_style``, ``api_key``, ``mode``,
``tool_call``, ``reasoning``, ``reasoning_field``, ``embedding_dimensions``, ``embedding_encodings``,
``compress_answers``) and by a queue of one-shot faults (``fail_next``).

``POST /v1/embeddings`` (and Azure's ``/openai/deployments/{deployment}/embeddings``) answers as OpenAI's
API reference documents it: ``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
"model", "usage": {"prompt_tokens", "total_tokens"}}``, each embedding a list of floats or, with
``encoding_format: "base64"``, the base64 text of its little-endian float32 values. Vectors are
deterministic (``fake_embedding``) and exact in float32, so both encodings carry the same numbers.
Each request takes a snapshot of that configuration when it starts, so changing it mid-stream never
produces a half-old, half-new answer.

``usage`` sets token counts that the fake writes into each provider's fields; ``raw_usage`` is a
provider's own usage object, sent as it is, and ``usage_style`` places it in an OpenAI-format stream
the way a given provider does (see ``FakeUpstream.usage_style``).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, urlsplit

from . import responses
from .loopback import LoopbackFake, TrackedHandler

Provider = Literal["openai", "azure", "anthropic"]
UsageStyle = Literal["openai", "gemini", "groq", "openrouter"]
USAGE_STYLES: tuple[UsageStyle, ...] = get_args(UsageStyle)

DEFAULT_REPLY = "Hello from the fake upstream."
DEFAULT_MODELS = ("fake-model-a", "fake-model-b")
DEFAULT_RETRY_AFTER = 1
DEFAULT_SLOW_DELAY = 0.5
DEFAULT_EMBEDDING_DIMENSIONS = 8

USAGE_KEYS = frozenset(
    {"input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "cache_write_1h_tokens",
     "reasoning_tokens"}
)
# The counts a message_delta event's usage repeats, cumulative (the Messages API's MessageDeltaUsage):
# never the split of the cache writes by duration, which only message_start carries.
ANTHROPIC_DELTA_USAGE = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                         "output_tokens", "output_tokens_details", "server_tool_use")

# Error vocabulary per status: (OpenAI error type, OpenAI error code, Anthropic error type, message).
# The strings are the ones the real services use, so code that inspects them behaves as in production.
_ERRORS: dict[int, tuple[str, str | None, str, str]] = {
    400: ("invalid_request_error", None, "invalid_request_error", "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "authentication_error", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "permission_error",
        "Permission denied.",
    ),
    404: ("invalid_request_error", None, "not_found_error", "Not found."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "rate_limit_error",
        "Rate limit reached. Please try again later.",
    ),
    500: ("server_error", None, "api_error", "The server had an error while processing your request."),
    503: ("server_error", None, "api_error", "The service is temporarily unavailable."),
    529: ("server_error", None, "overloaded_error", "Overloaded"),
}
FAULT_KINDS = frozenset({"ok", "cut", "slow", "stall", "malformed", "error_event",
                         *(str(status) for status in _ERRORS)})
# What "error_event" sends: OpenRouter's example of a failure after the stream had started with 200 (its
# error-handling docs), and Anthropic's error event (its streaming docs).
OPENAI_ERROR_EVENT = {"code": "server_error", "message": "Provider disconnected unexpectedly"}
ANTHROPIC_ERROR_EVENT = {"type": "overloaded_error", "message": "Overloaded"}
# Tool-call arguments are streamed in pieces of this many characters, as models emit them token by token.
ARGUMENT_PIECE = 8


@dataclass(frozen=True)
class Fault:
    """How to (mis)behave for one request.

    ``kind`` is "ok", "cut" (stream some chunks then drop the connection), "slow"
    (wait ``delay`` seconds between streamed events, or before a non-streamed answer), "stall" (a
    non-streamed answer's first half, then a wait of ``delay`` seconds, then the rest),
    "malformed" (stream some chunks, then a data line that is not JSON, then end the stream;
    a non-streamed answer is a truncated JSON body), "error_event" (stream some chunks, then an
    error event inside the 200 stream, then end it; OpenAI-format streams open with an SSE comment, as
    OpenRouter's do; a non-streamed answer is unaffected) or an HTTP status such as "429"
    (error body in the provider's shape).
    """

    kind: str = "ok"
    retry_after: int = DEFAULT_RETRY_AFTER
    delay: float = DEFAULT_SLOW_DELAY
    cut_after: int | None = None  # content chunks sent before a cut, malformed line or error event; None: half

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")


@dataclass
class RecordedRequest:
    """One request as the fake received it, for assertions in tests."""

    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, or None when there was no body
    provider: Provider | None  # None for paths the fake does not serve
    api_key: str | None
    client_disconnected: bool = False  # set when the client hung up while we were still writing


@dataclass(frozen=True)
class _Snapshot:
    """The configuration one request works with (see the module docstring)."""

    reply: str
    chunk_delay: float
    models: tuple[str, ...]
    usage: dict[str, int]
    raw_usage: dict[str, Any] | None
    usage_style: UsageStyle
    api_key: str | None
    tool_calls: tuple[dict[str, Any], ...]
    reasoning: str
    reasoning_field: str
    embedding_dimensions: int
    embedding_encodings: bool


class _ClientGone(Exception):
    """The client closed the connection before the response was complete."""


class _StreamCut(Exception):
    """Raised by the writers when a "cut" fault says to stop mid-stream."""


class FakeUpstream(LoopbackFake):
    """Fake OpenAI / Azure OpenAI / Anthropic server on 127.0.0.1, in a background thread.

    Use as a context manager, or call ``start()`` and ``stop()``.
    """

    thread_name = "fake-upstream"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.reply = DEFAULT_REPLY
        self.chunk_delay = 0.0
        self.models: list[str] = list(DEFAULT_MODELS)
        self._usage: dict[str, int] = {}
        self.raw_usage: dict[str, Any] | None = None
        self._usage_style: UsageStyle = "openai"
        self._tool_calls: tuple[dict[str, Any], ...] = ()
        # Reasoning streamed before the answer: in the OpenAI-compatible delta field `reasoning_field`
        # ("reasoning_content" as DeepSeek sends it, "reasoning" as OpenRouter does), and as an Anthropic
        # thinking block only when the request enables thinking, as with the real API.
        self.reasoning = ""
        self.reasoning_field = "reasoning_content"
        # The length of an embedding when the request sets no `dimensions`.
        self.embedding_dimensions = DEFAULT_EMBEDDING_DIMENSIONS
        # False: the server ignores `encoding_format` and answers floats, as some OpenAI-compatible servers do.
        self.embedding_encodings = True
        # True: an embeddings answer is gzip-compressed for a client that accepts it, as OpenAI's API does.
        self.compress_answers = False
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._mode = Fault()
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)

    @property
    def openai_base_url(self) -> str:
        """Base URL for the OpenAI SDK, which expects the /v1 prefix in it."""
        return self.base_url + "/v1"

    # -- behaviour control ------------------------------------------------------------------

    def fail_next(
        self,
        kind: str | int,
        *,
        retry_after: int = DEFAULT_RETRY_AFTER,
        delay: float = DEFAULT_SLOW_DELAY,
        cut_after: int | None = None,
    ) -> None:
        """Queue a fault for the next served request; queued faults are used one per request, in order."""
        fault = Fault(str(kind), retry_after=retry_after, delay=delay, cut_after=cut_after)
        with self._lock:
            self._faults.append(fault)

    @property
    def mode(self) -> str:
        """Persistent fault kind used when the one-shot queue is empty ("ok" by default)."""
        return self._mode.kind

    @mode.setter
    def mode(self, kind: str | int) -> None:
        self.set_mode(kind)

    def set_mode(
        self,
        kind: str | int,
        *,
        retry_after: int = DEFAULT_RETRY_AFTER,
        delay: float = DEFAULT_SLOW_DELAY,
        cut_after: int | None = None,
    ) -> None:
        """Like assigning ``mode``, with the same options as ``fail_next``."""
        self._mode = Fault(str(kind), retry_after=retry_after, delay=delay, cut_after=cut_after)

    @property
    def usage(self) -> dict[str, int]:
        """Token counts to report instead of the computed defaults.

        Keys: input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens.
        Missing keys keep their defaults: input from the prompt length, output from the reply
        chunk count, the others 0. See ``_Usage`` for how they map onto each provider's fields.
        """
        return self._usage

    @usage.setter
    def usage(self, values: dict[str, int]) -> None:
        unknown = set(values) - USAGE_KEYS
        if unknown:
            raise ValueError(f"unknown usage keys {sorted(unknown)}; expected some of {sorted(USAGE_KEYS)}")
        self._usage = dict(values)

    @property
    def usage_style(self) -> UsageStyle:
        """Where an OpenAI-format answer carries its usage (``raw_usage``, or the one ``usage`` makes):

        - "openai" (the default): in a stream, only when the request asks with
          ``stream_options.include_usage``, on a last event with no choices (the others say
          ``"usage": null``);
        - "gemini": in a stream that asks for it, on every event: the counts so far, the whole usage on
          the event that finishes the answer (Google's OpenAI-compatible endpoint);
        - "groq": never at the top of a stream: in ``x_groq.usage`` of the event that finishes it (the
          first event's ``x_groq`` holds only the request id);
        - "openrouter": on a last event with no choices whether the request asks or not (OpenRouter
          calls ``include_usage`` deprecated and always sends it); the answer's ``id`` is then ``gen-…``.

        A whole answer carries it as ``usage`` in every style. Anthropic's messages always carry theirs as
        the Messages API does: the input side in message_start (with a provisional output count), then
        the cumulative counts in message_delta (``ANTHROPIC_DELTA_USAGE``), and a non-streamed message the
        whole object.
        """
        return self._usage_style

    @usage_style.setter
    def usage_style(self, style: UsageStyle) -> None:
        if style not in USAGE_STYLES:
            raise ValueError(f"unknown usage style {style!r}; expected one of {list(USAGE_STYLES)}")
        self._usage_style = style

    @property
    def tool_call(self) -> dict[str, Any] | list[dict[str, Any]] | None:
        """Makes the answers tool calls instead of text, until set back to None.

        A dict ``{"name": ..., "arguments": {...}}`` (optionally ``"id"``), or a list of them for
        parallel calls. Streamed as OpenAI ``tool_calls`` deltas / Anthropic ``tool_use`` blocks
        with ``input_json_delta`` pieces; ``reply`` is not sent while this is set.
        """
        calls = [dict(call) for call in self._tool_calls]
        return calls[0] if len(calls) == 1 else (calls or None)

    @tool_call.setter
    def tool_call(self, value: dict[str, Any] | list[dict[str, Any]] | None) -> None:
        calls = [value] if isinstance(value, dict) else list(value or [])
        for call in calls:
            if not isinstance(call.get("name"), str) or not isinstance(call.get("arguments", {}), dict):
                raise ValueError(f"a tool call needs a string name and a dict of arguments, got {call!r}")
        self._tool_calls = tuple(dict(call) for call in calls)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise LookupError("FakeUpstream has received no request")
            return self._requests[-1]

    def reset(self) -> None:
        """Back to the defaults (except ``api_key``), with no queued faults and no recorded requests.

        Lets one server be shared by many tests.
        """
        with self._lock:
            self.reply = DEFAULT_REPLY
            self.chunk_delay = 0.0
            self.models = list(DEFAULT_MODELS)
            self._usage = {}
            self.raw_usage = None
            self._usage_style = "openai"
            self._tool_calls = ()
            self.reasoning = ""
            self.reasoning_field = "reasoning_content"
            self.embedding_dimensions = DEFAULT_EMBEDDING_DIMENSIONS
            self.embedding_encodings = True
            self.compress_answers = False
            self._mode = Fault()
            self._faults.clear()
            self._requests.clear()

    # -- used by the request handler -------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_fault(self) -> Fault:
        with self._lock:
            return self._faults.popleft() if self._faults else self._mode

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            return _Snapshot(
                reply=self.reply,
                chunk_delay=self.chunk_delay,
                models=tuple(self.models),
                usage=dict(self._usage),
                raw_usage=copy.deepcopy(self.raw_usage),
                usage_style=self._usage_style,
                api_key=self.api_key,
                tool_calls=self._tool_calls,
                reasoning=self.reasoning,
                reasoning_field=self.reasoning_field,
                embedding_dimensions=self.embedding_dimensions,
                embedding_encodings=self.embedding_encodings,
            )

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}fake{next(self._ids):08d}"



def _chunks(text: str) -> list[str]:
    """Split a reply word by word, keeping the whitespace so the chunks join back to ``text``."""
    return re.findall(r"\S+\s*|\s+", text)


def _request_text(body: dict[str, Any]) -> str:
    """All prompt text of a chat request (OpenAI or Anthropic shape), for token estimates."""
    parts: list[Any] = [body.get("system") or ""]
    parts.extend(
        message.get("content") for message in body.get("messages") or [] if isinstance(message, dict)
    )
    texts: list[str] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, list):  # content blocks: [{"type": "text", "text": ...}, ...]
            texts.extend(block.get("text", "") for block in part if isinstance(block, dict))
    return "".join(texts)


def _pieces(text: str, size: int = ARGUMENT_PIECE) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


@dataclass(frozen=True)
class _ToolCall:
    id: str
    name: str
    arguments: str  # JSON text

    @property
    def pieces(self) -> list[str]:
        return _pieces(self.arguments)


@dataclass(frozen=True)
class _Answer:
    """What the fake says to one request: reasoning pieces, then text chunks or tool calls."""

    reasoning: list[str]
    text: list[str]
    tool_calls: list[_ToolCall]

    @classmethod
    def build(cls, fake: FakeUpstream, snapshot: _Snapshot, id_prefix: str, *, reasoning: bool = True) -> _Answer:
        calls = [
            _ToolCall(
                id=str(call.get("id") or fake._new_id(id_prefix)),
                name=call["name"],
                arguments=json.dumps(call.get("arguments", {})),
            )
            for call in snapshot.tool_calls
        ]
        return cls(
            reasoning=_chunks(snapshot.reasoning) if reasoning else [],
            text=[] if calls else _chunks(snapshot.reply),
            tool_calls=calls,
        )

    @property
    def output_pieces(self) -> int:
        return len(self.reasoning) + len(self.text) + sum(len(call.pieces) for call in self.tool_calls)


@dataclass
class _Usage:
    """Token counts; each value goes verbatim into the provider's own field.

    So ``input_tokens`` is OpenAI's ``prompt_tokens`` (which includes cached tokens) but
    Anthropic's ``input_tokens`` (which excludes cache reads and writes), as with the real APIs.
    ``cache_write_1h_tokens`` are Anthropic's 1-hour writes; the OpenAI format has no such class.
    """

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def build(cls, snapshot: _Snapshot, body: dict[str, Any], answer: _Answer) -> _Usage:
        # Deterministic defaults: about four characters per prompt token, one token per streamed piece;
        # reasoning is part of the output, as the real APIs count it.
        defaults = {
            "input_tokens": max(1, len(_request_text(body)) // 4),
            "output_tokens": answer.output_pieces,
            "reasoning_tokens": len(answer.reasoning),
        }
        return cls(**{**defaults, **snapshot.usage})

    def openai(self) -> dict[str, Any]:
        prompt_details: dict[str, int] = {"cached_tokens": self.cached_tokens, "audio_tokens": 0}
        if self.cache_write_tokens:  # only newer responses carry this field, and only when non-zero
            prompt_details["cache_write_tokens"] = self.cache_write_tokens
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "prompt_tokens_details": prompt_details,
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def anthropic(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens + self.cache_write_1h_tokens,
            "cache_read_input_tokens": self.cached_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write_tokens,
                "ephemeral_1h_input_tokens": self.cache_write_1h_tokens,
            },
            "output_tokens": self.output_tokens,
            "service_tier": "standard",
        }


_AZURE_CHAT = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/chat/completions$")
_AZURE_EMBEDDINGS = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/embeddings$")


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """The fake's vector for `text`: values k/128 for k in -128..127 from the text's SHA-256, exact in float32
    (so a base64 answer decodes to the very floats a float answer holds)."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((byte - 128) / 128 for byte in digest)
        counter += 1
    return values[:dimensions]


def embedding_base64(vector: list[float]) -> str:
    """As OpenAI sends `encoding_format: "base64"`: the little-endian float32 bytes, in base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_tokens(text: str) -> int:
    """The fake's count of an input's tokens: one per word, at least one."""
    return max(1, len(text.split()))


class _Handler(TrackedHandler):
    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionError:
            # Clients hang up between requests, often with a reset rather than a clean close
            # (the OpenAI SDK stops reading at [DONE] and closes with the chunk terminator unread).
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    # -- routing -----------------------------------------------------------------------------

    def _serve(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        raw_body = self.rfile.read(int(headers.get("content-length") or 0))
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = raw_body.decode("utf-8", "replace")
        route = self._route(self.command, url.path, headers)
        provider = route[0] if route else None
        record = RecordedRequest(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query)),
            headers=headers,
            body=body,
            provider=provider,
            api_key=self._api_key(provider, headers),
        )
        fake._record(record)
        try:
            self._respond(record, route)
        except _ClientGone:
            record.client_disconnected = True
            self.close_connection = True

    @staticmethod
    def _route(method: str, path: str, headers: dict[str, str]) -> tuple[Provider, str] | None:
        # /v1/models is shared by OpenAI and Anthropic; Anthropic clients must send anthropic-version.
        anthropic = "anthropic-version" in headers or "x-api-key" in headers
        if method == "GET" and path == "/v1/models":
            return ("anthropic", "models") if anthropic else ("openai", "models")
        if method == "POST" and path == "/v1/chat/completions":
            return ("openai", "chat")
        if method == "POST" and path == "/v1/messages":
            return ("anthropic", "messages")
        if method == "POST" and _AZURE_CHAT.match(path):
            return ("azure", "chat")
        if method == "POST" and path in ("/v1/responses", "/openai/responses"):  # tests/fakes/responses.py
            return ("azure" if path.startswith("/openai/") else "openai", "responses")
        if method == "POST" and path == "/v1/embeddings":
            return ("openai", "embeddings")
        if method == "POST" and _AZURE_EMBEDDINGS.match(path):
            return ("azure", "embeddings")
        return None

    @staticmethod
    def _api_key(provider: Provider | None, headers: dict[str, str]) -> str | None:
        bearer = headers.get("authorization", "")
        bearer_key = bearer[len("Bearer ") :] if bearer.startswith("Bearer ") else None
        # Anthropic documents x-api-key, but recent SDKs send the key as a Bearer token.
        if provider == "anthropic":
            return headers.get("x-api-key") or bearer_key
        if provider == "azure":
            return headers.get("api-key") or bearer_key
        return bearer_key

    def _respond(self, record: RecordedRequest, route: tuple[Provider, str] | None) -> None:
        if route is None:
            provider: Provider = "anthropic" if "anthropic-version" in record.headers else "openai"
            self._error(provider, 404, f"Invalid URL ({record.method} {record.path})")
            return
        provider, endpoint = route
        fake = self.server.fake
        fault = fake._next_fault()
        snapshot = fake._snapshot()
        if fault.kind.isdigit():
            self._error(provider, int(fault.kind), retry_after=fault.retry_after)
            return
        if snapshot.api_key is not None and record.api_key != snapshot.api_key:
            self._error(provider, 401)
            return
        if provider == "azure" and "api-version" not in record.query:
            self._error(provider, 400, "Missing required query parameter: api-version")
            return
        if endpoint == "models":
            self._send_json(200, self._models_body(provider, snapshot), fault)
            return
        body = record.body if isinstance(record.body, dict) else None
        if body is None:
            self._error(provider, 400, "The request body must be a JSON object.")
            return
        if endpoint == "responses":
            responses.serve(self, body, snapshot, fault, answer_cls=_Answer, usage_cls=_Usage)
        elif endpoint == "embeddings":
            deployment = _AZURE_EMBEDDINGS.match(record.path)
            model = body.get("model") or (deployment["deployment"] if deployment else "")
            self._embeddings(provider, body, str(model), snapshot, fault)
        elif provider == "anthropic":
            self._messages(body, snapshot, fault)
        else:
            deployment = _AZURE_CHAT.match(record.path)
            model = body.get("model") or (deployment["deployment"] if deployment else "")
            self._chat_completions(body, str(model), snapshot, fault)

    # -- endpoints ---------------------------------------------------------------------------

    @staticmethod
    def _models_body(provider: Provider, snapshot: _Snapshot) -> dict[str, Any]:
        if provider == "anthropic":
            data = [
                {
                    "type": "model",
                    "id": model,
                    "display_name": model.replace("-", " ").title(),
                    "created_at": "2025-01-01T00:00:00Z",
                    "lifecycle": "active",
                }
                for model in snapshot.models
            ]
            return {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        return {
            "object": "list",
            "data": [
                {"id": model, "object": "model", "created": 1_735_689_600, "owned_by": "fake-upstream"}
                for model in snapshot.models
            ],
        }

    def _embeddings(self, provider: Provider, body: dict[str, Any], model: str, snapshot: _Snapshot,
                    fault: Fault) -> None:
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs or not all(isinstance(text, str) and text for text in inputs):
            self._error(provider, 400, "'input' must be a non-empty string or array of non-empty strings.")
            return
        encoding = body.get("encoding_format", "float") if snapshot.embedding_encodings else "float"
        if encoding not in ("float", "base64"):
            self._error(provider, 400, f"{encoding!r} is not one of ['float', 'base64'] - 'encoding_format'")
            return
        dimensions = body.get("dimensions", snapshot.embedding_dimensions)
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            self._error(provider, 400, "'dimensions' must be a positive integer.")
            return
        data = []
        for index, text in enumerate(inputs):
            vector = fake_embedding(text, dimensions)
            embedding: Any = embedding_base64(vector) if encoding == "base64" else vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = snapshot.usage.get("input_tokens", sum(embedding_tokens(text) for text in inputs))
        usage = snapshot.raw_usage if snapshot.raw_usage is not None else {"prompt_tokens": tokens,
                                                                             "total_tokens": tokens}
        compress = self.server.fake.compress_answers and "gzip" in self.headers.get("Accept-Encoding", "")
        self._send_json(200, {"object": "list", "data": data, "model": model, "usage": usage}, fault,
                        compress=compress)

    def _chat_completions(self, body: dict[str, Any], model: str, snapshot: _Snapshot, fault: Fault) -> None:
        fake = self.server.fake
        answer = _Answer.build(fake, snapshot, "call_")
        usage = snapshot.raw_usage
        if usage is None:
            usage = _Usage.build(snapshot, body, answer).openai()
        style = snapshot.usage_style
        groq_id = {"id": fake._new_id("req_")} if style == "groq" else {}
        # OpenRouter names each generation gen-… (its generation stats are looked up by it); OpenAI chatcmpl-….
        completion_id = fake._new_id("gen-" if style == "openrouter" else "chatcmpl-")
        created = int(time.time())
        finish_reason = "tool_calls" if answer.tool_calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None if answer.tool_calls else snapshot.reply,
                "refusal": None,
            }
            if answer.reasoning:
                message[snapshot.reasoning_field] = snapshot.reasoning
            if answer.tool_calls:
                message["tool_calls"] = [
                    {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                    for call in answer.tool_calls
                ]
            payload = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
                "usage": usage,
                "system_fingerprint": None,
            }
            if style == "groq":
                payload["x_groq"] = groq_id
            self._send_json(200, payload, fault)
            return

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        # Where the usage goes (FakeUpstream.usage_style): on every chunk, on the finishing one, or after it.
        every_chunk = style == "gemini" and include_usage
        usage_chunk = style == "openrouter" or (style == "openai" and include_usage)

        def so_far(pieces: int) -> dict[str, Any]:
            """Gemini's usage on a chunk before the last: the prompt, and the output counted so far."""
            prompt = usage.get("prompt_tokens", 0)
            return {"usage": {"prompt_tokens": prompt, "completion_tokens": pieces, "total_tokens": prompt + pieces}}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if style == "openai" and include_usage:  # the real API adds "usage": null to every chunk but the last
                payload["usage"] = None
            return {**payload, **extra}

        if every_chunk:
            opening, finishing = so_far(0), {"usage": usage}
        elif style == "groq":
            opening, finishing = {"x_groq": groq_id}, {"x_groq": {**groq_id, "usage": usage}}
        else:
            opening, finishing = {}, {}

        # (delta, whether a cut or malformed fault counts it): reasoning and text chunks and argument
        # pieces count; the delta that opens a tool call (its id and name) does not.
        deltas = [({snapshot.reasoning_field: piece}, True) for piece in answer.reasoning]
        deltas += [({"content": text}, True) for text in answer.text]
        for index, call in enumerate(answer.tool_calls):
            head = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            deltas.append(({"tool_calls": [head]}, False))
            deltas += [
                ({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}, True) for piece in call.pieces
            ]
        counted = sum(1 for _, counts in deltas if counts)

        def events() -> Iterator[tuple[str | None, Any]]:
            if fault.kind == "error_event":
                yield ":", "OPENROUTER PROCESSING"
            yield None, chunk({"role": "assistant", "content": "" if answer.text else None, "refusal": None},
                              **opening)
            position = 0
            for delta, counts in deltas:
                if counts:
                    if self._breaks(fault, position, counted):
                        if fault.kind == "error_event":
                            yield None, {**chunk({"content": ""}, "error"), "error": OPENAI_ERROR_EVENT}
                        else:
                            yield None, json.dumps(chunk(delta))[:40]  # a data line cut off mid-JSON
                        return
                    position += 1
                yield None, chunk(delta, **(so_far(position) if every_chunk else {}))
            yield None, chunk({}, finish_reason, **finishing)
            if usage_chunk:
                yield None, {**chunk({}), "choices": [], "usage": usage}
            yield None, "[DONE]"

        self._stream(events(), snapshot, fault)

    def _messages(self, body: dict[str, Any], snapshot: _Snapshot, fault: Fault) -> None:
        fake = self.server.fake
        thinking = (body.get("thinking") or {}).get("type") == "enabled"
        answer = _Answer.build(fake, snapshot, "toolu_", reasoning=thinking)
        usage = snapshot.raw_usage
        if usage is None:
            usage = _Usage.build(snapshot, body, answer).anthropic()
        signature = "fake-signature-" + fake._new_id("sig_")
        # Each block: (as it starts, its deltas, as it ends up in a non-streamed message).
        blocks: list[tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]] = []
        if answer.reasoning:
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in answer.reasoning]
            blocks.append((
                {"type": "thinking", "thinking": "", "signature": ""},
                [*deltas, {"type": "signature_delta", "signature": signature}],
                {"type": "thinking", "thinking": snapshot.reasoning, "signature": signature},
            ))
        if answer.text:
            blocks.append((
                {"type": "text", "text": ""},
                [{"type": "text_delta", "text": text} for text in answer.text],
                {"type": "text", "text": snapshot.reply},
            ))
        for call in answer.tool_calls:
            # The first piece of input JSON is empty, as the real API sends it; a call without input
            # sends nothing more (never "{}").
            pieces = ["", *(call.pieces if call.arguments != "{}" else [])]
            blocks.append((
                {"type": "tool_use", "id": call.id, "name": call.name, "input": {}},
                [{"type": "input_json_delta", "partial_json": piece} for piece in pieces],
                {"type": "tool_use", "id": call.id, "name": call.name, "input": json.loads(call.arguments)},
            ))
        stop_reason = "tool_use" if answer.tool_calls else "end_turn"
        message: dict[str, Any] = {
            "id": fake._new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": str(body.get("model", "")),
            "content": [final for _, _, final in blocks],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            self._send_json(200, message, fault)
            return
        counted = sum(1 for _, deltas, _ in blocks for delta in deltas if delta["type"] != "signature_delta")

        def events() -> Iterator[tuple[str | None, Any]]:
            # message_start carries the input side of the usage and a provisional output count, as the real
            # API does; message_delta the cumulative counts, the final output count among them.
            start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
            yield "message_start", {"type": "message_start", "message": start}
            position = 0
            for index, (head, deltas, _) in enumerate(blocks):
                yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": head}
                if index == 0:
                    yield "ping", {"type": "ping"}
                for delta in deltas:
                    event = {"type": "content_block_delta", "index": index, "delta": delta}
                    if delta["type"] != "signature_delta":
                        if self._breaks(fault, position, counted):
                            if fault.kind == "error_event":
                                yield "error", {"type": "error", "error": ANTHROPIC_ERROR_EVENT}
                            else:
                                yield "content_block_delta", json.dumps(event)[:40]  # a data line cut off mid-JSON
                            return
                        position += 1
                    yield "content_block_delta", event
                yield "content_block_stop", {"type": "content_block_stop", "index": index}
            yield (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {name: usage[name] for name in ANTHROPIC_DELTA_USAGE if name in usage},
                },
            )
            yield "message_stop", {"type": "message_stop"}

        self._stream(events(), snapshot, fault)

    # -- writing -----------------------------------------------------------------------------

    @staticmethod
    def _breaks(fault: Fault, position: int, total: int) -> bool:
        """True where a "malformed" or "error_event" fault puts its bad line or error event; raises where a
        "cut" fault drops the connection."""
        if fault.kind not in ("cut", "malformed", "error_event"):
            return False
        cut_after = fault.cut_after if fault.cut_after is not None else max(1, total // 2)
        if position < cut_after:
            return False
        if fault.kind == "cut":
            raise _StreamCut
        return True

    def _error(
        self, provider: Provider, status: int, message: str | None = None, *, retry_after: int = 0
    ) -> None:
        openai_type, openai_code, anthropic_type, default_message = _ERRORS[status]
        text = message or default_message
        if provider == "anthropic":
            body: dict[str, Any] = {"type": "error", "error": {"type": anthropic_type, "message": text}}
        else:
            body = {"error": {"message": text, "type": openai_type, "param": None, "code": openai_code}}
        extra = {"Retry-After": str(retry_after)} if status == 429 else {}
        self._send_json(status, body, headers=extra)

    def _send_json(
        self, status: int, payload: Any, fault: Fault | None = None, headers: dict[str, str] | None = None,
        compress: bool = False,
    ) -> None:
        data = json.dumps(payload).encode()
        if compress:
            data = gzip.compress(data)
            headers = {**(headers or {}), "Content-Encoding": "gzip"}
        if fault is not None and fault.kind == "slow":
            self.server.fake._sleep(fault.delay)
        if fault is not None and fault.kind == "malformed":
            data = data[: len(data) // 2]  # a complete body that is not JSON: cut off mid-object
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", self.server.fake._new_id("req_"))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if fault is not None and fault.kind == "cut":
                # Promise the whole body, deliver half: the client sees a truncated response.
                self.wfile.write(data[: len(data) // 2])
                self._abort()
                return
            if fault is not None and fault.kind == "stall":
                self.wfile.write(data[: len(data) // 2])
                self.server.fake._sleep(fault.delay)
                data = data[len(data) // 2:]
            self.wfile.write(data)
        except ConnectionError as exc:
            raise _ClientGone from exc

    def _stream(self, events: Iterator[tuple[str | None, Any]], snapshot: _Snapshot, fault: Fault) -> None:
        delay = fault.delay if fault.kind == "slow" else snapshot.chunk_delay
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("x-request-id", self.server.fake._new_id("req_"))
            self.end_headers()
            for position, (event, data) in enumerate(events):
                if position:
                    self.server.fake._sleep(delay)
                text = data if isinstance(data, str) else json.dumps(data)
                if event == ":":  # a comment, as servers send to keep a connection open
                    frame = f": {text}\n\n"
                else:
                    frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
                self._write_chunk(frame.encode())
            self.wfile.write(b"0\r\n\r\n")
        except _StreamCut:
            self._abort()
        except ConnectionError as exc:
            raise _ClientGone from exc

    def _write_chunk(self, data: bytes) -> None:
        # Each SSE frame is one HTTP chunk, flushed at once (wfile is unbuffered), so the
        # client sees events as they are produced.
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _abort(self) -> None:
        """Drop the connection without finishing the body, like a crashed or cut-off upstream."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may already be gone
            self.connection.shutdown(socket.SHUT_RDWR)
