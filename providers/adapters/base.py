"""What every adapter speaks: requests, streamed chunks, normalised usage, and one error type.

Adapters know wire formats and nothing else: no database, no budgets, no retries.
"""

import asyncio
import contextlib
import json
import math
import re
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Literal, TypeVar

from aspweb import outbound

T = TypeVar("T")

ErrorKind = Literal[
    "auth", "rate_limit", "quota", "timeout", "network", "server",
    "model_not_found", "invalid_request", "content_filter",
]
RETRYABLE: frozenset[str] = frozenset({"rate_limit", "timeout", "network", "server"})


@dataclass(frozen=True)
class Connection:
    """What an adapter needs to reach one provider; built from a Provider row by the caller."""

    kind: str
    # The provider's name as its admin set it: every error names the provider by it.
    label: str
    base_url: str
    api_key: str = field(default="", repr=False)
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class Usage:
    """Token counts, normalised into classes that do not overlap, each billed at its own price:
    `input_tokens` is the uncached input (cache reads and writes excluded); `cache_write_tokens` the
    tokens written to the prompt cache for 5 minutes (or for a provider's only duration) and
    `cache_write_1h_tokens` those written for 1 hour; `output_tokens` includes reasoning tokens (reasoning
    is billed once, as output; `reasoning_tokens` says how much of the output it was)."""

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    # The cost as the provider itself reported it (OpenRouter's usage.cost, the Claude CLI's
    # total_cost_usd), beside aspweb's own pricing.
    reported_cost: Decimal | None = None
    cache_write_1h_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """Every input token, cached or not: what long-context tiers are decided by."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens + self.cache_write_1h_tokens


@dataclass(frozen=True)
class TextPart:
    text: str
    # Anthropic's prompt cache: a breakpoint after this part, kept "5m" or "1h" ("" for none). Sent only to
    # Anthropic; other providers cache on their own.
    cache: str = ""


@dataclass(frozen=True)
class ImagePart:
    """An image in a user message: an https URL or a data: URL (base64)."""

    url: str


ContentPart = TextPart | ImagePart


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class Message:
    """One turn. Roles: user, assistant (text and/or tool calls) and tool (a result for tool_call_id)."""

    role: Literal["user", "assistant", "tool"]
    content: str | tuple[ContentPart, ...] = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    # A tool result's cache breakpoint (see TextPart.cache).
    cache: str = ""

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


@dataclass(frozen=True)
class ChatRequest:
    """A provider-neutral chat request. `tools` are in the OpenAI function format
    ({"type": "function", "function": {"name", "description", "parameters"}})."""

    model: str
    messages: tuple[Message, ...]
    system: str = ""
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    # Anthropic: mark the system prompt with cache_control so it is cached, for `system_cache_ttl` ("5m" or
    # "1h"; "" is Anthropic's default, five minutes).
    cache_system: bool = False
    system_cache_ttl: str = ""
    # Extended thinking / reasoning budget in tokens, on models that support it.
    thinking_budget: int | None = None
    # Provider-specific body parameters, passed through as they are.
    extra: dict[str, Any] = field(default_factory=dict)
    # The caller's labels (OpenAI's `metadata`: string keys and values), sent only to providers whose kind
    # accepts them (providers.kinds.Kind.accepts_metadata); they change nothing in the answer.
    metadata: dict[str, str] | None = None
    # False when the caller wants the whole answer at once (the gateway's non-streamed calls): an adapter
    # may then ask its provider for the whole answer, and send it as the chunks of `chunks_of`.
    stream: bool = True
    # OpenAI's reasoning effort ("none" to "xhigh"), where the caller asked in those words (the Responses
    # API's `reasoning.effort`): sent as it is in the OpenAI format, as a thinking budget to Anthropic.
    reasoning_effort: str | None = None
    # The request in the OpenAI Responses API's own shape (its input items, instructions, tools, ...), for
    # providers that speak that API natively (OpenAI, Azure OpenAI: openai_responses.py); every other
    # adapter answers the same question from the fields above, which say it in chat form.
    responses: dict[str, Any] | None = None
    # What the call path asks of a resolved model (providers.models.Model.type): a chat model.
    model_type: ClassVar[str] = "chat"


@dataclass(frozen=True)
class EmbeddingRequest:
    """A provider-neutral embeddings request (OpenAI's /v1/embeddings): the texts to embed, in order.
    `dimensions` is sent only when set. `encoding` is the one the client asked for: adapters that can pass
    the provider's answer on as it comes ask for it (Embeddings.body); whatever else a provider sends, the
    gateway converts (gateway/embeddings.py)."""

    model: str
    input: tuple[str, ...]
    dimensions: int | None = None
    encoding: Literal["float", "base64"] = "float"
    extra: dict[str, Any] = field(default_factory=dict)
    # What the call path asks of a resolved model: an embedding model (a chat request asks for a chat one).
    model_type: ClassVar[str] = "embedding"


@dataclass
class Embeddings:
    """The vectors of an embeddings answer, one per input in order: each a list of numbers, or the base64 text
    of its little-endian float32 values where the provider sent that; and the usage (input tokens only).

    Or, where the provider answered OpenAI's shape in the encoding asked for, that answer to pass on as it is:
    `body`, its bytes as they arrive, `length` their number where known, and `vectors` empty. `usage` is then
    the input's estimate until the body has all been read, and what the provider reported after."""

    vectors: list[list[float] | str]
    usage: Usage
    model: str = ""
    body: AsyncIterator[bytes] | None = None
    length: int | None = None


def as_object(value: Any) -> dict[str, Any]:
    """A JSON object from a server, or an empty one where it sent something else."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """A JSON array from a server, or an empty one where it sent something else."""
    return value if isinstance(value, list) else []


def as_text(value: Any) -> str:
    """A JSON string from a server, or an empty one where it sent something else."""
    return value if isinstance(value, str) else ""


_NUMBER_TYPES = frozenset({float, int})


def is_vector(value: Any) -> bool:
    """A non-empty list of numbers, as an embedding answer's JSON holds one. The sum tells numbers from
    anything else (a string, null, a list) eight times faster than looking at each one's type, which cost
    0.35 ms an answer of 8 x 1,536; a whole-number sum (rare in an embedding) is looked at in full, for true
    and false."""
    if not isinstance(value, list) or not value:
        return False
    try:
        total = sum(value)
    except TypeError:
        return False
    return type(total) is float or set(map(type, value)) <= _NUMBER_TYPES


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call; `index` ties the pieces of one call together."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(frozen=True)
class Chunk:
    """One streamed event: a text, reasoning or tool-call delta, or the final usage / finish reason.
    `response_id` is the provider's own id of the answer where it gives one (OpenAI `chatcmpl-…`, OpenRouter
    `gen-…`, Anthropic `msg_…`), on the final chunk and, where the stream says it first, on every chunk, so
    that a stream cut short keeps it: the ledger stores it for support and reconciliation."""

    text: str = ""
    reasoning: str = ""
    tool_call: ToolCallDelta | None = None
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    response_id: str = ""


@dataclass(frozen=True)
class ModelInfo:
    id: str
    display_name: str = ""
    context_window: int | None = None
    # "embedding" where the listing says the model embeds (Together's `type`); "" where it says nothing.
    type: str = ""


@dataclass(frozen=True)
class Health:
    ok: bool
    latency_ms: int
    message: str
    models: tuple[str, ...] = ()


@dataclass
class Completion:
    """A whole answer, as `complete()` returns it (built from the stream by `collect`)."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish_reason: FinishReason | None = None
    response_id: str = ""


async def chunks_of(completion: Completion) -> AsyncIterator[Chunk]:
    """A whole answer as the chunks a provider would have streamed: one per part."""
    if completion.reasoning:
        yield Chunk(reasoning=completion.reasoning)
    if completion.text:
        yield Chunk(text=completion.text)
    for index, call in enumerate(completion.tool_calls):
        yield Chunk(tool_call=ToolCallDelta(index, id=call.id, name=call.name, arguments=call.arguments))
    yield Chunk(usage=completion.usage, finish_reason=completion.finish_reason, response_id=completion.response_id)


async def collect(chunks: AsyncIterator[Chunk]) -> Completion:
    result = Completion()
    calls: dict[int, dict[str, str]] = {}
    async for chunk in chunks:
        result.text += chunk.text
        result.reasoning += chunk.reasoning
        if chunk.tool_call is not None:
            call = calls.setdefault(chunk.tool_call.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = call["id"] or chunk.tool_call.id
            call["name"] = call["name"] or chunk.tool_call.name
            call["arguments"] += chunk.tool_call.arguments
        if chunk.usage is not None:
            result.usage = chunk.usage
        if chunk.finish_reason is not None:
            result.finish_reason = chunk.finish_reason
        result.response_id = chunk.response_id or result.response_id
    result.tool_calls = [ToolCall(**calls[index]) for index in sorted(calls)]
    return result


def estimate_tokens(text: str) -> int:
    """A rough count (about 4 characters a token) for providers that report none; flagged as estimated."""
    return max(1, round(len(text) / 4)) if text else 0


class ProviderError(Exception):
    """Any failure talking to a provider, in one taxonomy. `message` is plain words for people and
    never holds a secret. `billed` is what the provider charged before the failure, where part of a call
    made of several requests was answered (Bedrock's Titan embeddings, one request a text)."""

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None,
                 retry_after: float | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.retryable = kind in RETRYABLE if retryable is None else retryable
        self.billed: Usage | None = None

    def __repr__(self) -> str:
        return f"ProviderError({self.kind!r}, {self.message!r}, status={self.status})"


_KEYLIKE = re.compile(r"\b(ask|sk|pk|rk|key|api|tok|ghp|xai|gsk|AIza)[-_A-Za-z0-9*]{12,}", re.IGNORECASE)


def redact(text: str, *secrets: str) -> str:
    """Remove the given secrets, and anything shaped like an API key, from text shown to people."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def plain_message(kind: ErrorKind, label: str, status: int | None, detail: str = "",
                  retry_after: float | None = None) -> str:
    """One sentence a member or admin can act on, then the provider's own (redacted) words."""
    code = f" (HTTP {status})" if status else ""
    sentences = {
        "auth": f"{label} rejected the API key{code}. An admin needs to check the provider's key.",
        "quota": f"{label} says the account is out of credit or quota{code}.",
        "rate_limit": f"{label} is rate limiting requests{code}"
        + (f"; retry in {retry_after:g} second{'' if retry_after == 1 else 's'}." if retry_after
           else "; retry in a moment."),
        "timeout": f"{label} did not answer in time.",
        "network": f"Could not connect to {label}: check its base URL and that the server is running.",
        "server": f"{label} had a server error{code}; it is usually temporary.",
        "model_not_found": f"{label} does not know this model{code}.",
        "invalid_request": f"{label} refused the request as invalid{code}.",
        "content_filter": f"{label} refused the request under its content policy{code}.",
    }
    text = sentences[kind]
    detail = detail.strip()
    if detail:
        text += f" {label} said: {detail[:300]}"
    return text


# -- shared by the adapters ----------------------------------------------------------------------


def token_count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and value > 0 else 0


def uncounted_output(total: Any, prompt: int, completion: int) -> int:
    """Tokens a provider counts in its `total_tokens` but in neither `prompt_tokens` nor `completion_tokens`.
    Gemini's OpenAI-compatible endpoint leaves the model's thoughts out of `completion_tokens` while its total
    counts them, and bills them as output: so does aspweb, as reasoning. 0 where the total adds up or is
    missing."""
    return max(0, token_count(total) - prompt - completion)


def reported_cost(value: Any) -> Decimal | None:
    """What a provider says it charged for a call (OpenRouter's `usage.cost`, the Claude CLI's
    `total_cost_usd`): a JSON number, kept with the digits it was sent with (through str(), as the JSON
    parser made it a float). None where it sent no number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return Decimal(str(value))


def prompt_text(request: "ChatRequest | EmbeddingRequest") -> str:
    """Everything the model reads, as plain text, for estimating tokens when the provider reports none."""
    if isinstance(request, EmbeddingRequest):
        return "\n".join(request.input)
    parts = [request.system]
    for message in request.messages:
        parts.append(message.text)
        parts.extend(call.name + call.arguments for call in message.tool_calls)
    parts.extend(json.dumps(tool) for tool in request.tools)
    return "\n".join(part for part in parts if part)


def estimated_usage(request: "ChatRequest | EmbeddingRequest", output: str) -> Usage:
    return Usage(input_tokens=estimate_tokens(prompt_text(request)), output_tokens=estimate_tokens(output),
                 estimated=True)


def malformed_error(conn: Connection, what: str = "a malformed response") -> ProviderError:
    return ProviderError("server", f"{conn.label} sent {what} that aspweb could not read; it is usually temporary.")


def answer_object(response: Any, conn: Connection) -> dict[str, Any]:
    """An HTTP answer's body as a JSON object (an httpx response's); anything else is malformed_error."""
    try:
        payload = response.json()
    except ValueError:
        raise malformed_error(conn, "an answer") from None
    if not isinstance(payload, dict):
        raise malformed_error(conn, "an answer")
    return payload


def cut_error(conn: Connection) -> ProviderError:
    return ProviderError("network", f"The connection to {conn.label} broke before the answer was complete; "
                                    "retrying usually helps.")


def kind_for_status(status: int, code: str) -> ErrorKind:
    if status in (401, 403):
        return "auth"
    if status == 402 or code == "insufficient_quota":
        return "quota"
    if status == 429:
        return "rate_limit"
    if status == 404 or code == "model_not_found":
        return "model_not_found"
    if code == "content_filter" or code == "content_policy_violation":
        return "content_filter"
    if status == 408:
        return "timeout"
    if 400 <= status < 500:
        return "invalid_request"
    return "server"


def retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


# One client per connection settings and event loop. Building an SDK client builds an SSL context
# (tens of milliseconds, on the event loop), and a reused client keeps its open connections between
# calls. Keyed by the loop because a client's pooled connections belong to the loop that opened them.
# The SDKs' clients run on aiohttp (their DefaultAioHttpClient), as do the direct ones (`wire.Client`),
# and aiohttp sessions must be closed on their loop: each loop's clients are closed by an async generator
# of the loop's own, which the loop closes when it ends (asyncio.run, asgiref and uvicorn shut down a
# loop's async generators before closing it).
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, Any]]" = weakref.WeakKeyDictionary()
_closers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncIterator[None]]" = weakref.WeakKeyDictionary()
_closing: set[asyncio.Future] = set()  # clients dropped from a full pool, being closed
_CLIENTS_PER_LOOP = 64


def pooled(conn: Connection, make: Callable[[Connection], T]) -> T:
    loop = asyncio.get_running_loop()
    clients = _clients.get(loop)
    if clients is None:
        clients = _clients[loop] = {}
        closer = _closers[loop] = _close_at_loop_end(clients)
        _in_background(closer.asend(None))  # runs to its `yield`; the loop closes it when it ends
    key = (make.__module__, make.__qualname__, conn.kind, conn.base_url, conn.api_key,
           tuple(sorted(conn.headers.items())), json.dumps(conn.extra, sort_keys=True, default=str),
           conn.timeout, conn.connect_timeout)
    client = clients.get(key)
    if client is None:
        _refuse_metadata(conn)
        if len(clients) >= _CLIENTS_PER_LOOP:
            # Settings changed often (keys rotated, URLs edited): close the oldest.
            _in_background(clients.pop(next(iter(clients))).close())
        client = clients[key] = make(conn)
    return client


def _refuse_metadata(conn: Connection) -> None:
    """No client is built for a base URL that names a cloud metadata service or a link-local address. The
    provider form refuses those too; this stops rows that got past it (older versions, the shell)."""
    try:
        if conn.base_url:
            outbound.check_not_metadata(conn.base_url)
    except outbound.Refused as exc:
        raise ProviderError("invalid_request", f"{conn.label}: {exc}", retryable=False) from None


def _in_background(awaitable: Any) -> None:
    future = asyncio.ensure_future(awaitable)
    _closing.add(future)
    future.add_done_callback(_closing.discard)


async def _close_at_loop_end(clients: dict[tuple, Any]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for client in list(clients.values()):
            with contextlib.suppress(Exception):  # a client that cannot close cleanly is dropped anyway
                await client.close()
        clients.clear()


def listing_error(exc: ProviderError, conn: Connection) -> ProviderError:
    """A model listing that is not found names no model: it says the base URL leads to no API (a server's
    home page, a path missing its /v1). The kind stays, for the callers that fall back on a preset's list."""
    if exc.kind != "model_not_found":
        return exc
    code = f" (HTTP {exc.status})" if exc.status else ""
    return ProviderError(exc.kind, f"{conn.label} has no model list at {conn.base_url}{code}: check the base URL.",
                         status=exc.status, retryable=False)


async def timed_listing(conn: Connection, list_models: Any) -> Health:
    """A health check for adapters whose provider lists models: the listing proves key and URL."""
    import time

    started = time.perf_counter()
    try:
        models = await list_models(conn)
    except ProviderError as exc:
        raise listing_error(exc, conn) from None
    latency_ms = round((time.perf_counter() - started) * 1000)
    noun = "model" if len(models) == 1 else "models"
    return Health(True, latency_ms, f"Connected; {len(models)} {noun} listed.", tuple(m.id for m in models))
