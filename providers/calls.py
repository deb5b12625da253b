"""THE one path every call takes: the playground, the gateway and the CLI all come through here.

    async for chunk in calls.stream_chat(request, caller=caller, record=record):
        ...

1. resolve: "provider/model" (or a provider name plus the request's model) -> a Target
2. reserve: budgets reserve the worst-case cost here (see `_reserve`)
3. stream: the adapter's chunks, with a first-token timeout, a whole-call deadline, and retries of
   retryable errors (capped exponential backoff with jitter; Retry-After wins) until the first chunk
   reaches the caller, never after
4. record: in `finally`, exactly once, the outcome lands in `record` (and the ledger, see `_record`)
"""

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import ModuleType
from typing import Any, Literal

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.utils import timezone

from usage import pricing

from .adapters import get_adapter
from .adapters.base import ChatRequest, Chunk, Completion, Connection, ProviderError, Usage, collect
from .models import Model, Price, Provider
from .services import connection_for

logger = logging.getLogger(__name__)

Source = Literal["playground", "gateway", "cli"]


class CallError(Exception):
    """The call could not start: unknown or disabled provider or model. `code` says which."""

    def __init__(self, code: Literal["not_found", "disabled"], message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Caller:
    """Who is calling, for the ledger, budgets and limits."""

    source: Source
    user: Any = None
    api_key: Any = None


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
    cost: Decimal | None = None
    price: Price | None = None
    output_chars: int = 0

    @property
    def tokens_per_second(self) -> float | None:
        if not self.usage or not self.usage.output_tokens or self.latency_ms is None or self.ttft_ms is None:
            return None
        generating = (self.latency_ms - self.ttft_ms) / 1000
        return self.usage.output_tokens / generating if generating > 0 else None


def _resolve_sync(address: str) -> Target:
    provider_name, sep, model_name = address.partition("/")
    if not sep or not provider_name or not model_name:
        raise CallError("not_found", f"{address!r} is not a model address: use PROVIDER/MODEL.")
    provider = Provider.objects.active().filter(name=provider_name).first()
    if provider is None:
        raise CallError("not_found", f"There is no provider named {provider_name!r}.")
    if not provider.enabled:
        raise CallError("disabled", f"Provider {provider_name!r} is disabled.")
    model = provider.models.filter(name=model_name).first()
    if model is None:
        raise CallError("not_found", f"Provider {provider_name!r} has no model {model_name!r} in its catalog: "
                                     "sync its models or add the model on the provider's page.")
    if not model.enabled:
        raise CallError("disabled", f"Model {address!r} is disabled.")
    return Target(provider, model, connection_for(provider), get_adapter(provider.kind), model.current_price())


async def resolve(address: str) -> Target:
    return await sync_to_async(_resolve_sync)(address)


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry number `attempt` (1-based): the provider's Retry-After when it gave
    one, else capped exponential backoff with jitter."""
    if retry_after is not None:
        return retry_after
    base = settings.PROVIDER_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    return min(settings.PROVIDER_RETRY_MAX_SECONDS, base) * (0.5 + random.random() / 2)


async def _reserve(target: Target, request: ChatRequest, caller: Caller, record: CallRecord) -> None:
    """Budgets reserve the call's worst-case cost here, before any provider is contacted."""


async def _record(target: Target | None, request: ChatRequest, caller: Caller, record: CallRecord) -> None:
    """The usage ledger writes its one record per call here (and settles the reservation)."""


async def stream_chat(request: ChatRequest, *, caller: Caller, provider: str | None = None,
                      record: CallRecord | None = None,
                      sleep: Callable[[float], Any] = asyncio.sleep) -> AsyncIterator[Chunk]:
    """Stream one chat call. `request.model` is "provider/model", or the provider's model name when
    `provider` is given. Raises CallError before starting, ProviderError when the call fails."""
    record = record if record is not None else CallRecord()
    record.started_at = timezone.now()
    started = time.perf_counter()
    target: Target | None = None
    try:
        target = await resolve(f"{provider}/{request.model}" if provider else request.model)
        record.provider, record.model, record.price = target.provider.name, target.model.name, target.price
        upstream_request = replace(request, model=target.model.name)
        await _reserve(target, upstream_request, caller, record)
        async for chunk in _stream_with_retries(target, upstream_request, record, started, sleep):
            yield chunk
        record.status = "ok"
    except ProviderError as exc:
        record.status, record.error = "error", exc
        raise
    except (asyncio.CancelledError, GeneratorExit):
        record.status = "cancelled"
        raise
    except CallError:
        record.status = "error"
        raise
    finally:
        record.latency_ms = (time.perf_counter() - started) * 1000
        if record.usage is not None and target is not None and target.price is not None:
            record.cost = pricing.cost(record.usage, target.price)
        await _record(target, request, caller, record)


async def _stream_with_retries(target: Target, request: ChatRequest, record: CallRecord, started: float,
                               sleep: Callable[[float], Any]) -> AsyncIterator[Chunk]:
    deadline = started + target.provider.timeout_seconds
    max_retries = target.provider.max_retries
    while True:
        record.attempts += 1
        delivered = False
        try:
            async for chunk in _guarded(target, request, deadline):
                if chunk.usage is not None:
                    record.usage = chunk.usage
                if chunk.finish_reason is not None:
                    record.finish_reason = chunk.finish_reason
                if record.ttft_ms is None and (chunk.text or chunk.reasoning or chunk.tool_call):
                    record.ttft_ms = (time.perf_counter() - started) * 1000
                record.output_chars += len(chunk.text)
                delivered = True
                yield chunk
            return
        except ProviderError as exc:
            # Once anything reached the caller a retry would repeat it: fail instead.
            retries_left = record.attempts <= max_retries
            delay = backoff_delay(record.attempts, exc.retry_after) if exc.retryable else 0.0
            if delivered or not exc.retryable or not retries_left or time.perf_counter() + delay >= deadline:
                raise
            logger.info("Retrying %s after %s (attempt %d, waiting %.2fs)", target.address, exc.kind,
                        record.attempts, delay)
            await sleep(delay)


async def _guarded(target: Target, request: ChatRequest, deadline: float) -> AsyncIterator[Chunk]:
    """The adapter's stream under the first-token timeout and the whole-call deadline."""
    label = target.connection.label
    first_token_timeout = settings.PROVIDER_FIRST_TOKEN_TIMEOUT_SECONDS
    async with contextlib.aclosing(target.adapter.stream(target.connection, request)) as chunks:
        waiting_first = True
        while True:
            remaining = deadline - time.perf_counter()
            limit = min(remaining, first_token_timeout) if waiting_first else remaining
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
                                               f"{target.provider.timeout_seconds} second limit.") from None
            waiting_first = False
            yield chunk


def complete_chat(request: ChatRequest, *, caller: Caller, provider: str | None = None) -> tuple[Completion,
                                                                                                  CallRecord]:
    """The sync wrapper, for management commands and tasks."""
    record = CallRecord()

    async def run() -> Completion:
        return await collect(stream_chat(request, caller=caller, provider=provider, record=record))

    return async_to_sync(run)(), record
