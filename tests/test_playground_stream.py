"""The answer stream through the real ASGI application: deltas then done, following a generation from a
reload, a second tab or another worker, Stop, errors, ownership.

Requests go straight into `aspweb.asgi.application` with a scripted `receive`, so a client disconnect is
the `http.disconnect` message Django turns into a cancellation, as under uvicorn. async_to_sync, not
asyncio.run: the ORM work then runs on this thread's connection, inside the test's transaction.
"""

import asyncio
import functools
import html
import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import AsyncClient, Client, RequestFactory, TestCase

from accounts.models import User
from playground import live, services, views
from playground.models import Answer, Turn
from providers import calls
from providers.models import Model
from tests.asgi_support import Received, asgi_request
from tests.fakes.upstream import FakeUpstream
from tests.playground_support import API_KEY, REPLY, Event, answers_of, make_catalog, parse_events, send_data
from usage.models import UsageRecord
from usage.templatetags.speed import speed

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Answer ids come round again from test to test; what the cache says of one must not reach the next."""
    cache.clear()


@pytest.fixture
def catalog(upstream: FakeUpstream) -> tuple[Model, Model]:
    return make_catalog(upstream)


@pytest.fixture
def member(make_user: Callable[..., User]) -> User:
    return make_user("member")


class Stream:
    """One GET through the ASGI app: status, headers and the raw body, read like a browser would."""

    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def events(self) -> list[Event]:
        return parse_events(self.body)

    @property
    def deltas(self) -> list[str]:
        return [html.unescape(event.data) for event in self.events if event.name == "delta"]

    @property
    def text(self) -> str:
        """What the pane shows before the done event: a `text` event replaces it, a `delta` adds to it."""
        shown = ""
        for event in self.events:
            if event.name == "text":
                shown = html.unescape(event.data)
            elif event.name == "delta":
                shown += html.unescape(event.data)
        return shown

    @property
    def done(self) -> str:
        names = [event.name for event in self.events]
        assert names.count("done") == 1 and names[-1] == "done", names
        return self.events[-1].data


def _session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def _asgi_get(path: str, cookie: str, disconnect_after_deltas: int | None = None) -> Stream:
    from aspweb.asgi import application

    def disconnect_when(received: Received, finished: bool) -> bool:
        # The browser closes the EventSource (Stop) or goes away.
        return (disconnect_after_deltas is not None
                and received.body.count(b"event: delta") >= disconnect_after_deltas)

    received = await asyncio.wait_for(asgi_request(
        application, "GET", path, headers=[(b"cookie", cookie.encode()), (b"accept", b"text/event-stream")],
        disconnect_when=disconnect_when), timeout=20)
    return Stream(received.status, received.headers, received.body.decode())


async def _until_streaming(answer: Answer, timeout: float = 10.0) -> None:
    """Wait until the answer's generation, running in this process, has its first text and is not done (and,
    where the cache stands for a shared one, has written that text there): a second page or a Stop sent now
    meets a generation under way, however slow the machine is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        generation = live._running.get(answer.pk)
        if generation is not None and generation.parts and not generation.finished:
            if live.cache_is_local():
                return
            meta = await sync_to_async(cache.get)(live._meta_key(answer.pk))
            if meta is not None and meta[0] >= 1 and not meta[2]:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"answer {answer.pk} did not start streaming within {timeout} s")


def run_asgi(coroutine_function: Callable[[], Any]) -> Any:
    """Run requests through the ASGI app from this (sync) test, and wait for the answers they started to be
    generated (they outlive their streams). As Django's test clients do, keep the handler from closing the
    test's database connection, and with it the test's transaction."""

    async def run() -> Any:
        try:
            return await coroutine_function()
        finally:
            await live.drain()

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        return async_to_sync(run)()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def stream(user: User, answer: Answer, disconnect_after_deltas: int | None = None) -> Stream:
    cookie = _session_cookie(user)
    return run_asgi(functools.partial(_asgi_get, f"/playground/answers/{answer.pk}/stream/", cookie,
                                      disconnect_after_deltas))


def send(user: User, data: dict, *, keep: bool = True) -> Turn:
    """Send a prompt as the page does. The answers' requests are stored for their streams once the turn is
    committed (keep=False: as if the stream opened on a worker that does not have them)."""
    client = Client()
    client.force_login(user)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post("/playground/send/", data, headers={"HX-Request": "true"})
    assert response.status_code == 200, response.content
    if not keep:
        cache.clear()
    return Turn.objects.latest("id")


def _pane(done_html: str, answer: Answer) -> str:
    """The <article> of one answer inside a done event's HTML."""
    match = re.search(rf'<article[^>]*id="answer-{answer.pk}".*?</article>', done_html, re.S)
    assert match, done_html
    return match.group(0)


def test_deltas_stream_then_done_swaps_in_the_rendered_answer_with_metrics(
    member: User, catalog: tuple[Model, Model], upstream: FakeUpstream
) -> None:
    cheap, _ = catalog
    turn = send(member, send_data(cheap, prompt="Say hello", system="Be brief", temperature="0.3", top_p="0.9",
                                  stop="END\nSTOP"))
    [answer] = answers_of(turn.pk)

    result = stream(member, answer)

    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream"
    assert result.headers["cache-control"] == "no-cache"
    assert len(result.deltas) >= 5  # token by token, not one block
    assert "".join(result.deltas) == REPLY
    done = result.done
    assert f'id="answer-{answer.pk}"' in done and 'hx-swap-oob="true"' in done
    assert "<strong>token by token</strong>" in done and "<code>code</code>" in done  # Markdown once done
    for label in ("Input", "Output", "Cost", "Latency", "TTFT", "Speed"):
        assert f"<dt>{label}</dt>" in done

    answer.refresh_from_db()
    assert answer.status == Answer.Status.OK and answer.content == REPLY
    assert answer.input_tokens > 0 and answer.output_tokens == len(result.deltas) and not answer.usage_estimated
    assert answer.cost == (Decimal(answer.input_tokens) * 1 + Decimal(answer.output_tokens) * 2) / 1_000_000
    assert 0 < answer.ttft_ms <= answer.latency_ms
    # The ledger's one definition of speed, from the same milliseconds ("—" for a generation this quick).
    assert f"<dt>Speed</dt><dd>{speed(answer)}</dd>" in done
    assert answer.request_id is not None
    body = upstream.last_request.body
    assert body["model"] == "fake-model-a" and body["stream"] is True
    assert body["messages"] == [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Say hello"}]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"]) == (0.3, 0.9, 256, ["END", "STOP"])


def test_text_is_escaped_while_it_streams(member: User, catalog: tuple[Model, Model], upstream: FakeUpstream) -> None:
    upstream.reply = "<script>alert(1)</script> two\nlines"
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    result = stream(member, answer)
    assert "<script>" not in result.body
    assert "".join(result.deltas) == upstream.reply  # escaped on the wire, the same text on screen
    assert "<script>" not in result.done and "&lt;script&gt;" in result.done


@pytest.mark.parametrize("keep", [True, False], ids=["stored request", "request built by the stream"])
def test_a_later_turn_sends_the_earlier_turns_of_its_lane(member: User, catalog: tuple[Model, Model],
                                                          upstream: FakeUpstream, keep: bool) -> None:
    cheap, _ = catalog
    first = send(member, send_data(cheap, prompt="First question"), keep=keep)
    stream(member, answers_of(first.pk)[0])
    second = send(member, send_data(cheap, prompt="Second question", conversation=first.conversation_id),
                  keep=keep)
    assert second.conversation_id == first.conversation_id
    [answer] = answers_of(second.pk)
    assert (cache.get(services._pending_key(answer.pk)) is not None) == keep
    stream(member, answer)
    assert cache.get(services._pending_key(answer.pk)) is None
    assert upstream.last_request.body["messages"] == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "Second question"},
    ]


def test_compared_models_stream_at_once_and_the_last_done_marks_cheapest_and_fastest(
    member: User, catalog: tuple[Model, Model], upstream: FakeUpstream
) -> None:
    upstream.chunk_delay = 0.01
    cheap, dear = catalog
    turn = send(member, send_data(cheap, dear))
    first, second = answers_of(turn.pk)
    cookie = _session_cookie(member)

    async def both() -> list[Stream]:
        paths = [f"/playground/answers/{answer.pk}/stream/" for answer in (first, second)]
        return await asyncio.gather(*(_asgi_get(path, cookie) for path in paths))

    results = run_asgi(both)

    for result in results:
        assert "".join(result.deltas) == REPLY
    rows = [result.done for result in results if f'id="answers-{turn.pk}"' in result.done]
    assert rows, "the answer that finished last sends the whole row, marked"
    row = rows[-1]
    assert "mark-cheapest" in _pane(row, first) and "mark-cheapest" not in _pane(row, second)
    assert row.count("mark-fastest") == 1
    assert {a.status for a in answers_of(turn.pk)} == {Answer.Status.OK}
    assert answers_of(turn.pk)[0].cost < answers_of(turn.pk)[1].cost


def _path(answer: Answer) -> str:
    return f"/playground/answers/{answer.pk}/stream/"


def test_a_reload_follows_the_answer_the_first_stream_started(member: User, catalog: tuple[Model, Model],
                                                              upstream: FakeUpstream) -> None:
    upstream.chunk_delay = 0.05
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    cookie = _session_cookie(member)

    async def leave_then_come_back() -> tuple[Stream, Stream]:
        first = await _asgi_get(_path(answer), cookie, disconnect_after_deltas=3)  # the page reloads
        again = await _asgi_get(_path(answer), cookie)
        return first, again

    first, again = run_asgi(leave_then_come_back)

    assert "done" not in [event.name for event in first.events]
    # The reload gets the text so far at once, then the rest as it comes, then the end.
    names = [event.name for event in again.events]
    assert names[0] == "text" and names[-1] == "done" and names.count("delta") >= 3, names
    assert REPLY.startswith(first.text) and len(again.events[0].data) >= len(first.text)
    assert again.text == REPLY
    assert "<strong>token by token</strong>" in again.done and "mark-stopped" not in again.done
    answer.refresh_from_db()
    assert answer.status == Answer.Status.OK and answer.content == REPLY and not answer.usage_estimated
    # One call, never cut off: leaving is not Stop.
    assert len(upstream.requests) == 1 and not upstream.last_request.client_disconnected


def test_a_second_tab_follows_the_same_answer_live(member: User, catalog: tuple[Model, Model],
                                                   upstream: FakeUpstream) -> None:
    upstream.chunk_delay = 0.05
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    cookie = _session_cookie(member)

    async def two_tabs() -> list[Stream]:
        first = asyncio.ensure_future(_asgi_get(_path(answer), cookie))
        await _until_streaming(answer)
        return [await first, await _asgi_get(_path(answer), cookie)] if first.done() else \
            list(await asyncio.gather(first, _asgi_get(_path(answer), cookie)))

    first, second = run_asgi(two_tabs)

    assert first.text == second.text == REPLY
    assert second.events[0].name == "text" and 0 < len(second.events[0].data) < len(REPLY)
    assert [event.name for event in second.events].count("delta") >= 3  # live, not all at the end
    assert "<strong>token by token</strong>" in first.done and "<strong>token by token</strong>" in second.done
    assert len(upstream.requests) == 1


def test_a_stream_on_another_worker_follows_through_the_cache(member: User, catalog: tuple[Model, Model],
                                                              upstream: FakeUpstream,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    upstream.chunk_delay = 0.05
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    cookie = _session_cookie(member)
    # The follower's worker does not run the generation: it has only the shared store (Redis in production;
    # this process's memory, written and read as if it were shared, with the embedded default).
    monkeypatch.setattr(live, "local", lambda answer_id: None)
    monkeypatch.setattr(live, "cache_is_local", lambda: False)

    async def elsewhere() -> list[Stream]:
        first = asyncio.ensure_future(_asgi_get(_path(answer), cookie, disconnect_after_deltas=4))
        await _until_streaming(answer)
        return list(await asyncio.gather(first, _asgi_get(_path(answer), cookie)))

    _, follower = run_asgi(elsewhere)

    names = [event.name for event in follower.events]
    assert names[0] == "text" and names[-1] == "done" and "delta" in names, names
    assert follower.text == REPLY
    assert "<strong>token by token</strong>" in follower.done
    answer.refresh_from_db()
    assert answer.status == Answer.Status.OK and len(upstream.requests) == 1


def test_an_answer_whose_worker_went_is_saved_stopped_with_the_text_that_reached_the_cache(
    member: User, catalog: tuple[Model, Model], upstream: FakeUpstream
) -> None:
    [answer] = answers_of(send(member, send_data(catalog[0]), keep=False).pk)
    Answer.objects.filter(pk=answer.pk).update(status=Answer.Status.STREAMING)  # claimed elsewhere
    cache.set_many({live._batch_key(answer.pk, 0): "Half of ", live._batch_key(answer.pk, 1): "an answer",
                    live._meta_key(answer.pk): (2, time.time() - live.STALE_SECONDS - 1, False)})

    result = stream(member, answer)

    assert result.text == "Half of an answer" and "mark-stopped" in result.done
    answer.refresh_from_db()
    assert answer.status == Answer.Status.STOPPED and answer.content == "Half of an answer"
    assert upstream.requests == []


def test_after_a_restart_of_the_one_worker_a_reload_ends_the_answer_at_once(
    local_cache: None, member: User, catalog: tuple[Model, Model], upstream: FakeUpstream
) -> None:
    # The embedded default: one worker, whose memory held the generation and is gone.
    [answer] = answers_of(send(member, send_data(catalog[0]), keep=False).pk)
    Answer.objects.filter(pk=answer.pk).update(status=Answer.Status.STREAMING)
    started = time.monotonic()
    result = stream(member, answer)
    assert time.monotonic() - started < live.STALE_SECONDS / 2
    assert "Stopped before the first token." in result.done
    answer.refresh_from_db()
    assert answer.status == Answer.Status.STOPPED and upstream.requests == []


def test_closing_a_stream_at_a_yield_leaves_the_answer_generating(member: User, catalog: tuple[Model, Model],
                                                                  upstream: FakeUpstream) -> None:
    # Django closes the generator (GeneratorExit) instead of cancelling it when the disconnect lands while
    # an event is being sent.
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)

    request = RequestFactory().get("/")
    request.user = member

    async def two_deltas_then_close() -> list[str]:
        events = views._answer_events(await sync_to_async(views._claim)(request, answer.pk))
        received = [await anext(events), await anext(events)]
        await events.aclose()
        await live.drain()
        return received

    received = async_to_sync(two_deltas_then_close)()
    assert len(received) == 2
    answer.refresh_from_db()
    assert answer.status == Answer.Status.OK and answer.content == REPLY


def _stop(user: User, answer: Answer) -> Any:
    async def stop() -> Any:
        client = AsyncClient()
        await client.aforce_login(user)
        return await client.post(f"/playground/answers/{answer.pk}/stop/", headers={"HX-Request": "true"})
    return stop


def test_stop_ends_the_generation_and_returns_the_stopped_pane(member: User, catalog: tuple[Model, Model],
                                                               upstream: FakeUpstream) -> None:
    upstream.chunk_delay = 0.05
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    cookie = _session_cookie(member)

    async def stream_then_stop() -> tuple[Stream, Any]:
        # The page closes the EventSource, then posts Stop.
        result = await _asgi_get(_path(answer), cookie, disconnect_after_deltas=2)
        return result, await _stop(member, answer)()

    result, response = run_asgi(stream_then_stop)

    assert response.status_code == 200
    pane = response.content.decode()
    assert f'id="answer-{answer.pk}"' in pane and 'hx-swap-oob="true"' in pane
    assert "mark-stopped" in pane and "sse-connect" not in pane
    assert html.escape(result.text.split()[0]) in pane
    answer.refresh_from_db()
    assert answer.status == Answer.Status.STOPPED
    assert 0 < len(answer.content) < len(REPLY) and REPLY.startswith(answer.content)
    assert answer.content.startswith(result.text)
    # The provider gave no usage for a cut-off stream: estimated, and flagged.
    assert answer.usage_estimated and answer.output_tokens > 0 and answer.input_tokens > 0
    assert answer.cost > 0 and answer.latency_ms is not None and answer.ttft_ms is not None
    # ...and the upstream call was really closed, not left running to the end.
    deadline = time.monotonic() + 5
    while not upstream.last_request.client_disconnected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.last_request.client_disconnected


def test_stop_from_another_worker_reaches_the_generation_through_the_cache(
    member: User, catalog: tuple[Model, Model], upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.chunk_delay = 0.05
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    cookie = _session_cookie(member)
    monkeypatch.setattr(live, "cache_is_local", lambda: False)
    stops: list[int] = []
    cancel = live.Generation.cancel
    monkeypatch.setattr(live.Generation, "cancel", lambda self: stops.append(self.answer_id) or cancel(self))

    async def stream_and_stop() -> tuple[Stream, Any]:
        follower = asyncio.ensure_future(_asgi_get(_path(answer), cookie))
        await _until_streaming(answer)
        # Stop lands on a worker that does not run the generation: this one, once it forgets it runs it.
        generation = live._running.pop(answer.pk)
        response = await _stop(member, answer)()
        result = await follower
        await asyncio.gather(generation.task, return_exceptions=True)
        return result, response

    result, response = run_asgi(stream_and_stop)

    assert response.status_code == 200 and "mark-stopped" in response.content.decode()
    assert "mark-stopped" in result.done  # the page following it sees it end, stopped
    answer.refresh_from_db()
    assert answer.status == Answer.Status.STOPPED and 0 < len(answer.content) < len(REPLY)
    assert answer.content.startswith(result.text)
    # It was the flag in the cache that reached it, and the flag is gone with it.
    assert stops == [answer.pk] and cache.get(live._stop_key(answer.pk)) is None


def test_regenerating_keeps_both_answers_and_both_calls_in_the_ledger(
    member: User, catalog: tuple[Model, Model], upstream: FakeUpstream
) -> None:
    turn = send(member, send_data(catalog[0]))
    [first] = answers_of(turn.pk)
    stream(member, first)
    client = Client()
    client.force_login(member)
    with TestCase.captureOnCommitCallbacks(execute=True):
        client.post(f"/playground/c/{turn.conversation_id}/regenerate/",
                    send_data(catalog[0], prompt="", conversation=turn.conversation_id), headers={"HX-Request": "true"})
    [second] = answers_of(turn.pk)
    assert second.pk != first.pk and second.version == 2
    assert stream(member, second).text == REPLY
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == Answer.Status.OK and first.content == second.content == REPLY
    records = {record.request_id: record for record in UsageRecord.objects.all()}
    assert set(records) == {first.request_id, second.request_id}
    assert first.cost == records[first.request_id].cost and second.cost == records[second.request_id].cost


def test_stopping_an_answer_before_its_stream_opens_means_it_is_never_asked(
    member: User, catalog: tuple[Model, Model], upstream: FakeUpstream
) -> None:
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    client = Client()
    client.force_login(member)
    assert client.post(f"/playground/answers/{answer.pk}/stop/").status_code == 200
    answer.refresh_from_db()
    assert answer.status == Answer.Status.STOPPED

    result = stream(member, answer)  # the EventSource connecting late
    assert [event.name for event in result.events] == ["done"]
    assert "Stopped before the first token." in result.done
    assert upstream.requests == []


def test_a_reconnecting_event_source_gets_the_final_answer_and_no_second_call(
    member: User, catalog: tuple[Model, Model], upstream: FakeUpstream
) -> None:
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    stream(member, answer)
    again = stream(member, answer)
    assert [event.name for event in again.events] == ["done"]
    assert "<strong>token by token</strong>" in again.done
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("401", "lab rejected its API key. Ask an admin to check the key of provider lab."),
        ("429", "lab is rate limiting requests. Retry in 7 seconds."),
        ("429-1", "lab is rate limiting requests. Retry in 1 second."),
    ],
)
def test_provider_errors_are_plain_words_in_the_pane(fault: str, expected: str, member: User,
                                                     catalog: tuple[Model, Model], upstream: FakeUpstream) -> None:
    fault, _, retry_after = fault.partition("-")
    upstream.fail_next(fault, retry_after=int(retry_after or 7))
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)

    result = stream(member, answer)

    assert result.deltas == []
    assert expected in html.unescape(result.done)
    assert "Traceback" not in result.body and API_KEY not in result.body
    answer.refresh_from_db()
    assert answer.status == Answer.Status.ERROR and answer.error_message == expected


def test_a_timeout_says_so(member: User, catalog: tuple[Model, Model], upstream: FakeUpstream,
                           settings: Any) -> None:
    settings.PROVIDER_FIRST_TOKEN_TIMEOUT_SECONDS = 0.3
    upstream.fail_next("slow", delay=2)
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    done = html.unescape(stream(member, answer).done)
    assert "Timed out: " in done and "sent nothing for 0.3 seconds" in done


def test_a_model_disabled_after_sending_is_explained(member: User, catalog: tuple[Model, Model],
                                                     upstream: FakeUpstream) -> None:
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    Model.objects.filter(pk=catalog[0].pk).update(enabled=False)
    assert "Model &#x27;lab/fake-model-a&#x27; is disabled." in stream(member, answer).done
    assert upstream.requests == []


def test_an_unexpected_failure_shows_no_details(member: User, catalog: tuple[Model, Model],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"internal detail {API_KEY}")
        yield  # an async generator, like the real one

    monkeypatch.setattr(calls, "stream_chat", broken)
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    result = stream(member, answer)
    assert "Something went wrong in aspweb" in result.done
    assert "internal detail" not in result.body and API_KEY not in result.body


@pytest.mark.parametrize("keep", [True, False], ids=["stored request", "request built by the stream"])
def test_only_the_owner_can_stream_or_stop_an_answer(member: User, make_user: Callable[..., User],
                                                     catalog: tuple[Model, Model], upstream: FakeUpstream,
                                                     keep: bool) -> None:
    [answer] = answers_of(send(member, send_data(catalog[0]), keep=keep).pk)
    other = make_user("member", email="other@example.com")
    admin = make_user("admin")

    for intruder in (other, admin):
        assert stream(intruder, answer).status == 404
        client = Client()
        client.force_login(intruder)
        assert client.post(f"/playground/answers/{answer.pk}/stop/").status_code == 404
    assert stream(make_user("finance"), answer).status == 403
    answer.refresh_from_db()
    assert answer.status == Answer.Status.PENDING and upstream.requests == []


def test_a_response_closed_before_its_first_event_hands_the_answer_back(
    member: User, catalog: tuple[Model, Model], upstream: FakeUpstream
) -> None:
    # The browser left as the response began: the claimed answer is pending again, and streams later.
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    request = RequestFactory().get("/")
    request.user = member

    views._AnswerEvents(views._claim(request, answer.pk)).close()

    answer.refresh_from_db()
    assert answer.status == Answer.Status.PENDING and upstream.requests == []
    assert "".join(stream(member, answer).deltas) == REPLY


def _claim(user: User, answer: Answer) -> Any:
    request = RequestFactory().get("/")
    request.user = user
    return views._claim(request, answer.pk)


def test_an_answer_is_claimed_once_from_the_cache(member: User, catalog: tuple[Model, Model],
                                                  upstream: FakeUpstream) -> None:
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    first, second = _claim(member, answer), _claim(member, answer)
    assert first.chat is not None and not first.marked  # from the cache: marked by its stream
    assert second.chat is None  # a second stream for it (an EventSource reconnecting) only gets the end


def test_a_stop_between_the_claim_and_the_stream_wins(member: User, catalog: tuple[Model, Model],
                                                      upstream: FakeUpstream) -> None:
    upstream.chunk_delay = 0.02
    [answer] = answers_of(send(member, send_data(catalog[0])).pk)
    claim = _claim(member, answer)
    assert services.answer_settle_stop(answer_id=answer.pk, give_up=False)  # pending: stopped at once

    async def events() -> list[str]:
        return [event async for event in views._answer_events(claim)]

    received = parse_events("".join(async_to_sync(events)()))
    # The stream learns it lost once its first token is on its way (when it marks the answer): it ends
    # there, saves nothing, and its end shows the stopped answer.
    names = [event.name for event in received]
    assert names[-1] == "done" and 0 < names.count("delta") < len(REPLY.split())
    assert "Stopped before the first token." in received[-1].data
    answer.refresh_from_db()
    assert answer.status == Answer.Status.STOPPED and answer.content == ""


def test_a_stored_answer_streams_without_a_thread_hop_before_its_call(
    local_cache: None, member: User, catalog: tuple[Model, Model], upstream: FakeUpstream, hops: list[str]
) -> None:
    [first] = answers_of(send(member, send_data(catalog[0])).pk)
    [second] = answers_of(send(member, send_data(catalog[0])).pk)
    cookie = _session_cookie(member)
    run_asgi(functools.partial(_asgi_get, f"/playground/answers/{first.pk}/stream/", cookie))
    hops.clear()  # the session, the person and the model are cached from now on
    result = run_asgi(functools.partial(_asgi_get, f"/playground/answers/{second.pk}/stream/", cookie))
    assert "".join(result.deltas) == REPLY
    assert not [hop for hop in hops if ".admit" in hop], hops  # the sign-in check and the claim: inline
    assert any(hop.endswith("answer_mark_streaming") for hop in hops), hops
    # One worker, the cache its own memory: no other worker to tell, so nothing went to the cache.
    assert cache.get(live._meta_key(second.pk)) is None
