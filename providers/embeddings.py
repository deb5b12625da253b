"""Embeddings calls on the one call path: resolved, reserved and recorded as chat calls are (providers/calls.py:
`prepare`/`aprepare`, the limits on spend, the ledger's one record in `finally`), with the same fallback
through a route's deployments and circuit breaker (calls._stream_with_fallback, its `attempt` here one adapter
call with its retries instead of a stream).

    async with contextlib.aclosing(embed(request, caller=caller, record=record, prepared=prepared)) as answers:
        embeddings = await anext(answers)   # raises as the call fails; recorded either way
        ...                                 # Embeddings.body, where there is one, read to its end
        await anext(answers, None)          # the call ends, and is recorded

`embed` yields its answer once, and records the call when it ends: normally (ok), closed before that (the
client went away: cancelled), or with a ProviderError thrown in at the yield (`answers.athrow(exc)`: a body
that broke off, an answer that could not be read: error). A passed-on body's usage is known once it has all
been read, and the record waits for it.

An embeddings request resolves to embedding models only (Model.type; calls._of_type refuses a chat model).
A hard limit reserves its input bound (providers/bounds.py: the inputs' bytes plus an allowance each) at the
dearest input price, and no output. The record carries the provider's `prompt_tokens` as input and no output,
plus what failed attempts on the same deployment were charged for (ProviderError.billed: Bedrock's Titan
answers some texts of a request and fails on another).

An adapter module embeds when it defines

    async def embed(conn: Connection, request: EmbeddingRequest) -> Embeddings

as openai_compat does: OpenAI and Azure OpenAI through the openai SDK, every other OpenAI-compatible kind
through wire.py. A kind whose adapter defines none (Anthropic, Cloudflare, the Claude CLI) answers with an
invalid_request error that says so; Amazon Bedrock's adapter defines its own, through InvokeModel.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from . import calls
from .adapters.base import EmbeddingRequest, Embeddings, ProviderError, Usage

logger = logging.getLogger(__name__)


async def embed(request: EmbeddingRequest, *, caller: calls.Caller, record: calls.CallRecord | None = None,
                prepared: calls.Prepared | None = None,
                sleep: Callable[[float], Any] = asyncio.sleep) -> AsyncIterator[Embeddings]:
    """Embed `request.input` with `request.model` ("provider/model" or a route name): the answer, yielded once.
    Raises CallError before starting, ProviderError when the call fails; the call is recorded either way,
    exactly once, when this generator ends."""
    record = record if record is not None else calls.CallRecord()
    started = prepared.started if prepared is not None else time.perf_counter()
    try:
        if prepared is None:
            prepared = await calls.aprepare(request, caller=caller, record=record, started=started)
        if prepared.refused is not None:
            raise prepared.refused
        async with contextlib.aclosing(calls._stream_with_fallback(prepared.plan, request, caller, record, started,
                                                                   sleep, attempt=_with_retries)) as answers:
            async for result in answers:
                yield result
        record.status = "ok"
    except ProviderError as exc:
        record.status, record.error = "error", exc
        raise
    except (asyncio.CancelledError, GeneratorExit):
        record.status = "cancelled"
        raise
    except calls.CallError as exc:
        record.status, record.refused = "error", exc
        raise
    finally:
        record.latency_ms = (time.perf_counter() - started) * 1000
        await calls._record(record.target, request, caller, record)


async def _with_retries(target: calls.Target, request: EmbeddingRequest, record: calls.CallRecord, started: float,
                        sleep: Callable[[float], Any], max_retries: int) -> AsyncIterator[Embeddings]:
    """One deployment's call under the provider's whole-call deadline, with its retries of retryable errors
    (capped exponential backoff with jitter, Retry-After wins; never a wait that would end past the deadline):
    the `attempt` of calls._stream_with_fallback, which yields its one answer."""
    adapter_embed = getattr(target.adapter, "embed", None)
    if adapter_embed is None:
        raise ProviderError("invalid_request", f"{target.connection.label} is a {target.provider.kind_preset.label} "
                                               "provider, which offers no embeddings through aspweb.", retryable=False)
    deadline = started + target.provider.time_limit
    attempt = 0
    billed: Usage | None = None  # what failed attempts were charged for (ProviderError.billed), added up
    while True:
        attempt += 1
        record.attempts += 1
        try:
            try:
                async with asyncio.timeout(max(deadline - time.perf_counter(), 0)):
                    result = await adapter_embed(target.connection, request)
            except TimeoutError:
                raise ProviderError("timeout", f"{target.connection.label} did not finish within the provider's "
                                               f"{target.provider.time_limit} second limit.") from None
        except ProviderError as exc:
            billed = _added(billed, exc.billed)
            delay = calls.backoff_delay(attempt, exc.retry_after) if exc.retryable else 0.0
            if not exc.retryable or attempt > max_retries or time.perf_counter() + delay >= deadline:
                record.usage = billed
                raise
            logger.info("Retrying %s after %s (attempt %d, waiting %.2fs)", target.address, exc.kind, attempt, delay)
            await sleep(delay)
            continue
        record.usage = _added(result.usage, billed)
        record.delivered = True  # a failure from here on is not retried: the answer has gone to the caller
        yield result
        record.usage = _added(result.usage, billed)  # a passed-on body's usage, known once it has all been read
        record.latency_ms = (time.perf_counter() - started) * 1000  # what a route's latency strategy observes
        return


def _added(usage: Usage | None, more: Usage | None) -> Usage | None:
    """Input tokens of two attempts together (embeddings bill input only)."""
    if usage is None or more is None:
        return usage or more
    return Usage(input_tokens=usage.input_tokens + more.input_tokens, estimated=usage.estimated or more.estimated)
