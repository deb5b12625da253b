"""The ruvLLM adapter against a fake `ruvllm-server` on loopback: one question per query, a conversation kept in
one session, estimated tokens at no cost, errors in plain words; and ruvLLM through the gateway, the playground's
call path and `manage.py ask`."""

from __future__ import annotations

import re
import socket
import textwrap
from collections.abc import Iterator
from io import StringIO
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command

from providers import calls
from providers.adapters import ruvllm
from providers.adapters.base import (
    ChatRequest,
    Chunk,
    Completion,
    Connection,
    ImagePart,
    Message,
    ProviderError,
    TextPart,
    estimate_tokens,
)
from providers.models import Provider
from providers.services import models_sync
from tests import gateway_support
from tests.fakes.ruvllm import VERSION, FakeRuvLLM
from tests.fakes.upstream import FakeUpstream
from usage.models import UsageRecord

MODELS = ("ruvector-auto", "ruvector-fast", "ruvector-quality", "ruvector-balanced")


@pytest.fixture
def fake() -> Iterator[FakeRuvLLM]:
    with FakeRuvLLM() as server:
        yield server


@pytest.fixture(autouse=True)
def _sessions_forgotten() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def connection(fake: FakeRuvLLM) -> Connection:
    return Connection(kind="ruvllm", label="ruv", base_url=fake.base_url, timeout=5.0)


def ask(conn: Connection, *messages: Message, system: str = "") -> Completion:
    return async_to_sync(ruvllm.complete)(conn, ChatRequest(model="ruvector-auto", messages=messages, system=system))


def streamed(conn: Connection, *messages: Message) -> list[Chunk]:
    async def run() -> list[Chunk]:
        return [chunk async for chunk in ruvllm.stream(conn, ChatRequest(model="ruvector-fast", messages=messages))]

    return async_to_sync(run)()


def test_a_first_turn_opens_a_session_and_asks_with_the_system_prompt(fake: FakeRuvLLM) -> None:
    answer = ask(connection(fake), Message("user", "What is HNSW?"), system="Be brief.")
    [query] = fake.queries
    assert query["query"] == "Be brief.\n\nWhat is HNSW?"
    assert query["session_id"] in fake.sessions
    assert answer.text == "You asked: Be brief.\n\nWhat is HNSW?" and answer.finish_reason == "stop"
    assert answer.usage.estimated and answer.usage.input_tokens == estimate_tokens(query["query"])
    assert answer.usage.output_tokens == estimate_tokens(answer.text) and answer.usage.reasoning_tokens == 0


def test_a_conversation_continues_its_session_with_the_new_question_alone(fake: FakeRuvLLM) -> None:
    conn = connection(fake)
    first = ask(conn, Message("user", "Hi"))
    second = ask(conn, Message("user", "Hi"), Message("assistant", first.text), Message("user", "And then?"))
    third = ask(conn, Message("user", "Hi"), Message("assistant", first.text), Message("user", "And then?"),
                Message("assistant", second.text), Message("user", "Thanks"))
    assert [q["query"] for q in fake.queries] == ["Hi", "And then?", "Thanks"]
    assert len({q["session_id"] for q in fake.queries}) == 1
    assert third.text == "You asked: Thanks"
    # Another conversation, even with the same first question, is a session of its own.
    ask(conn, Message("user", "Hi"))
    assert len({q["session_id"] for q in fake.queries}) == 2


def test_a_conversation_not_followed_from_its_start_brings_its_earlier_turns_as_text(fake: FakeRuvLLM) -> None:
    ask(connection(fake), Message("user", "Hi"), Message("assistant", "Hello! (edited)"), Message("user", "Go on"),
        system="Be brief.")
    [query] = fake.queries
    assert query["query"] == "Be brief.\n\nEarlier in this conversation:\nUser: Hi\nAssistant: Hello! (edited)\n\nGo on"
    assert fake.sessions[query["session_id"]][0] == ("user", query["query"])  # a new session


def test_the_answer_streams_whole_then_its_usage(fake: FakeRuvLLM) -> None:
    fake.reply = "A graph index."
    chunks = streamed(connection(fake), Message("user", "HNSW?"))
    assert [c.text for c in chunks] == ["A graph index.", ""]
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.estimated


@pytest.mark.parametrize(("status", "text", "kind", "words"), [
    (500, "inference failed: model not loaded", "server", "had a server error (HTTP 500)"),
    (422, "Failed to deserialize the JSON body", "invalid_request", "refused the request as invalid (HTTP 422)"),
])
def test_errors_are_told_in_plain_words_with_the_servers_own(fake: FakeRuvLLM, status: int, text: str, kind: str,
                                                             words: str) -> None:
    fake.fail_next(status, text)
    with pytest.raises(ProviderError) as failed:
        ask(connection(fake), Message("user", "Hi"))
    assert failed.value.kind == kind and failed.value.status == status
    assert words in failed.value.message and text in failed.value.message


def test_a_base_url_that_is_not_ruvllms_says_so(fake: FakeRuvLLM) -> None:
    conn = Connection(kind="ruvllm", label="ruv", base_url=f"{fake.base_url}/v1", timeout=5.0)
    with pytest.raises(ProviderError) as failed:
        ask(conn, Message("user", "Hi"))
    assert "has no /v1/session (HTTP 404)" in failed.value.message and not failed.value.retryable


def test_a_server_that_is_not_running_is_a_network_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderError) as failed:
        ask(Connection(kind="ruvllm", label="ruv", base_url=f"http://127.0.0.1:{port}", timeout=2.0),
            Message("user", "Hi"))
    assert failed.value.kind == "network" and "Could not connect to ruv" in failed.value.message


@pytest.mark.parametrize("request_", [
    ChatRequest(model="ruvector-auto", messages=(Message("user", "Hi"),), tools=({"type": "function", "function": {
        "name": "f", "parameters": {"type": "object"}}},)),
    ChatRequest(model="ruvector-auto", messages=(Message("user", (TextPart("Look"), ImagePart("https://x/y.png"))),)),
    ChatRequest(model="ruvector-auto", messages=(Message("user", "Hi"), Message("assistant", "Hello"))),
], ids=["tools", "image", "no question"])
def test_what_ruvllm_cannot_take_is_refused_before_calling(fake: FakeRuvLLM, request_: ChatRequest) -> None:
    with pytest.raises(ProviderError) as failed:
        async_to_sync(ruvllm.complete)(connection(fake), request_)
    assert failed.value.kind == "invalid_request" and "ruv" in failed.value.message
    assert fake.queries == []


def test_health_and_the_preset_models(fake: FakeRuvLLM) -> None:
    health = async_to_sync(ruvllm.health_check)(connection(fake))
    assert health.ok and health.message == f"ruvLLM {VERSION} is up." and health.models == MODELS
    assert [m.id for m in async_to_sync(ruvllm.list_models)(connection(fake))] == list(MODELS)
    fake.ready = False
    with pytest.raises(ProviderError) as failed:
        async_to_sync(ruvllm.health_check)(connection(fake))
    assert "up but not ready (HTTP 503)" in failed.value.message


# -- through aspweb ------------------------------------------------------------------------------------------


@pytest.fixture
def provider(fake: FakeRuvLLM, db: None) -> Provider:
    provider = Provider.objects.create(name="ruv", kind="ruvllm", base_url=fake.base_url)
    assert models_sync(provider=provider, actor=None)[0] == list(MODELS)  # the presets, priced at 0 as local
    return provider


@pytest.mark.django_db(transaction=True)
def test_the_gateway_keeps_a_conversation_in_one_session_and_records_it_free_and_estimated(
        fake: FakeRuvLLM, provider: Provider, make_user: Any) -> None:
    key = gateway_support.make_key(make_user("member"))[1]
    messages = [{"role": "user", "content": "Hi"}]
    with gateway_support.live_server() as base:
        def post(**fields: Any) -> httpx.Response:
            return httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                              json={"model": "ruv/ruvector-auto", "messages": messages, **fields}, timeout=10)

        first = post()
        assert first.status_code == 200, first.text
        messages += [first.json()["choices"][0]["message"], {"role": "user", "content": "More"}]
        second = post(stream=True)
        assert second.status_code == 200 and "You asked: More" in second.text
    assert [q["query"] for q in fake.queries] == ["Hi", "More"]
    assert len({q["session_id"] for q in fake.queries}) == 1
    records = list(UsageRecord.objects.order_by("id"))
    assert [(r.status, r.cost, r.usage_estimated, r.unpriced) for r in records] == [("ok", 0, True, False)] * 2
    assert records[0].input_tokens == estimate_tokens("Hi") > 0


def test_ask_with_a_ruvllm_model(fake: FakeRuvLLM, provider: Provider) -> None:
    out = StringIO()
    call_command("ask", "Say hello", provider="ruv", model="ruvector-quality", stdout=out)
    assert out.getvalue().startswith("You asked: Say hello")
    assert "(estimated)" in out.getvalue() and "$0" in out.getvalue()
    assert fake.queries[0]["query"] == "Say hello"


def test_the_playground_compares_two_ruvllm_models_each_in_a_session_of_its_own(
        fake: FakeRuvLLM, provider: Provider, member_user: Any) -> None:
    from tests.playground_support import answers_of, send_data
    from tests.test_playground_stream import send, stream

    auto, fast = (provider.models.get(name=name) for name in ("ruvector-auto", "ruvector-fast"))
    first = send(member_user, send_data(auto, fast, prompt="First question"))
    for answer in answers_of(first.pk):
        assert stream(member_user, answer).status == 200
    second = send(member_user, send_data(auto, fast, prompt="Second question", conversation=first.conversation_id))
    for answer in answers_of(second.pk):
        assert "You asked: Second question" in stream(member_user, answer).done

    assert sorted(q["query"] for q in fake.queries) == ["First question"] * 2 + ["Second question"] * 2
    by_session: dict[str, list[str]] = {}
    for query in fake.queries:
        by_session.setdefault(query["session_id"], []).append(query["query"])
    assert sorted(by_session.values()) == [["First question", "Second question"]] * 2  # a session per lane


def test_the_readmes_route_falls_back_to_ollama_when_ruvllm_is_down(
        fake: FakeRuvLLM, upstream: FakeUpstream, db: None, tmp_path: Any) -> None:
    """The README's example, imported as written but for where the two servers listen."""
    readme = (settings.BASE_DIR / "README.md").read_text()
    example = re.search(r"### ruvLLM.*?```yaml\n(.*?)```", readme, re.S).group(1)
    config = textwrap.dedent(example).replace("http://127.0.0.1:3000", fake.base_url).replace(
        "{name: ollama, kind: ollama,", f"{{name: ollama, kind: ollama, base_url: '{upstream.openai_base_url}',")
    (tmp_path / "local.yaml").write_text(config)
    call_command("import_config", str(tmp_path / "local.yaml"), stdout=StringIO())

    def chat() -> tuple[str, str]:
        record = calls.CallRecord()

        async def go() -> str:
            request = ChatRequest(model="local-assistant", messages=(Message("user", "hi"),))
            chunks = calls.stream_chat(request, caller=calls.Caller("gateway"), record=record)
            return "".join([c.text async for c in chunks])

        return async_to_sync(go)(), record.provider

    assert chat() == ("You asked: hi", "ruv")
    fake.stop()  # ruvLLM goes away
    assert chat() == (upstream.reply, "ollama")
