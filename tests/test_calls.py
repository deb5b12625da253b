"""The call path against the fake upstream: resolution, retries, timeouts, cancellation, metrics.

async_to_sync, not asyncio.run: the ORM work inside then runs on this thread's connection, which the
test database teardown knows about.
"""

from decimal import Decimal
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command

from providers import calls
from providers.adapters.base import ChatRequest, Message, ProviderError
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.django_db(transaction=True)

CALLER = calls.Caller(source="cli")


@pytest.fixture
def provider(upstream: FakeUpstream) -> Provider:
    provider = Provider.objects.create(name="local", kind="openai_compatible", base_url=upstream.openai_base_url,
                                       api_key="sk-local-0001", max_retries=2)
    model = Model.objects.create(provider=provider, name="fake-model-a")
    Price.objects.create(model=model, input=Decimal("1"), output=Decimal("2"), cache_read=Decimal("0.5"))
    return provider


def _request(model: str = "local/fake-model-a", **kwargs: object) -> ChatRequest:
    return ChatRequest(model=model, messages=(Message("user", "Say hello"),), **kwargs)


class Sleeps(list):
    """Records the backoff delays instead of waiting them out."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _run(request: ChatRequest, record: calls.CallRecord, sleep: Sleeps | None = None,
         stop_after: int | None = None) -> list:
    async def go() -> list:
        chunks = []
        sleeper = sleep if sleep is not None else Sleeps()
        stream = calls.stream_chat(request, caller=CALLER, record=record, sleep=sleeper)
        async for chunk in stream:
            chunks.append(chunk)
            if stop_after is not None and len([c for c in chunks if c.text]) >= stop_after:
                await stream.aclose()
                break
        return chunks

    return async_to_sync(go)()


def test_stream_fills_the_record(provider: Provider, upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 1000, "cached_tokens": 400, "output_tokens": 50}
    record = calls.CallRecord()
    chunks = _run(_request(), record)
    assert "".join(c.text for c in chunks) == upstream.reply
    assert len([c for c in chunks if c.text]) > 1
    assert record.status == "ok" and record.attempts == 1
    assert (record.provider, record.model) == ("local", "fake-model-a")
    assert record.usage.input_tokens == 600 and record.usage.cache_read_tokens == 400
    # 600 x $1 + 400 x $0.5 + 50 x $2, per million tokens
    assert record.cost == Decimal("0.0009")
    assert 0 < record.ttft_ms <= record.latency_ms
    assert upstream.last_request.body["model"] == "fake-model-a"


def test_a_429_is_retried_after_the_advertised_delay(provider: Provider, upstream: FakeUpstream) -> None:
    upstream.fail_next("429", retry_after=3)
    record, sleeps = calls.CallRecord(), Sleeps()
    chunks = _run(_request(), record, sleeps)
    assert sleeps == [3.0]
    assert record.attempts == 2 and record.status == "ok"
    assert "".join(c.text for c in chunks) == upstream.reply


def test_retries_stop_at_the_configured_maximum(provider: Provider, upstream: FakeUpstream, settings: object) -> None:
    upstream.mode = "500"
    record, sleeps = calls.CallRecord(), Sleeps()
    with pytest.raises(ProviderError) as caught:
        _run(_request(), record, sleeps)
    assert caught.value.kind == "server"
    assert record.attempts == 3 and record.status == "error"
    assert len(upstream.requests) == 3
    # capped exponential backoff with jitter: 1 s then 2 s, each between half and all of it
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0


def test_non_retryable_errors_fail_at_once(provider: Provider, upstream: FakeUpstream) -> None:
    upstream.fail_next("401")
    record = calls.CallRecord()
    with pytest.raises(ProviderError) as caught:
        _run(_request(), record)
    assert caught.value.kind == "auth" and record.attempts == 1
    assert "sk-local-0001" not in caught.value.message


def test_an_error_after_the_first_token_is_not_retried(provider: Provider, upstream: FakeUpstream) -> None:
    upstream.fail_next("cut", cut_after=2)
    record = calls.CallRecord()
    received: list = []

    async def go() -> None:
        async for chunk in calls.stream_chat(_request(), caller=CALLER, record=record, sleep=Sleeps()):
            received.append(chunk)

    with pytest.raises(ProviderError) as caught:
        async_to_sync(go)()
    assert caught.value.retryable
    assert [c.text for c in received if c.text]  # something reached the caller...
    assert record.attempts == 1 and len(upstream.requests) == 1  # ...so it was not asked again
    assert record.status == "error"


def test_first_token_timeout(provider: Provider, upstream: FakeUpstream, settings: object) -> None:
    settings.PROVIDER_FIRST_TOKEN_TIMEOUT_SECONDS = 0.2
    Provider.objects.filter(pk=provider.pk).update(max_retries=0)
    upstream.fail_next("slow", delay=1.0)
    record = calls.CallRecord()
    with pytest.raises(ProviderError) as caught:
        _run(_request(), record)
    assert caught.value.kind == "timeout"
    assert "sent nothing for 0.2 seconds" in caught.value.message
    assert record.latency_ms < 900


def test_stopping_the_stream_marks_the_call_cancelled(provider: Provider, upstream: FakeUpstream) -> None:
    upstream.chunk_delay = 0.05
    record = calls.CallRecord()
    chunks = _run(_request(), record, stop_after=1)
    assert record.status == "cancelled"
    assert record.output_chars == len("".join(c.text for c in chunks)) < len(upstream.reply)


@pytest.mark.parametrize(
    ("address", "setup", "code", "words"),
    [
        ("nobody/fake-model-a", None, "not_found", "no provider named 'nobody'"),
        ("local/unknown", None, "not_found", "has no model 'unknown' in its catalog"),
        ("no-slash", None, "not_found", "no route or model named 'no-slash'"),
        ("local/fake-model-a", "disable_provider", "disabled", "Provider 'local' is disabled"),
        ("local/fake-model-a", "disable_model", "disabled", "Model 'local/fake-model-a' is disabled"),
    ],
)
def test_calls_that_cannot_start(provider: Provider, upstream: FakeUpstream, address: str, setup: str | None,
                                 code: str, words: str) -> None:
    if setup == "disable_provider":
        Provider.objects.filter(pk=provider.pk).update(enabled=False)
    if setup == "disable_model":
        Model.objects.filter(provider=provider).update(enabled=False)
    with pytest.raises(calls.CallError) as caught:
        _run(_request(address), calls.CallRecord())
    assert caught.value.code == code and words in caught.value.message
    assert upstream.requests == []


def test_complete_chat_sync_wrapper(provider: Provider, upstream: FakeUpstream) -> None:
    completion, record = calls.complete_chat(_request("fake-model-a"), caller=CALLER, provider="local")
    assert completion.text == upstream.reply
    assert completion.finish_reason == "stop"
    assert record.status == "ok" and record.usage == completion.usage


def test_ask_streams_and_summarises(provider: Provider, upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 12, "output_tokens": 6}
    out = StringIO()
    call_command("ask", "Say hello", provider="local", model="fake-model-a", system="Be brief", max_tokens=50,
                 stdout=out)
    text = out.getvalue()
    assert text.startswith(upstream.reply)
    assert "12 in / 6 out tokens" in text and "$0.000024" in text and " s (first token " in text
    body = upstream.last_request.body
    assert body["messages"][0] == {"role": "system", "content": "Be brief"}
    assert body["max_tokens"] == 50 or body.get("max_completion_tokens") == 50


def test_ask_reads_the_prompt_from_stdin(provider: Provider, upstream: FakeUpstream,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", StringIO("from stdin"))
    call_command("ask", "-", provider="local", model="fake-model-a", stdout=StringIO())
    assert upstream.last_request.body["messages"][-1]["content"] == "from stdin"


def test_ask_against_an_anthropic_provider(upstream: FakeUpstream) -> None:
    provider = Provider.objects.create(name="claude", kind="anthropic", base_url=upstream.base_url, api_key="k")
    Model.objects.create(provider=provider, name="claude-haiku-4-5")
    out = StringIO()
    call_command("ask", "Hi", provider="claude", model="claude-haiku-4-5", stdout=out)
    assert out.getvalue().startswith(upstream.reply)
    assert upstream.last_request.path == "/v1/messages"
    assert "cost unknown (no price)" in out.getvalue()


@pytest.mark.parametrize(("fault", "words"), [("401", "rejected the API key"), ("404", "does not know this model")])
def test_ask_errors_are_one_plain_line(provider: Provider, upstream: FakeUpstream, fault: str, words: str) -> None:
    upstream.mode = fault
    with pytest.raises(CommandError) as caught:
        call_command("ask", "Hi", provider="local", model="fake-model-a", stdout=StringIO())
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_ask_unknown_model_is_a_clear_error(provider: Provider) -> None:
    with pytest.raises(CommandError, match="has no model 'nope' in its catalog"):
        call_command("ask", "Hi", provider="local", model="nope", stdout=StringIO())


def test_a_whole_answer_is_asked_for_at_once_and_only_the_deadline_applies(provider: Provider, upstream: FakeUpstream,
                                                                           settings: object) -> None:
    """The gateway's non-streamed calls: the provider is asked without `stream`, and answering after the
    first-token timeout is no failure, since there is no first token before the whole answer."""
    settings.PROVIDER_FIRST_TOKEN_TIMEOUT_SECONDS = 0.2
    upstream.fail_next("slow", delay=0.4)
    upstream.usage = {"input_tokens": 10, "output_tokens": 5}
    record = calls.CallRecord()
    chunks = _run(_request(stream=False), record)
    assert "stream" not in upstream.last_request.body
    assert "".join(c.text for c in chunks) == upstream.reply
    assert record.status == "ok" and record.usage.output_tokens == 5
    assert 350 < record.ttft_ms <= record.latency_ms  # the whole answer is its first token
