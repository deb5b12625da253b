"""JSON over HTTP, and server-sent events, on aiohttp: the OpenAI wire format spoken directly.

For the OpenAI-compatible providers that are not called through an official SDK. The openai SDK builds
every request anew (URL parsing, header objects, option models): about 0.85 ms a call on loopback over a
plain aiohttp request, against a target of 2 ms added to the time to the first token. Here what does
not change between calls (URLs, headers, timeouts, proxy) is worked out once per client, and a call is
one aiohttp request and a loop over the bytes that come back. JSON is read and written with orjson: an
embeddings answer of 8 x 1,536 floats took the standard library 3.8 ms to read, orjson 0.4 ms.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from .base import Connection

# As the openai SDK's client: many streams to one provider at once, and idle connections kept no longer
# than the shortest usual server idle timeout (uvicorn's, under vLLM and many proxies, is 5 seconds).
_CONNECTIONS = 1000
_KEEPALIVE_SECONDS = 5.0
# After `data: [DONE]`, how long to wait for the rest of the body (the chunked encoding's end, normally
# already there) so that the connection can serve the next call; past it the connection is closed.
_DRAIN_SECONDS = 0.1
_SENDING_JSON = {"Content-Type": "application/json"}


class StatusError(Exception):
    """An answer with an error status. `body` is the error object (OpenAI's `{"error": {...}}` unwrapped, as
    the openai SDK does), whatever other JSON was sent, or the body's text."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers


class EventError(Exception):
    """An error event inside a stream that had started with 200, as OpenRouter sends them; `body` is its
    `error` object."""

    def __init__(self, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else None
        # The openai SDK's words for an error that says nothing.
        self.message = message if isinstance(message, str) and message else "An error occurred during streaming"
        super().__init__(self.message)
        self.body = body


class Client:
    """One provider's connection pool, with its base URL, headers and timeouts set once.

    Built by `base.pooled`, which keeps one per connection settings and event loop and closes it when
    the loop ends."""

    def __init__(self, conn: Connection) -> None:
        # The base URL ends before the endpoint's path; a query in it (some proxies want one) is kept.
        root, _, query = conn.base_url.partition("?")
        self._root = root.rstrip("/") + "/"
        self._query = "?" + query if query else ""
        self._urls: dict[str, URL] = {}
        headers = {"Accept": "application/json", "User-Agent": "aspweb"}
        if conn.api_key:  # keyless servers (Ollama, vLLM) get no Authorization header at all
            headers["Authorization"] = f"Bearer {conn.api_key}"
        headers.update(conn.headers)
        proxy, proxy_auth = _proxy_from_env(self._url(""))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=_CONNECTIONS, keepalive_timeout=_KEEPALIVE_SECONDS),
            headers=headers,
            # `timeout` is the longest silence while reading; the whole call's deadline and the first token's
            # are aspweb's call path's (providers/calls.py). `connect` includes waiting for a free connection.
            timeout=aiohttp.ClientTimeout(total=None, connect=conn.timeout, sock_connect=conn.connect_timeout,
                                          sock_read=conn.timeout),
            proxy=proxy,
            proxy_auth=proxy_auth,
        )

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._root + path + self._query)
        return url

    async def post(self, path: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Any:
        """POST a JSON body; the JSON answered. `headers` are added to this request only (a short-lived
        token)."""
        async with self._session.post(self._url(path), data=_encode(body), headers=_sending(headers)) as response:
            if response.status >= 400:
                raise await _status_error(response)
            return orjson.loads(await response.read())

    @contextlib.asynccontextmanager
    async def answer(self, path: str, body: Mapping[str, Any]) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST a JSON body; the answer with its body still to come, for a caller that passes it on as it
        arrives (`response.content`). An error status raises StatusError, as `post` does."""
        async with self._session.post(self._url(path), data=_encode(body), headers=_SENDING_JSON) as response:
            if response.status >= 400:
                raise await _status_error(response)
            yield response

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> Any:
        async with self._session.get(self._url(path), headers=headers) as response:
            if response.status >= 400:
                raise await _status_error(response)
            return orjson.loads(await response.read())

    async def events(self, path: str, body: Mapping[str, Any],
                     headers: Mapping[str, str] | None = None) -> AsyncIterator[Any]:
        """POST a JSON body; each server-sent event's JSON data as it arrives, until `data: [DONE]` or the end
        of the body. Closing the iterator early closes the connection."""
        async with self._session.post(self._url(path), data=_encode(body), headers=_sending(headers)) as response:
            if response.status >= 400:
                raise await _status_error(response)
            decoder = EventDecoder()
            async for piece in response.content.iter_any():
                for data in decoder.feed(piece):
                    if data.startswith(b"[DONE]"):
                        await _drain(response)
                        return
                    event = orjson.loads(data)
                    if isinstance(event, dict) and event.get("error"):
                        raise EventError(event["error"])
                    yield event

    async def close(self) -> None:
        await self._session.close()

    def is_closed(self) -> bool:
        return self._session.closed


class EventDecoder:
    """Server-sent events from a body's bytes as they arrive: each event's data, its `data:` lines joined by
    newlines. Comments and the other fields (event, id, retry) carry nothing aspweb uses and are skipped.
    Lines end with LF, CRLF or CR, a CRLF split between two pieces included; an event the body ends
    before its blank line is dropped, as the format says."""

    __slots__ = ("_after_cr", "_data", "_line")

    def __init__(self) -> None:
        self._line: list[bytes] = []  # the start of a line whose end has not arrived
        self._data: list[bytes] = []  # the data lines of the event being read
        self._after_cr = False

    def feed(self, piece: bytes) -> list[bytes]:
        if self._after_cr:
            self._after_cr = False
            if piece[:1] == b"\n":
                piece = piece[1:]
        if b"\r" in piece:
            self._after_cr = piece[-1:] == b"\r"
            piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = piece.split(b"\n")
        if len(lines) == 1:
            self._line.append(piece)
            return []
        if self._line:
            self._line.append(lines[0])
            lines[0] = b"".join(self._line)
            self._line.clear()
        if rest := lines.pop():
            self._line.append(rest)
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line == b"data":
                data.append(b"")
        return events


def _sending(headers: Mapping[str, str] | None) -> Mapping[str, str]:
    return {**_SENDING_JSON, **headers} if headers else _SENDING_JSON


def _encode(body: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:  # what orjson does not write (an integer beyond 64 bits) the standard library does
        return json.dumps(body, separators=(",", ":")).encode()


async def _status_error(response: aiohttp.ClientResponse) -> StatusError:
    try:
        raw = await response.read()
    except (aiohttp.ClientError, TimeoutError):  # the status says enough without the body
        raw = b""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = orjson.loads(text)
    except ValueError:
        return StatusError(response.status, text, response.headers)
    return StatusError(response.status, body.get("error", body) if isinstance(body, dict) else body,
                       response.headers)


async def _drain(response: aiohttp.ClientResponse) -> None:
    if response.content.at_eof():
        return
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            await response.content.read()


def _proxy_from_env(url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy HTTP(S)_PROXY and NO_PROXY give for the provider, once per client (aiohttp's own
    `trust_env` would look again on every request): the openai SDK honours them too."""
    try:
        return get_env_proxy_for_url(url)
    except LookupError:
        return None, None
