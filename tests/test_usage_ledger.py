"""The ledger through the real call path against the fake upstream: exactly one usage record per call,
whatever happened, with the tokens and cost the call really had.

async_to_sync, not asyncio.run, for the reason given in test_calls.py.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from accounts.models import User
from gateway.models import ApiKey
from providers import calls
from providers.adapters.base import ChatRequest, Message, ProviderError, estimate_tokens, prompt_text
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream
from tests.usage_support import raw_sums, rollup_sums
from usage import writer as usage_writer
from usage.models import DailyUsage, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def model(upstream: FakeUpstream) -> Model:
    provider = Provider.objects.create(name="local", kind="openai_compatible", base_url=upstream.openai_base_url,
                                       api_key="sk-local-0001", max_retries=2)
    model = Model.objects.create(provider=provider, name="fake-model-a")
    Price.objects.create(model=model, effective_from=timezone.now() - timedelta(days=1), input=Decimal("3"),
                         output=Decimal("15"), cache_read=Decimal("0.3"), cache_write=Decimal("3.75"))
    return model


@pytest.fixture
def caller(member_user: User) -> calls.Caller:
    return calls.Caller(source="playground", user=member_user)


class NoSleep:
    async def __call__(self, seconds: float) -> None:
        return None


def _request(model: str = "local/fake-model-a") -> ChatRequest:
    return ChatRequest(model=model, messages=(Message("user", "Say hello, then tell me about the weather"),))


def _call(caller: calls.Caller, request: ChatRequest | None = None, *, stop_after: int | None = None
          ) -> tuple[calls.CallRecord, list, BaseException | None]:
    """Run one call; stop reading (aclose) after `stop_after` text chunks. Returns what it left."""
    record, received = calls.CallRecord(), []

    async def go() -> BaseException | None:
        stream = calls.stream_chat(request or _request(), caller=caller, record=record, sleep=NoSleep())
        try:
            async for chunk in stream:
                received.append(chunk)
                if stop_after is not None and len([c for c in received if c.text]) >= stop_after:
                    await stream.aclose()
                    break
        except (ProviderError, calls.CallError) as exc:
            return exc
        return None

    return record, received, async_to_sync(go)()


def _streamed_text(chunks: list) -> str:
    return "".join(c.text for c in chunks)


def _only_record() -> UsageRecord:
    assert UsageRecord.objects.count() == 1
    return UsageRecord.objects.select_related("price").get()


def test_a_successful_call_is_one_record_with_the_reported_usage_and_its_cost(
        model: Model, caller: calls.Caller, upstream: FakeUpstream, member_user: User) -> None:
    upstream.usage = {"input_tokens": 2000, "cached_tokens": 1200, "output_tokens": 300, "reasoning_tokens": 100}
    record, chunks, error = _call(caller)
    assert error is None and _streamed_text(chunks) == upstream.reply
    row = _only_record()
    assert row.request_id == record.request_id and row.created_at == record.started_at
    assert (row.status, row.error_kind, row.source, row.user, row.api_key) == ("ok", "", "playground", member_user,
                                                                                None)
    assert (row.provider, row.model, row.provider_name, row.model_name) == (model.provider, model, "local",
                                                                              "fake-model-a")
    # OpenAI's prompt_tokens include the cached ones: 800 uncached + 1200 cache read.
    assert (row.input_tokens, row.cache_read_tokens, row.cache_write_tokens) == (800, 1200, 0)
    assert (row.output_tokens, row.reasoning_tokens, row.usage_estimated) == (300, 100, False)
    # By hand, per million tokens: 800 x $3 + 1200 x $0.30 + 300 x $15 (reasoning is inside the 300).
    assert row.cost == Decimal("0.00726") == record.cost
    assert row.price == model.prices.get() == record.price
    assert row.finish_reason == "stop" and row.attempts == 1
    assert 0 < row.ttft_ms <= row.latency_ms


def test_an_anthropic_call_with_cache_reads_and_writes(upstream: FakeUpstream, caller: calls.Caller) -> None:
    provider = Provider.objects.create(name="claude", kind="anthropic", base_url=upstream.base_url, api_key="k")
    model = Model.objects.create(provider=provider, name="claude-haiku-4-5")
    Price.objects.create(model=model, effective_from=timezone.now() - timedelta(days=1), input=Decimal("3"),
                         output=Decimal("15"), cache_read=Decimal("0.3"), cache_write=Decimal("3.75"))
    # Anthropic's input_tokens exclude the cache: these go verbatim into its fields.
    upstream.usage = {"input_tokens": 21, "cached_tokens": 1000, "cache_write_tokens": 2000, "output_tokens": 393}
    _call(caller, _request("claude/claude-haiku-4-5"))
    row = _only_record()
    assert (row.input_tokens, row.cache_read_tokens, row.cache_write_tokens, row.output_tokens) == (21, 1000, 2000,
                                                                                                      393)
    # 21 x $3 + 1000 x $0.30 + 2000 x $3.75 + 393 x $15, per million tokens
    assert row.cost == Decimal("0.013758") and not row.usage_estimated


def test_an_api_key_call_is_recorded_against_the_key(model: Model, upstream: FakeUpstream, member_user: User) -> None:
    key = ApiKey.objects.create(name="ci", user=member_user, prefix="asp_ci", key_hash="0" * 64)
    _call(calls.Caller(source="gateway", user=member_user, api_key=key))
    row = _only_record()
    assert (row.source, row.api_key, row.user) == ("gateway", key, member_user)


def test_an_auth_error_is_one_error_record_without_tokens(model: Model, caller: calls.Caller,
                                                          upstream: FakeUpstream) -> None:
    upstream.fail_next("401")
    record, _, error = _call(caller)
    assert isinstance(error, ProviderError) and error.kind == "auth"
    assert record.usage is None  # nothing to estimate: the provider answered with an error straight away
    row = _only_record()
    assert (row.status, row.error_kind, row.attempts) == ("error", "auth", 1)
    assert row.error_message == error.message and "sk-local-0001" not in row.error_message
    # Nothing was generated and nothing reported: nothing to bill, and nothing pretends to be counted.
    assert (row.input_tokens, row.output_tokens, row.usage_estimated, row.cost) == (0, 0, False, Decimal(0))


def test_a_rate_limit_then_success_is_one_record_with_two_attempts(model: Model, caller: calls.Caller,
                                                                   upstream: FakeUpstream) -> None:
    upstream.fail_next("429", retry_after=0)
    upstream.usage = {"input_tokens": 10, "output_tokens": 5}
    _call(caller)
    assert len(upstream.requests) == 2
    row = _only_record()
    assert (row.status, row.attempts, row.input_tokens, row.output_tokens) == ("ok", 2, 10, 5)


def test_a_stream_cut_by_the_upstream_records_the_tokens_streamed(model: Model, caller: calls.Caller,
                                                                  upstream: FakeUpstream) -> None:
    upstream.fail_next("cut", cut_after=2)
    request = _request()
    record, chunks, error = _call(caller, request)
    assert isinstance(error, ProviderError)
    streamed = _streamed_text(chunks)
    assert streamed and len(streamed) < len(upstream.reply)
    row = _only_record()
    assert (row.status, row.error_kind) == ("error", error.kind)
    # The upstream never sent its usage: estimated from the prompt and from exactly what was streamed.
    assert row.usage_estimated
    assert row.input_tokens == estimate_tokens(prompt_text(request)) > 0
    assert row.output_tokens == estimate_tokens(streamed) > 0
    assert row.cost == (row.input_tokens * Decimal(3) + row.output_tokens * Decimal(15)) / 1_000_000 > 0
    assert record.usage is not None and record.usage.output_tokens == row.output_tokens and record.cost == row.cost


def test_a_consumer_that_stops_reading_records_a_cancelled_call_with_what_it_got(
        model: Model, caller: calls.Caller, upstream: FakeUpstream) -> None:
    upstream.reply = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    upstream.chunk_delay = 0.05
    request = _request()
    record, chunks, error = _call(caller, request, stop_after=3)
    assert error is None
    streamed = _streamed_text(chunks)
    assert streamed == "one two three "
    row = _only_record()
    assert (row.status, row.error_kind, row.usage_estimated) == ("cancelled", "", True)
    assert row.output_tokens == estimate_tokens(streamed) == 4
    assert row.input_tokens == estimate_tokens(prompt_text(request))
    assert record.usage is not None and record.usage.output_tokens == 4  # the caller sees the same


def test_a_client_that_goes_away_cancels_the_task_and_the_record_is_still_written(
        model: Model, caller: calls.Caller, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ASGI server cancels the response task when the client disconnects, and may cancel it again
    while the ledger is being written: the record must be complete by the time the task ends."""
    upstream.chunk_delay = 0.05
    written: list = []
    create = usage_writer.usage_records_create

    def slow_create(specs: list) -> list[UsageRecord]:
        time.sleep(0.3)  # a slow database
        rows = create(specs)
        written.extend(row.request_id for row in rows)
        return rows

    monkeypatch.setattr(usage_writer, "usage_records_create", slow_create)
    record = calls.CallRecord()

    async def go() -> list:
        first = asyncio.Event()

        async def respond() -> None:
            async for chunk in calls.stream_chat(_request(), caller=caller, record=record, sleep=NoSleep()):
                if chunk.text:
                    first.set()

        task = asyncio.create_task(respond())
        await first.wait()
        while not task.done():  # the client left; the server keeps cancelling
            task.cancel()
            await asyncio.sleep(0.02)
        written_when_the_task_ended = list(written)
        with pytest.raises(asyncio.CancelledError):
            await task
        return written_when_the_task_ended

    assert async_to_sync(go)() == [record.request_id]
    row = _only_record()
    assert row.status == "cancelled" and row.usage_estimated and row.output_tokens > 0


def test_the_price_in_force_when_the_call_started_is_used(model: Model, caller: calls.Caller,
                                                          upstream: FakeUpstream) -> None:
    # A correction scheduled for tomorrow changes nothing today.
    Price.objects.create(model=model, effective_from=timezone.now() + timedelta(days=1), input=Decimal(100),
                         output=Decimal(100))
    upstream.usage = {"input_tokens": 1000, "output_tokens": 1000}
    _call(caller)
    row = _only_record()
    assert row.price.input == Decimal(3) and row.cost == Decimal("0.018")


def test_a_model_without_a_price_costs_nothing_and_points_at_no_price(model: Model, caller: calls.Caller,
                                                                      upstream: FakeUpstream) -> None:
    model.prices.all().delete()
    record, _, _ = _call(caller)
    row = _only_record()
    assert row.price is None and row.cost == 0 and row.output_tokens > 0
    assert record.cost is None  # "cost unknown", not "free", for whoever shows the call


def test_a_disabled_model_is_recorded_as_refused_and_an_unknown_one_is_not(model: Model, caller: calls.Caller,
                                                                           upstream: FakeUpstream) -> None:
    Model.objects.filter(pk=model.pk).update(enabled=False)
    _, _, error = _call(caller)
    assert isinstance(error, calls.CallError) and error.code == "disabled"
    row = _only_record()
    assert (row.status, row.error_kind, row.attempts, row.model) == ("error", "disabled", 0, model)
    assert row.error_message == error.message and row.cost == 0

    _, _, error = _call(caller, _request("local/no-such-model"))
    _, _, error2 = _call(caller, _request("nobody/fake-model-a"))
    assert error.code == error2.code == "not_found"
    assert UsageRecord.objects.count() == 1 and upstream.requests == []


def test_an_unexpected_failure_is_still_one_error_record(model: Model, caller: calls.Caller, upstream: FakeUpstream,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken_stream(*args: object) -> AsyncIterator[None]:
        raise RuntimeError("a bug before the provider is called")
        yield  # an async generator, as the call path's stream is

    monkeypatch.setattr(calls, "_stream_with_retries", broken_stream)
    with pytest.raises(RuntimeError):
        _call(caller)
    row = _only_record()
    assert (row.status, row.error_kind, row.input_tokens, row.cost) == ("error", "internal", 0, 0)
    assert upstream.requests == []


def test_every_outcome_lands_in_the_rollup(model: Model, caller: calls.Caller, upstream: FakeUpstream,
                                           make_user: Callable[..., User]) -> None:
    other = calls.Caller(source="cli", user=make_user("member", email="other@example.com"))
    upstream.chunk_delay = 0.01
    _call(caller)
    upstream.fail_next("401")
    _call(caller)
    upstream.fail_next("cut", cut_after=1)
    _call(other)
    _call(other, stop_after=1)
    assert UsageRecord.objects.count() == 4
    assert rollup_sums() == raw_sums()
    totals = {(row.source, row.requests, row.errors, row.cancelled) for row in DailyUsage.objects.all()}
    assert totals == {("playground", 2, 1, 0), ("cli", 2, 1, 1)}
