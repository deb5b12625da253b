"""THE one path every call takes: the playground, the gateway and the CLI all come through here.

    async for chunk in calls.stream_chat(request, caller=caller, record=record):
        ...

1. resolve: "provider/model" (or a provider name plus the request's model) -> a Target
2. reserve: limits on spend (budgets' hard limits, registered in hooks.py by the budgets app) hold the
   worst-case cost here (see `_reserve`, and providers/bounds.py for the bound)
3. stream: the adapter's chunks, with a first-token timeout, a whole-call deadline, and retries of
   retryable errors (capped exponential backoff with jitter; Retry-After wins) until the first chunk
   reaches the caller, never after; at most the provider's retries (0 to 10), and never a wait that would
   end past the deadline (a Retry-After longer than the time left fails the call at once)
4. record: in `finally`, exactly once, the outcome lands in `record` (and the ledger, see `_record`)
"""

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import ModuleType
from typing import Any, Literal

from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from aspweb.inline import NeedsThread, inline_or_hop, running_inline

from . import bounds, callbodies, hooks, observe, rowcaches
from .adapters import get_adapter
from .adapters.base import ChatRequest, Chunk, Completion, Connection, ProviderError, Usage, collect, estimated_usage
from .models import Model, Price, Provider
from .prices import model_prices, price_in_force
from .services import connection_for

logger = logging.getLogger(__name__)

Source = Literal["playground", "gateway", "cli"]


class CallError(Exception):
    """The call could not start: unknown or disabled provider or model, a hard-limit budget it does not fit in
    (`budget_exceeded`; the gateway answers 429), a model of the other type (`wrong_type`). `code` says which.
    A disabled provider's or model's rows come along, for the ledger."""

    def __init__(self, code: Literal["not_found", "disabled", "budget_exceeded", "unpriced", "wrong_type"],
                 message: str, *, provider: Provider | None = None, model: Model | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.provider = provider
        self.model = model


@dataclass(frozen=True)
class Caller:
    """Who is calling, for the ledger, budgets and limits: the person or key, and what the call is attributed
    to (its team's id, its tags and its end user, checked by the caller: usage/attribution.py)."""

    source: Source
    user: Any = None
    api_key: Any = None
    team_id: int | None = None
    tags: tuple[str, ...] = ()
    end_user: str = ""

    @property
    def scope(self) -> dict[str, Any]:
        """What limits on spend match a call by (CallLimit.covers and reserve)."""
        return {"user": self.user, "api_key": self.api_key, "team_id": self.team_id, "tags": self.tags,
                "end_user": self.end_user}


@dataclass(frozen=True)
class Target:
    provider: Provider
    model: Model
    connection: Connection
    adapter: ModuleType
    price: Price | None

    @property
    def address(self) -> str:
        return f"{self.provider.name}/{self.model.name}"


@dataclass
class CallRecord:
    """What happened, filled in as the call goes; final once the stream has ended, however it ended."""

    request_id: uuid.UUID = field(default_factory=uuid.uuid4)
    started_at: Any = None
    provider: str = ""
    model: str = ""
    status: Literal["pending", "ok", "error", "cancelled"] = "pending"
    error: ProviderError | None = None
    attempts: int = 0
    ttft_ms: float | None = None
    latency_ms: float | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    upstream_id: str = ""  # the provider's own id of the answer (Chunk.response_id), where it gave one
    cost: Decimal | None = None
    price: Price | None = None
    # Everything streamed to the caller (text, reasoning, tool-call arguments), to estimate the output
    # tokens of a call that ended before the provider reported its usage.
    streamed: list[str] = field(default_factory=list, repr=False)
    # Why the call could not start, when it could not.
    refused: CallError | None = None
    # The route asked for, the target that served (or last failed), deployments skipped while cooling down.
    route: str = ""
    target: "Target | None" = field(default=None, repr=False)
    skipped: list[str] = field(default_factory=list)
    # Anything reached the caller: from then on neither a retry nor a fallback may happen.
    delivered: bool = False
    # The max_tokens a hard limit's reservation counted on for a request that set none: sent in its place,
    # so that the answer cannot outgrow what was reserved.
    output_cap: int | None = None
    # What the limits on spend hold for this call (budget period ids): a route's fallback holds no one twice,
    # without asking the database.
    held: set[Any] = field(default_factory=set, repr=False)
    # The chunks that reached the caller, kept when the call's prompt and answer are logged (callbodies.py);
    # None otherwise. Never in a repr: nothing of a prompt or an answer goes to a log.
    answer: list[Chunk] | None = field(default=None, repr=False)

    @property
    def output_chars(self) -> int:
        """How much reached the caller: text, reasoning and tool-call arguments."""
        return sum(len(piece) for piece in self.streamed)


def _target(provider: Provider, model: Model, now: Any) -> tuple[Target, Any]:
    """The model's target, and when its price in force changes next (None: no version is scheduled)."""
    prices = model_prices(model.pk)
    next_change = next((price.effective_from for price in prices if price.effective_from > now), None)
    target = Target(provider, model, connection_for(provider), get_adapter(provider.kind),
                    price_in_force(prices, now))
    return target, next_change


@dataclass(frozen=True)
class _Resolution:
    """What an address resolves to, cached between calls (providers/rowcaches.py): a model's one target, or a
    route with its eligible deployments and their targets; a route's order is decided at every call."""

    targets: tuple[Target, ...]
    route: Any = None
    deployments: tuple[Any, ...] = ()

    def plan(self) -> "Plan":
        if self.route is None:
            return Plan(list(self.targets))
        by_id = {deployment.pk: target for deployment, target in zip(self.deployments, self.targets, strict=True)}
        prices = {pk: target.price for pk, target in by_id.items()}
        return Plan([by_id[d.pk] for d in hooks.routes().order(self.route, list(self.deployments), prices)], self.route)


def _resolve_sync(address: str) -> "Plan":
    """PROVIDER/MODEL names one catalog model; a name without a slash is a route."""
    return _resolution(address).plan()


def _resolution(address: str) -> _Resolution:
    return rowcaches.resolutions.get(address, lambda: _resolve_uncached(address))


def route_named(name: str) -> Any:
    """The route `name` as calls find it (cached); None when there is none that can serve."""
    try:
        return _resolution(name).route
    except CallError:
        return None


def _resolve_uncached(address: str) -> tuple[_Resolution, float | None]:
    """The resolution and how long it may be cached: until the next price version comes into force."""
    now = timezone.now()
    provider_name, sep, model_name = address.partition("/")
    if not sep:
        route, deployments = _route(address)
        resolved = [_target(d.model.provider, d.model, now) for d in deployments]
        resolution = _Resolution(tuple(target for target, _ in resolved), route, tuple(deployments))
        changes = [change for _, change in resolved if change is not None]
    else:
        target, change = _target(*_catalog_model(address, provider_name, model_name), now)
        resolution, changes = _Resolution((target,)), [change] if change is not None else []
    return resolution, (min(changes) - now).total_seconds() if changes else None


def _catalog_model(address: str, provider_name: str, model_name: str) -> tuple[Provider, Model]:
    if not provider_name or not model_name:
        raise CallError("not_found", f"{address!r} is not a model address: use PROVIDER/MODEL or a route name.")
    provider = Provider.objects.active().filter(name=provider_name).first()
    if provider is None:
        if Provider.objects.filter(name=provider_name, archived_at__isnull=False).exists():
            raise CallError("not_found", f"Provider {provider_name!r} is archived: its models take no more calls.")
        raise CallError("not_found", f"There is no provider named {provider_name!r}.")
    if not provider.enabled:
        raise CallError("disabled", f"Provider {provider_name!r} is disabled.", provider=provider,
                        model=provider.models.filter(name=model_name).first())
    model = provider.models.filter(name=model_name).first()
    if model is None:
        raise CallError("not_found", f"Provider {provider_name!r} has no model {model_name!r} in its catalog: "
                                     "sync its models or add the model on the provider's page.")
    if not model.enabled:
        raise CallError("disabled", f"Model {address!r} is disabled.", provider=provider, model=model)
    return provider, model


def _route(name: str) -> tuple[Any, list[Any]]:
    return hooks.routes().resolve(name)


@dataclass(frozen=True)
class Plan:
    """The deployments to try, in order: one for a model address, the route's for a route."""

    targets: list[Target]
    route: Any = None


@dataclass
class Prepared:
    """A call resolved and its first deployment's hard budgets reserved: what a call needs from the
    database before its provider is asked, in one thread hop. Callers with a trip of their own to make
    first (the gateway's key check, the playground's claim) prepare in that same trip."""

    started: float  # time.perf_counter() when the call began, for its latency
    plan: Plan | None = None
    refused: CallError | None = None
    # The first deployment falls under a hard-limit budget: reserving needs the database.
    hard_limited: bool = False


def prepare(request: ChatRequest, *, caller: Caller, record: CallRecord, provider: str | None = None,
            started: float | None = None) -> Prepared:
    """Resolve `request.model` (or `provider`/`request.model`) and reserve the first deployment's worst
    case. Sync; a refusal is held in the result for stream_chat to raise, so that it is recorded."""
    return reserve(resolve(request, caller=caller, record=record, provider=provider, started=started), request,
                   caller=caller, record=record)


async def aprepare(request: ChatRequest, *, caller: Caller, record: CallRecord, provider: str | None = None,
                   started: float | None = None) -> Prepared:
    """`prepare`, awaited: resolved inline where it reads only memory (aspweb/inline.py), and reserved with
    each limit's `areserve`, on the event loop where the limit can (hard limits held in Redis)."""
    prepared = await inline_or_hop(resolve, request, caller=caller, record=record, provider=provider,
                                   started=started, reserves_async=True)
    if prepared.plan is not None and prepared.hard_limited:
        first = prepared.plan.targets[0]
        try:
            await _areserve(first, replace(request, model=first.model.name), caller, record, True)
        except CallError as exc:
            prepared.plan, prepared.refused = None, exc
    return prepared


def resolve(request: ChatRequest, *, caller: Caller, record: CallRecord, provider: str | None = None,
            started: float | None = None, reserves_async: bool = False) -> Prepared:
    """The reads of `prepare`, nothing reserved yet: for a caller with a change of its own to make before the
    reservation (the playground's claim of its answer, made once, then reserved by the stream that won it).
    Run inline (aspweb/inline.py), it asks for a thread now when the reservation to come would need one,
    unless the caller reserves on the loop itself (`reserves_async`, as `aprepare` does): so everything that
    follows it runs once."""
    prepared = Prepared(started if started is not None else time.perf_counter())
    record.started_at = timezone.now()
    if record.answer is None and callbodies.logged(caller):  # keeps the chunks that reach the caller
        record.answer = []
    try:
        plan = _of_type(_resolve_sync(f"{provider}/{request.model}" if provider else request.model), request)
        record.route = plan.route.name if plan.route else ""
        first = plan.targets[0]
        _serve_from(first, record)
        prepared.hard_limited = bool(_hard_budgets(first, caller))
        if prepared.hard_limited and running_inline() and not reserves_async:
            raise NeedsThread("the budget periods a reservation holds")
        prepared.plan = plan
    except CallError as exc:
        prepared.refused = exc
    return prepared


def _of_type(plan: "Plan", request: Any) -> "Plan":
    """A route's deployments whose model is of the type the request asks for (Model.type); none left, or one
    model of the other type, is refused: an embedding model does not chat, nor does a chat model embed."""
    targets = [target for target in plan.targets if target.model.type == request.model_type]
    if not targets:
        kind = {"chat": "a chat model", "embedding": "an embedding model"}[request.model_type]
        what = f"Route {plan.route.name!r} serves no" if plan.route else f"{plan.targets[0].address} is not"
        raise CallError("wrong_type", f"{what} {kind}: embedding models answer POST /v1/embeddings, others chat.")
    return plan if len(targets) == len(plan.targets) else Plan(targets, plan.route)


def reserve(prepared: Prepared, request: ChatRequest, *, caller: Caller, record: CallRecord) -> Prepared:
    """Reserve the worst case of a resolved call's first deployment; a refusal is held, as in `prepare`. It
    goes by the hard limits found as the call was resolved, so that run inline after the caller's own change
    it reads nothing that could send it to a thread."""
    if prepared.plan is None:
        return prepared
    first = prepared.plan.targets[0]
    try:
        _reserve(first, replace(request, model=first.model.name), caller, record, prepared.hard_limited)
    except CallError as exc:
        prepared.plan, prepared.refused = None, exc
    return prepared


def release(record: CallRecord) -> None:
    """Give back what a prepared call reserved, when it will not be made after all (sync)."""
    for limit in hooks.limits():
        limit.release(request_id=record.request_id)
    record.held.clear()


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry number `attempt` (1-based): the provider's Retry-After when it gave
    one, else capped exponential backoff with jitter."""
    if retry_after is not None:
        return retry_after
    base = settings.PROVIDER_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    return min(settings.PROVIDER_RETRY_MAX_SECONDS, base) * (0.5 + random.random() / 2)


def _hard_budgets(target: Target, caller: Caller) -> bool:
    """Whether a limit on spend (a hard-limit budget) covers the call; read from memory, without a query."""
    return any(limit.covers(provider=target.provider, model=target.model, **caller.scope) for limit in hooks.limits())


def _reserve(target: Target, request: ChatRequest, caller: Caller, record: CallRecord,
             hard_limited: bool | None = None) -> None:
    """Hard-limit budgets reserve the call's worst-case cost here, before any provider is contacted: a bound
    on its prompt that no tokenizer exceeds (providers/bounds.py) at the dearest input-side price of the tier
    it reaches, plus its output cap at the output price. The cap is the request's max_tokens; a request that
    sets none is sent with BUDGET_DEFAULT_MAX_TOKENS (plus any thinking budget) in its place; a provider that
    ignores max_tokens (the Claude CLI) reserves the model's whole output. A model without a price has no
    worst case: a hard limit refuses it. The transaction that writes the call's usage record releases the
    reservation and adds the real cost (usage_record_create, by request id). `hard_limited`: whether a hard
    limit covers the call, when the caller has read that already."""
    if not (_hard_budgets(target, caller) if hard_limited is None else hard_limited):
        return  # most calls fall under no hard limit: nothing to bound, and no query
    call = _limit_call(target, request, caller, record)
    try:
        held = any([limit.reserve(**call) for limit in hooks.limits()])
    except hooks.LimitRefused as exc:
        raise CallError(exc.code, exc.message, provider=target.provider, model=target.model) from None
    _cap_output(target, request, record, call, held)


async def _areserve(target: Target, request: ChatRequest, caller: Caller, record: CallRecord,
                    hard_limited: bool | None = None) -> None:
    """`_reserve`, awaited: each limit holds on the event loop where it can (hard limits held in Redis)."""
    if not (_hard_budgets(target, caller) if hard_limited is None else hard_limited):
        return
    call = _limit_call(target, request, caller, record)
    try:
        held = any([await limit.areserve(**call) for limit in hooks.limits()])
    except hooks.LimitRefused as exc:
        raise CallError(exc.code, exc.message, provider=target.provider, model=target.model) from None
    _cap_output(target, request, record, call, held)


def _limit_call(target: Target, request: ChatRequest, caller: Caller, record: CallRecord) -> dict[str, Any]:
    """What a limit is asked to hold for the call (CallLimit.reserve's arguments)."""
    kind = target.provider.kind_preset
    return {"record": record, "provider": target.provider, "model": target.model, **caller.scope,
            "price": target.price, "input_tokens": bounds.input_token_bound(request),
            "output_tokens": bounds.output_token_bound(request, target.model, caps_output=kind.caps_output),
            "timeout_seconds": target.provider.time_limit}


def _cap_output(target: Target, request: ChatRequest, record: CallRecord, call: dict[str, Any], held: bool) -> None:
    """A call held under a cap it did not set itself is sent with that cap, so that its answer cannot outgrow it."""
    if held and call["output_tokens"] and target.provider.kind_preset.caps_output and request.max_tokens is None:
        record.output_cap = call["output_tokens"]


async def _record(target: Target | None, request: ChatRequest, caller: Caller, record: CallRecord) -> None:
    """Write the call's one usage record, which also settles the call's budget reservations.

    Through the ledger's recorder, its group-commit writer (usage/writer.py): concurrent calls' records share one
    transaction, and each call goes on once its own record is committed. A cancelled caller (the client
    went away) still waits for its record, then the cancellation goes on, so the record is on disk by
    the time the stream has ended.
    """
    fields = _record_fields(target, request, caller, record)
    if fields is None:
        return
    try:
        row = await hooks.recorder()(**fields)
    except asyncio.CancelledError:
        observe.call_finished(fields, None, request)
        raise
    except Exception:
        # The caller keeps its answer or its own error; the log keeps what the ledger could not.
        logger.exception("Could not write the usage record of call %s: %r", record.request_id, record)
        observe.call_finished(fields, None, request)
        return
    record.price = row.price
    record.cost = row.cost if row.price is not None else None
    observe.call_finished(fields, row, request)


def _record_fields(target: Target | None, request: ChatRequest, caller: Caller,
                   record: CallRecord) -> dict[str, Any] | None:
    """The usage record of the call, as usage_record_create's arguments; None when there is nothing to
    charge it to."""
    if target is not None:
        provider, model = target.provider, target.model
    elif record.refused is not None and record.refused.provider is not None and record.refused.model is not None:
        # A disabled provider or model refused the call: recorded, so that admins see who still calls it.
        provider, model = record.refused.provider, record.refused.model
    else:
        return None  # no provider or model to charge: an unknown address is the caller's error alone
    usage = record.usage
    if usage is None and (record.streamed or (record.status == "cancelled" and record.attempts)):
        # The provider had the prompt, the stream ended before its usage: bill what streamed, estimated and so flagged.
        usage = record.usage = estimated_usage(request, "".join(record.streamed))
    usage = usage or Usage()
    if record.status == "error" and record.error is not None:
        error_kind, error_message = record.error.kind, record.error.message
    elif record.status == "error" and record.refused is not None:
        error_kind, error_message = record.refused.code, record.refused.message
    elif record.status == "pending":  # an exception that is neither the provider's nor the caller's
        error_kind, error_message = "internal", "The call stopped on an unexpected error in aspweb."
    else:
        error_kind, error_message = "", ""
    fields = {
        "request_id": record.request_id, "created_at": record.started_at, "source": caller.source,
        "user": caller.user, "api_key": caller.api_key, "team_id": caller.team_id, "tags": caller.tags,
        "end_user": caller.end_user, "provider": provider, "model": model,
        "status": "error" if record.status == "pending" else record.status, "attempts": record.attempts,
        "error_kind": error_kind, "error_message": error_message, "finish_reason": record.finish_reason or "",
        "input_tokens": usage.input_tokens, "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens, "cache_write_1h_tokens": usage.cache_write_1h_tokens,
        "output_tokens": usage.output_tokens, "reasoning_tokens": usage.reasoning_tokens,
        "usage_estimated": usage.estimated, "reported_cost": usage.reported_cost, "upstream_id": record.upstream_id,
        "latency_ms": round(record.latency_ms) if record.latency_ms is not None else None,
        "ttft_ms": round(record.ttft_ms) if record.ttft_ms is not None else None,
    }
    if record.answer is not None:
        fields["body"] = callbodies.body(request, record.answer or (), record.finish_reason)
    return fields


async def stream_chat(request: ChatRequest, *, caller: Caller, provider: str | None = None,
                      record: CallRecord | None = None, prepared: Prepared | None = None,
                      sleep: Callable[[float], Any] = asyncio.sleep) -> AsyncIterator[Chunk]:
    """Stream one chat call. `request.model` is "provider/model" or a route name, or the provider's model
    name when `provider` is given. Raises CallError before starting, ProviderError when the call fails.
    `prepared`: the result of `prepare` for this very request and record, when the caller made it."""
    record = record if record is not None else CallRecord()
    started = prepared.started if prepared is not None else time.perf_counter()
    try:
        if prepared is None:
            prepared = await aprepare(request, caller=caller, record=record, provider=provider, started=started)
        if prepared.refused is not None:
            raise prepared.refused
        async for chunk in _stream_with_fallback(prepared.plan, request, caller, record, started, sleep):
            yield chunk
        record.status = "ok"
    except ProviderError as exc:
        record.status, record.error = "error", exc
        raise
    except (asyncio.CancelledError, GeneratorExit):
        record.status = "cancelled"
        raise
    except CallError as exc:
        record.status, record.refused = "error", exc
        raise
    finally:
        record.latency_ms = (time.perf_counter() - started) * 1000
        await _record(record.target, request, caller, record)


async def _stream_with_fallback(plan: Plan, request: Any, caller: Caller, record: CallRecord, started: float,
                                sleep: Callable[[float], Any], attempt: Any = None) -> AsyncIterator[Any]:
    """Try the plan's targets in order. A retryable failure before anything reached the caller moves on
    to the next one (a route's circuit breaker skips deployments that keep failing); on the last target the
    provider's own retries apply: `attempt`, _stream_with_retries or embeddings' (providers/embeddings.py)."""
    candidates = list(plan.targets)
    while candidates:
        target = candidates.pop(0)
        if plan.route is not None and not await inline_or_hop(hooks.routes().admit, target.model.pk):
            record.skipped.append(target.address)
            continue
        upstream = replace(request, model=target.model.name)
        if target is not plan.targets[0]:
            # A fallback deployment may fall under hard budgets the first one did not.
            await _areserve(target, upstream, caller, record)
        if record.output_cap is not None and request.max_tokens is None:
            upstream = replace(upstream, max_tokens=record.output_cap)
        _serve_from(target, record)
        retries = 0 if candidates else target.provider.retry_limit
        try:
            async for chunk in (attempt or _stream_with_retries)(target, upstream, record, started, sleep, retries):
                yield chunk
        except ProviderError as exc:
            if plan.route is not None and exc.retryable:
                await inline_or_hop(hooks.routes().record_failure, target.model.pk)
            if record.delivered or not exc.retryable or not candidates:
                raise
            logger.info("Falling back from %s after %s", target.address, exc.kind)
            continue
        if plan.route is not None:
            await inline_or_hop(_observe_success, target, record)
        return
    cooling = [hooks.routes().circuit(t.model.pk).retry_in for t in plan.targets]
    raise ProviderError(
        "server", f"Every deployment of route {plan.route.name!r} is cooling down after repeated failures.",
        retry_after=max(1.0, min(cooling)) if cooling else None,
    )


def _serve_from(target: Target, record: CallRecord) -> None:
    record.target = target
    record.provider, record.model, record.price = target.provider.name, target.model.name, target.price


def _observe_success(target: Target, record: CallRecord) -> None:
    hooks.routes().record_success(target.model.pk)
    if record.latency_ms is not None or record.ttft_ms is not None:
        hooks.routes().latency_observe(target.model.pk, record.ttft_ms or record.latency_ms)


async def _stream_with_retries(target: Target, request: ChatRequest, record: CallRecord, started: float,
                               sleep: Callable[[float], Any], max_retries: int) -> AsyncIterator[Chunk]:
    deadline = started + target.provider.time_limit
    attempt = 0
    while True:
        attempt += 1
        record.attempts += 1
        try:
            async for chunk in _guarded(target, request, deadline):
                if chunk.usage is not None:
                    record.usage = chunk.usage
                if chunk.finish_reason is not None:
                    record.finish_reason = chunk.finish_reason
                record.upstream_id = chunk.response_id or record.upstream_id
                if record.ttft_ms is None and (chunk.text or chunk.reasoning or chunk.tool_call):
                    record.ttft_ms = (time.perf_counter() - started) * 1000
                if streamed := chunk.text + chunk.reasoning + (chunk.tool_call.arguments if chunk.tool_call else ""):
                    record.streamed.append(streamed)
                if record.answer is not None:
                    record.answer.append(chunk)
                record.delivered = True
                yield chunk
            return
        except ProviderError as exc:
            # Once anything reached the caller a retry would repeat it: fail instead. A wait that would end
            # past the call's deadline is not made either: the caller gets the provider's error now.
            delay = backoff_delay(attempt, exc.retry_after) if exc.retryable else 0.0
            if (record.delivered or not exc.retryable or attempt > max_retries
                    or time.perf_counter() + delay >= deadline):
                raise
            logger.info("Retrying %s after %s (attempt %d, waiting %.2fs)", target.address, exc.kind, attempt, delay)
            await sleep(delay)


async def _guarded(target: Target, request: ChatRequest, deadline: float) -> AsyncIterator[Chunk]:
    """The adapter's stream under the first-token timeout and the whole-call deadline."""
    label = target.connection.label
    first_token_timeout = settings.PROVIDER_FIRST_TOKEN_TIMEOUT_SECONDS
    if request.metadata and target.provider.kind_preset.accepts_metadata:  # where documented: else unknown
        request = dataclasses.replace(request, extra={**request.extra, "metadata": request.metadata})
    async with contextlib.aclosing(target.adapter.stream(target.connection, request)) as chunks:
        waiting_first = True
        while True:
            remaining = deadline - time.perf_counter()
            # A whole answer asked for at once has no first token before its end: only the deadline applies.
            limit = min(remaining, first_token_timeout) if waiting_first and request.stream else remaining
            try:
                async with asyncio.timeout(max(limit, 0)):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if waiting_first and limit < remaining:
                    raise ProviderError("timeout", f"{label} sent nothing for {first_token_timeout:g} seconds.") \
                        from None
                raise ProviderError("timeout", f"{label} did not finish within the provider's "
                                               f"{target.provider.time_limit} second limit.") from None
            waiting_first = False
            yield chunk


def complete_chat(request: ChatRequest, *, caller: Caller, provider: str | None = None) -> tuple[Completion,
                                                                                                  CallRecord]:
    """The sync wrapper, for management commands and tasks."""
    record = CallRecord()

    async def run() -> Completion:
        return await collect(stream_chat(request, caller=caller, provider=provider, record=record))

    return async_to_sync(run)(), record
