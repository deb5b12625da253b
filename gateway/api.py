"""The /v1 gateway: applications call any configured model in the OpenAI or the Anthropic wire format, with
an aspweb API key, and every call goes through the one call path (providers.calls) into the usage ledger.

    POST /v1/chat/completions   OpenAI chat completions, streamed or not
    POST /v1/messages           Anthropic messages, streamed or not
    POST /v1/responses          the OpenAI Responses API, streamed (typed events) or not
    POST /v1/embeddings         OpenAI embeddings (gateway/embeddings.py, admitted here)
    GET  /v1/models             what the key may use (OpenAI's list; Anthropic's with `anthropic-version`)
    GET  /v1/openapi.json       the OpenAPI description of all this

Every answer carries `x-request-id` (the ledger's request id for calls); answers to calls add
`x-aspweb-provider`, `x-aspweb-model` and, when the whole answer is known before it is sent (not
streamed), `x-aspweb-cost` in USD. Errors always come in the endpoint's own error shape with the status
a client can act on (see `_UPSTREAM` and `_REFUSALS`); an unexpected bug is a JSON 500, never a page.

A request is admitted before its call: the key is checked, the model must be one the key may use, the
rate limits are counted, the response cache is looked up and the call is prepared (`_admit`). When all it
reads is in the worker's memory (row caches; the shared cache too in the embedded default), that runs on
the event loop; what needs the network (the database, Redis) sends it to a worker thread, in one trip.
"""

import functools
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from aspweb import inline, metrics
from aspweb.inline import inline_or_hop
from providers import calls, observe
from providers.adapters.base import (
    ChatRequest,
    Chunk,
    Completion,
    ProviderError,
    Usage,
    chunks_of,
    collect,
    estimate_tokens,
    estimated_usage,
    prompt_text,
)
from providers.models import Model
from usage import attribution
from usage import services as usage_services

from . import anthropic_format, apikeys, openai_format, openapi, ratelimit, responses_format
from . import cache as response_cache
from .checks import BadRequest
from .models import ApiKey

logger = logging.getLogger(__name__)

Flavor = Literal["openai", "anthropic"]
# Anthropic accepts 32 MB requests; images travel inside the body as base64.
MAX_BODY_BYTES = 32 * 1024 * 1024


class ApiError(Exception):
    """An answer other than success: status, words for people, and a short code for programs."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.retry_after = retry_after


# The error `type` per status, in each format.
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
                 429: "rate_limit_error", 500: "server_error", 502: "upstream_error", 503: "upstream_error",
                 504: "upstream_error"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                    429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error",
                    504: "timeout_error"}

# Provider failures, by kind: the provider key and account are aspweb's, not the client's, so the
# provider refusing them is a bad gateway, never the client's 401.
_UPSTREAM: dict[str, tuple[int, str]] = {
    "rate_limit": (429, "upstream_rate_limited"),
    "auth": (502, "upstream_auth_error"),
    "quota": (502, "upstream_quota_exceeded"),
    "timeout": (504, "upstream_timeout"),
    "network": (502, "upstream_unreachable"),
    "server": (502, "upstream_error"),
    "invalid_request": (400, "upstream_invalid_request"),
    "model_not_found": (404, "model_not_found"),
    "content_filter": (400, "content_filter"),
}
# Calls the call path refused to start, by CallError code.
_REFUSALS: dict[str, tuple[int, str]] = {
    "not_found": (404, "model_not_found"),
    # Known but switched off by an admin: the client is not wrong about the name, it may not use it now.
    "disabled": (403, "model_disabled"),
    # Budgets: a call over a hard budget is refused before any provider is contacted.
    "budget_exceeded": (429, "budget_exceeded"),
    # A model without a price under a hard limit: no retry helps until an admin sets its price (a 429 would
    # have the SDKs retry it).
    "unpriced": (403, "model_unpriced"),
    # An embedding model asked to chat, or a chat model to embed.
    "wrong_type": (400, "model_wrong_type"),
}


def _upstream_error(exc: ProviderError) -> ApiError:
    status, code = _UPSTREAM.get(exc.kind, (502, "upstream_error"))
    if exc.kind == "server" and exc.status in (503, 529):
        status, code = 503, "upstream_overloaded"
    retry_after = max(1, math.ceil(exc.retry_after or 1)) if status == 429 else None
    return ApiError(status, exc.message, code=code, retry_after=retry_after)


def _refusal_error(exc: calls.CallError) -> ApiError:
    status, code = _REFUSALS.get(exc.code, (400, exc.code))
    return ApiError(status, exc.message, code=code)


def _error_body(error: ApiError, flavor: Flavor) -> dict[str, Any]:
    if flavor == "anthropic":
        return anthropic_format.error_body(error.message, type=_ANTHROPIC_TYPES.get(error.status, "api_error"))
    return openai_format.error_body(error.message, type=_OPENAI_TYPES.get(error.status, "server_error"),
                                    code=error.code, param=error.param)


def _json(payload: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(payload, separators=(",", ":")), status=status, content_type="application/json")


def _flavor_of(request: HttpRequest) -> Flavor:
    """For endpoints both formats share: Anthropic's clients always send anthropic-version."""
    return "anthropic" if "anthropic-version" in request.headers else "openai"


def gateway_view(flavor: Flavor | None, method: str) -> Callable:
    """Wrap a /v1 view: CSRF-exempt (keys, not cookies, authenticate), one HTTP method, and every failure
    turned into the format's error JSON. The view gets a fresh CallRecord, whose request id names the
    answer and the ledger's record alike."""

    def decorator(view: Callable[..., Awaitable[HttpResponse]]) -> Callable:
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            record = calls.CallRecord()
            style = flavor or _flavor_of(request)
            try:
                if request.method != method:
                    raise ApiError(405, f"{request.path} takes {method} requests only.", code="method_not_allowed")
                response = await view(request, record, *args, **kwargs)
            except Exception as exc:  # every failure leaves in the format's error shape
                error = _as_api_error(exc)
                metrics.gateway_error_answered(error.status, error.code or "")
                response = _json(_error_body(error, style), error.status)
                if error.retry_after is not None:
                    response["Retry-After"] = str(error.retry_after)
                if error.status == 405:
                    response["Allow"] = method
                _provider_headers(response, record)
            response["x-request-id"] = str(record.request_id)
            return response

        return wrapper

    return decorator


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BadRequest):
        return ApiError(400, exc.message, code=exc.code, param=exc.param)
    if isinstance(exc, calls.CallError):
        return _refusal_error(exc)
    if isinstance(exc, ProviderError):
        return _upstream_error(exc)
    logger.exception("The gateway failed on an unexpected error")
    return ApiError(500, "aspweb had an unexpected error; it is logged. Retrying may help.", code="internal_error")


def _provider_headers(response: HttpResponse, record: calls.CallRecord) -> None:
    if record.provider:
        response["x-aspweb-provider"] = record.provider
        response["x-aspweb-model"] = record.model


# -- reading requests -------------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _json_body(request: HttpRequest) -> Any:
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"The request body is larger than {MAX_BODY_BYTES // 2**20} MB.", code="request_too_large")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None


def _raw_key(request: HttpRequest) -> str | None:
    if key := request.headers.get("x-api-key", "").strip():
        return key
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class CacheAsk:
    """What the request's headers say about the response cache: None leaves it to the route."""

    enabled: bool | None
    ttl: int | None


_YES, _NO = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _cache_ask(request: HttpRequest) -> CacheAsk:
    raw = request.headers.get("x-aspweb-cache")
    enabled = None
    if raw is not None:
        if raw.strip().lower() not in _YES + _NO:
            raise BadRequest("The x-aspweb-cache header is true or false.", "x-aspweb-cache")
        enabled = raw.strip().lower() in _YES
    ttl = None
    if (raw_ttl := request.headers.get("x-aspweb-cache-ttl")) is not None:
        try:
            ttl = int(raw_ttl.strip())
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= response_cache.MAX_TTL:
            raise BadRequest(f"The x-aspweb-cache-ttl header is a whole number of seconds from 1 to "
                             f"{response_cache.MAX_TTL}.", "x-aspweb-cache-ttl")
    return CacheAsk(enabled, ttl)


@dataclass(frozen=True)
class Attribution:
    """The call's tags and end user, from the x-aspweb-tags and x-aspweb-end-user headers and the body."""

    tags: tuple[str, ...] = ()
    end_user: str = ""


def _attribution(request: HttpRequest, parsed: Any) -> Attribution:
    """Tags from the header and the body together (bounded together); the end user from the body, else the
    header. A bound passed is a 400 naming where the culprit came from."""
    try:
        header_tags = attribution.tags_parse([request.headers.get("x-aspweb-tags", "")], "x-aspweb-tags")
        tags = attribution.tags_merge(header_tags, parsed.tags,
                                      param="metadata.tags" if parsed.tags else "x-aspweb-tags")
        end_user = parsed.end_user or attribution.end_user_clean(request.headers.get("x-aspweb-end-user", ""),
                                                                 "x-aspweb-end-user")
    except attribution.AttributionError as exc:
        raise BadRequest(exc.message, exc.param, "invalid_attribution") from None
    return Attribution(tags, end_user)


@dataclass
class Admission:
    key: ApiKey
    reservation: ratelimit.Reservation | None = None
    cache_key: str | None = None
    cache_ttl: int | None = None
    hit: response_cache.CachedAnswer | None = None
    prepared: calls.Prepared | None = None
    attribution: Attribution = Attribution()

    @property
    def caller(self) -> calls.Caller:
        # The key's team (an id: the cached key row holds it without a query).
        return calls.Caller(source="gateway", user=self.key.user, api_key=self.key, team_id=self.key.team_id,
                            tags=self.attribution.tags, end_user=self.attribution.end_user)


def _admit_sync(raw_key: str | None, chat: ChatRequest | None, ask: CacheAsk | None,
                record: calls.CallRecord | None = None, attributed: Attribution = Attribution()) -> Admission:
    """Key, then permission, then limits, then the cache, then (with `record`) the call's own preparation
    (resolution and budget reservation): everything before the call that needs the database or the cache.
    Without `chat`, only the key. Reads come before the one change (the rate-limit count), so that an
    inline attempt that needs the database can start again in a thread (aspweb/inline.py)."""
    try:
        key = apikeys.api_key_authenticate(raw_key)
    except apikeys.KeyRefused as exc:
        raise ApiError(401, exc.message, code="invalid_api_key") from None
    if chat is None:
        return Admission(key)
    if not apikeys.key_allows(key, chat.model):
        raise ApiError(403, f"API key {key.prefix}… may not use {chat.model!r}; GET /v1/models lists what it may "
                            "use.", code="model_not_allowed", param="model")
    ttl = _cache_ttl(chat, ask)
    estimate = estimate_tokens(prompt_text(chat)) if key.tpm_limit is not None else 0
    try:
        reservation = ratelimit.admit(key.prefix, rpm=key.rpm_limit, tpm=key.tpm_limit, estimate=estimate)
    except ratelimit.RateLimited as exc:
        raise ApiError(429, exc.message, code="rate_limit_exceeded", retry_after=exc.retry_after) from None
    admission = Admission(key, reservation, attribution=attributed)
    if ttl:
        admission.cache_key, admission.cache_ttl = response_cache.key_for(chat), ttl
        admission.hit = response_cache.lookup(admission.cache_key)
    if admission.hit is None and record is not None:
        admission.prepared = calls.prepare(chat, caller=admission.caller, record=record)
    return admission


def _cache_ttl(chat: ChatRequest, ask: CacheAsk | None) -> int | None:
    if ask is None or ask.enabled is False or chat.model_type != "chat":  # embeddings are not cached
        return None
    if ask.enabled or ask.ttl:
        return ask.ttl or response_cache.DEFAULT_TTL
    if "/" in chat.model:
        return None
    route = calls.route_named(chat.model)
    return route.cache_ttl_seconds or None if route is not None else None


async def _admit(request: HttpRequest, record: calls.CallRecord,
                 parse: Callable[[Any], Any]) -> tuple[Admission, Any]:
    """Authenticate, read and admit a call. A key problem outranks a body problem: callers without a
    valid key learn nothing about their requests."""
    raw_key = _raw_key(request)
    try:
        ask = _cache_ask(request)
        parsed = parse(_json_body(request))
        attributed = _attribution(request, parsed)
    except (ApiError, BadRequest) as problem:
        await inline_or_hop(_admit_sync, raw_key, None, None)
        raise problem from None
    # On the event loop when everything it reads is in this process's memory (aspweb/inline.py), in both
    # profiles; preparing the call is tried apart, after the rate-limit count, so that only it starts again
    # in a thread when it needs the database. Anything else that needs the network goes in one hop.
    try:
        with inline.memory_only():
            admission = _admit_sync(raw_key, parsed.request, ask, attributed=attributed)
    except inline.NEEDS_THREAD:
        return await sync_to_async(_admit_sync)(raw_key, parsed.request, ask, record, attributed), parsed
    if admission.hit is None:
        admission.prepared = await calls.aprepare(parsed.request, caller=admission.caller, record=record)
    return admission, parsed


# -- calling ----------------------------------------------------------------------------------------


def _chunks(admission: Admission, chat: ChatRequest, record: calls.CallRecord) -> AsyncIterator[Chunk]:
    if admission.hit is not None:
        # No provider is called, so the call path writes no record: _after_call writes the hit's (cost 0).
        record.provider, record.model = admission.hit.provider, admission.hit.model
        record.usage, record.cost, record.status = admission.hit.completion.usage, Decimal(0), "ok"
        return chunks_of(admission.hit.completion)
    return calls.stream_chat(chat, caller=admission.caller, record=record, prepared=admission.prepared)


def _tokens(usage: Usage | None) -> int:
    if usage is None:
        return 0
    return usage.prompt_tokens + usage.output_tokens


def _after_call_sync(admission: Admission, record: calls.CallRecord, completion: Completion | None) -> None:
    if admission.hit is not None:
        _record_cache_hit(admission, record)
    if admission.reservation is not None:
        ratelimit.settle(admission.reservation, 0 if admission.hit else _tokens(record.usage))
    if completion is not None and admission.cache_key and admission.hit is None and record.status == "ok":
        response_cache.store(admission.cache_key, completion, provider=record.provider, model=record.model,
                             ttl=admission.cache_ttl or response_cache.DEFAULT_TTL)


def _record_cache_hit(admission: Admission, record: calls.CallRecord) -> None:
    hit = admission.hit
    model = Model.objects.select_related("provider").filter(
        provider__archived_at__isnull=True, provider__name=hit.provider, name=hit.model).first()
    if model is None:  # the model left the catalog since the answer was cached: nothing to charge it to
        return
    usage = hit.completion.usage
    fields = {
        "request_id": record.request_id, "provider": model.provider, "model": model, "source": "gateway",
        "status": "ok", "user": admission.key.user, "api_key": admission.key, "team_id": admission.key.team_id,
        "tags": admission.attribution.tags, "end_user": admission.attribution.end_user,
        "finish_reason": hit.completion.finish_reason or "", "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cache_read_tokens, "cache_write_tokens": usage.cache_write_tokens,
        "cache_write_1h_tokens": usage.cache_write_1h_tokens, "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens, "usage_estimated": usage.estimated, "attempts": 0,
    }
    row = usage_services.usage_record_create(cached=True, **fields)
    observe.cache_hit_finished(fields, row.cost)


async def _after_call(admission: Admission, record: calls.CallRecord, completion: Completion | None) -> None:
    """Settle the token reservation, fill the cache and record cache hits: only for keys with a token limit
    or requests that use the cache, so that other calls pay no extra trip."""
    if admission.reservation is not None or admission.cache_key:
        await sync_to_async(_after_call_sync)(admission, record, completion)


async def _complete(admission: Admission, chat: ChatRequest, record: calls.CallRecord) -> Completion:
    completion = None
    try:
        completion = await collect(_chunks(admission, chat, record))
    finally:
        await _after_call(admission, record, completion)
    return completion


def _answer_headers(response: HttpResponse, admission: Admission, record: calls.CallRecord, *,
                    cost: bool) -> HttpResponse:
    _provider_headers(response, record)
    if cost and record.cost is not None:
        response["x-aspweb-cost"] = format(record.cost.normalize(), "f")
    if admission.cache_key:
        response["x-aspweb-cache"] = "hit" if admission.hit else "miss"
    return response


class _Writer(Protocol):
    """What the two formats' stream writers have in common."""

    def start(self) -> bytes: ...
    def delta(self, chunk: Chunk) -> bytes: ...
    def end(self, usage: Usage, finish_reason: Any) -> bytes: ...
    def error(self, body: dict[str, Any]) -> bytes: ...


async def _stream(admission: Admission, chat: ChatRequest, record: calls.CallRecord, writer: _Writer,
                  flavor: Flavor) -> HttpResponse:
    """A server-sent-event answer. The first chunk is awaited before answering, so that a call that cannot
    start (unknown model, provider down after its retries) is a plain error with its status; a failure
    after that ends the stream with an error event."""
    chunks = _chunks(admission, chat, record)
    try:
        first = await anext(chunks, None)
    except BaseException:
        await _after_call(admission, record, None)
        raise
    response = StreamingHttpResponse(_events(first, chunks, admission, chat, record, writer, flavor),
                                     content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events on as they come
    return _answer_headers(response, admission, record, cost=admission.hit is not None)


async def _events(first: Chunk | None, chunks: AsyncIterator[Chunk], admission: Admission, chat: ChatRequest,
                  record: calls.CallRecord, writer: _Writer, flavor: Flavor) -> AsyncIterator[bytes]:
    seen: list[Chunk] = []
    completion = None
    opening = b""  # the stream's opening events, sent with what follows them: one write to the first token
    try:
        opening = writer.start()
        chunk = first
        while chunk is not None:
            seen.append(chunk)
            if out := opening + writer.delta(chunk):
                yield out
                opening = b""
            chunk = await anext(chunks, None)
        completion = await collect(_replay(seen))
        if not any(chunk.usage is not None for chunk in seen):
            output = completion.text + completion.reasoning + "".join(c.arguments for c in completion.tool_calls)
            completion.usage = estimated_usage(chat, output)
        yield opening + writer.end(completion.usage, completion.finish_reason)
    except Exception as exc:  # headers are gone: the stream ends with an error event instead
        yield opening + writer.error(_error_body(_as_api_error(exc), flavor))
    finally:
        await chunks.aclose()
        await _after_call(admission, record, completion)


async def _replay(chunks: list[Chunk]) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        yield chunk


# -- endpoints --------------------------------------------------------------------------------------


@gateway_view("openai", "POST")
async def chat_completions(request: HttpRequest, record: calls.CallRecord) -> HttpResponse:
    admission, parsed = await _admit(request, record, openai_format.parse_chat)
    chat: ChatRequest = parsed.request
    completion_id, created = f"chatcmpl-{record.request_id.hex}", int(time.time())
    if parsed.stream:
        writer = openai_format.StreamWriter(completion_id=completion_id, created=created, model=chat.model,
                                            include_usage=parsed.include_usage)
        return await _stream(admission, chat, record, writer, "openai")
    completion = await _complete(admission, chat, record)
    body = openai_format.completion_body(completion, completion_id=completion_id, created=created, model=chat.model)
    return _answer_headers(_json(body), admission, record, cost=True)


@gateway_view("anthropic", "POST")
async def messages(request: HttpRequest, record: calls.CallRecord) -> HttpResponse:
    admission, parsed = await _admit(request, record, anthropic_format.parse_messages)
    chat: ChatRequest = parsed.request
    message_id = f"msg_{record.request_id.hex}"
    if parsed.stream:
        writer = anthropic_format.StreamWriter(message_id=message_id, model=chat.model)
        return await _stream(admission, chat, record, writer, "anthropic")
    completion = await _complete(admission, chat, record)
    body = anthropic_format.message_body(completion, message_id=message_id, model=chat.model)
    return _answer_headers(_json(body), admission, record, cost=True)


@gateway_view("openai", "POST")
async def responses(request: HttpRequest, record: calls.CallRecord) -> HttpResponse:
    admission, parsed = await _admit(request, record, responses_format.parse_responses)
    chat: ChatRequest = parsed.request
    answer = responses_format.Answer(f"resp_{record.request_id.hex}", int(time.time()), chat.model, parsed.echo)
    if parsed.stream:
        return await _stream(admission, chat, record, responses_format.StreamWriter(answer), "openai")
    completion = await _complete(admission, chat, record)
    return _answer_headers(_json(responses_format.response_body(completion, answer)), admission, record, cost=True)


@dataclass(frozen=True)
class _Listed:
    id: str
    display_name: str
    created: Any
    owned_by: str
    model_type: str = "chat"


def _listed_sync(key: ApiKey) -> list[_Listed]:
    models, routes = apikeys.addressable()
    listed = [_Listed(model.provider.name + "/" + model.name, model.label, model.created_at, model.provider.name,
                      model.type) for model in models]
    types = apikeys.route_types(routes)
    listed += [_Listed(route.name, route.description or route.name, route.created_at, "aspweb", types[route.pk])
               for route in routes]
    return sorted((item for item in listed if apikeys.key_allows(key, item.id)), key=lambda item: item.id)


def _model_entry(item: _Listed, flavor: Flavor) -> dict[str, Any]:
    """OpenAI's or Anthropic's model object, with aspweb's `model_type`: chat, or embedding (/v1/embeddings)."""
    if flavor == "anthropic":
        return {"type": "model", "id": item.id, "display_name": item.display_name,
                "created_at": item.created.isoformat().replace("+00:00", "Z"), "model_type": item.model_type}
    return {"id": item.id, "object": "model", "created": int(item.created.timestamp()), "owned_by": item.owned_by,
            "model_type": item.model_type}


@gateway_view(None, "GET")
async def model_list(request: HttpRequest, record: calls.CallRecord) -> HttpResponse:
    """The models and routes the key may use."""
    admission = await inline_or_hop(_admit_sync, _raw_key(request), None, None)
    listed = await sync_to_async(_listed_sync)(admission.key)
    flavor = _flavor_of(request)
    data = [_model_entry(item, flavor) for item in listed]
    if flavor == "anthropic":
        return _json({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                      "last_id": data[-1]["id"] if data else None})
    return _json({"object": "list", "data": data})


@gateway_view(None, "GET")
async def model_retrieve(request: HttpRequest, record: calls.CallRecord, model_id: str) -> HttpResponse:
    admission = await inline_or_hop(_admit_sync, _raw_key(request), None, None)
    listed = await sync_to_async(_listed_sync)(admission.key)
    item = next((item for item in listed if item.id == model_id), None)
    if item is None:
        raise ApiError(404, f"The model {model_id!r} does not exist or this key may not use it.",
                       code="model_not_found")
    return _json(_model_entry(item, _flavor_of(request)))


@gateway_view(None, "GET")
async def openapi_description(request: HttpRequest, record: calls.CallRecord) -> HttpResponse:
    return _json(openapi.DESCRIPTION)


@csrf_exempt
async def not_found(request: HttpRequest, path: str) -> HttpResponse:
    """Any other /v1/ URL: a JSON 404 in the caller's format, not Django's page."""
    error = ApiError(404, f"There is no endpoint {request.method} /v1/{path}.", code="not_found")
    response = _json(_error_body(error, _flavor_of(request)), 404)
    response["x-request-id"] = str(uuid.uuid4())
    return response
