"""What the calls list and a call's page show, read as a person reads them: one definition of speed wherever
a call's speed appears (the playground's answer included), cache hits, time to first token, timestamps
without microseconds, errors in the words of the form, and the link from a call to its playground
conversation for the one person who may open it."""

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.template import Context, Template
from django.urls import reverse

from accounts.models import User
from playground.models import Answer, Conversation, Turn
from providers.models import Model, Price, Provider
from tests.conftest import signed_in
from tests.usage_support import write
from usage.models import MIN_GENERATION_MS, UsageRecord, tokens_per_second

pytestmark = pytest.mark.django_db

NOON = datetime(2025, 5, 10, 12, 0, 34, 123456, tzinfo=UTC)


@pytest.fixture
def model(db: None) -> Model:
    provider = Provider.objects.create(name="local", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="fake-model-a")
    Price.objects.create(model=model, effective_from=datetime(2025, 1, 1, tzinfo=UTC), input=Decimal("3"),
                         output=Decimal("15"))
    return model


def _row(html: str, request_id: object) -> str:
    """The calls list's row of one call."""
    return html.split(f'href="/calls/{request_id}/"', 1)[1].split("</tr>", 1)[0]


def _visible(html: str) -> str:
    """The page's text, without tags and attribute values."""
    return re.sub(r"<[^>]*>", " ", html.split("<main", 1)[1])


# -- speed ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("output", "latency", "ttft", "expected"), [
    (500, 2500, 500, 250.0),  # 500 tokens in the 2 s after the first one
    (26, 1201, 1200, None),  # 1 ms of generation: a burst, not a speed
    (26, 1200 + MIN_GENERATION_MS - 1, 1200, None),
    (26, 1200 + MIN_GENERATION_MS, 1200, 260.0),
    (0, 2000, 100, None),  # nothing generated
    (40, 2000, None, None),  # not streamed: no generation time apart from the wait
    (40, None, None, None),
    (40, 100, 300, None),  # a first token after the end: a broken record
])
def test_tokens_per_second_is_output_over_the_generation_time(output: int, latency: int | None, ttft: int | None,
                                                              expected: float | None) -> None:
    assert tokens_per_second(output, latency, ttft) == expected
    record = UsageRecord(output_tokens=output, latency_ms=latency, ttft_ms=ttft)
    assert record.tokens_per_second == expected


@pytest.mark.parametrize(("output", "latency", "ttft", "shown"), [
    (500, 2500, 500, "250 tok/s"), (26311, 2000, 1000, "26,311 tok/s"), (17, 2200, 200, "8.5 tok/s"),
    (26, 1201, 1200, "—"), (10, 1000, None, "—"),
])
def test_the_speed_filter_reads_records_and_answers_alike(output: int, latency: int, ttft: int | None,
                                                          shown: str) -> None:
    template = Template("{% load speed %}{{ call|speed }}")
    for call in (UsageRecord(output_tokens=output, latency_ms=latency, ttft_ms=ttft),
                 Answer(output_tokens=output, latency_ms=latency, ttft_ms=ttft)):
        assert template.render(Context({"call": call})) == shown


def _playground_call(model: Model, user: User, *, output: int, latency: int, ttft: int) -> tuple[UsageRecord, Answer]:
    """A playground answer and its record in the ledger, as the playground writes them."""
    record = write(model, user=user, source="playground", created_at=NOON, output_tokens=output, latency_ms=latency,
                   ttft_ms=ttft)
    conversation = Conversation.objects.create(user=user, title="Hello")
    turn = Turn.objects.create(conversation=conversation, prompt="Say hello")
    answer = Answer.objects.create(turn=turn, model=model, model_address=f"{model.provider.name}/{model.name}",
                                   status="ok", content="Hello", input_tokens=100, output_tokens=output,
                                   latency_ms=latency, ttft_ms=ttft, request_id=record.request_id)
    return record, answer


@pytest.mark.parametrize(("output", "latency", "ttft", "shown"), [(26, 1201, 1200, "—"), (300, 1700, 500, "250 tok/s")])
def test_the_list_the_call_page_and_the_playground_agree_on_speed(model: Model, make_user: Callable[..., User],
                                                                  output: int, latency: int, ttft: int,
                                                                  shown: str) -> None:
    member = make_user("member")
    record, answer = _playground_call(model, member, output=output, latency=latency, ttft=ttft)
    client = signed_in(member)
    listed = _row(client.get(reverse("call_list")).content.decode(), record.request_id)
    page = client.get(reverse("call_detail", args=[record.request_id])).content.decode()
    pane = client.get(reverse("playground_conversation", args=[answer.turn.conversation_id])).content.decode()
    assert f'<td class="num">{shown}</td>' in listed
    assert f'<dd id="call-speed">{shown}</dd>' in page
    assert f"<dt>Speed</dt><dd>{shown}</dd>" in pane
    assert "26,000 tok/s" not in pane


# -- the calls list ------------------------------------------------------------------------------


def test_a_cache_hit_reads_cached_at_no_cost(model: Model, make_user: Callable[..., User]) -> None:
    admin = make_user("admin")
    hit = write(model, user=admin, source="gateway", created_at=NOON, cached=True, latency_ms=None, ttft_ms=None,
                attempts=0)
    paid = write(model, user=admin, source="gateway", created_at=NOON, latency_ms=900, ttft_ms=150)
    html = signed_in(admin).get(reverse("call_list")).content.decode()
    assert "cached · $0</span>" in _row(html, hit.request_id)
    assert "no price" not in _row(html, hit.request_id)
    assert "cached" not in _row(html, paid.request_id) and "$0.0006" in _row(html, paid.request_id)


def test_the_list_has_a_time_to_first_token_column(model: Model, make_user: Callable[..., User]) -> None:
    member = make_user("member")
    streamed = write(model, user=member, created_at=NOON, latency_ms=2400, ttft_ms=1234)
    whole = write(model, user=member, created_at=NOON, latency_ms=2400, ttft_ms=None)
    html = signed_in(member).get(reverse("call_list")).content.decode()
    head = html.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert re.findall(r"<th[^>]*>(.*?)</th>", head)[-3:] == [
        "Latency", '<abbr title="Time to first token">TTFT</abbr>', "Speed"]
    cells = re.findall(r'<td class="num">(.*?)</td>', _row(html, streamed.request_id))
    assert cells[-3:] == ["2,400&nbsp;ms", "1,234&nbsp;ms", "17 tok/s"]  # 20 tokens in 1.166 s
    assert re.findall(r'<td class="num">(.*?)</td>', _row(html, whole.request_id))[-2:] == ["—", "—"]


def test_times_read_as_a_date_a_time_and_a_zone(model: Model, make_user: Callable[..., User]) -> None:
    member = make_user("member")
    call = write(model, user=member, created_at=NOON)
    client = signed_in(member)
    for html in (client.get(reverse("call_list")).content.decode(),
                 client.get(reverse("call_detail", args=[call.request_id])).content.decode()):
        text = _visible(html)
        assert "2025-05-10 12:00:34 UTC" in text
        assert "123456" not in text and not re.search(r"\d{4}-\d\d-\d\dT\d\d:", text)


def test_filter_errors_name_the_label_not_the_field(model: Model, make_user: Callable[..., User]) -> None:
    client = signed_in(make_user("admin"))
    html = client.get(reverse("call_list"), {"date_from": "not-a-day"}).content.decode()
    errors = html.split('class="errors" role="alert">', 1)[1].split("</div>", 1)[0]
    assert "<p>From: Enter a valid date.</p>" in errors and "date_from" not in errors
    response = client.get(reverse("call_export"), {"date_to": "31/02"})
    assert response.status_code == 400
    assert response.content.decode() == 'Cannot export: parameter "date_to": Enter a valid date.'


@pytest.mark.parametrize("url", ["dashboard", "my_usage"])
def test_dashboard_errors_name_the_label_not_the_field(make_user: Callable[..., User], url: str) -> None:
    client = signed_in(make_user("finance"))
    html = client.get(reverse(url), {"from": "2025-13-01"}).content.decode()
    errors = html.split('class="errors card" role="alert">', 1)[1].split("</div>", 1)[0]
    assert "<p>From: Enter a valid date.</p>" in errors and "date_from" not in errors
    html = client.get(reverse(url), {"sort": "price", "from": "2025-02-10", "to": "2025-02-01"}).content.decode()
    errors = html.split('class="errors card" role="alert">', 1)[1].split("</div>", 1)[0]
    assert "<p>Sort: Select a valid choice. price is not one of the available choices.</p>" in errors
    assert "<p>The start date is after the end date.</p>" in errors
    response = client.get(reverse(f"{url}_export" if url == "my_usage" else "dashboard_export"), {"to": "x"})
    assert response.status_code == 400
    assert response.content.decode() == 'Cannot export: parameter "to": Enter a valid date.'


# -- the call page's conversation ----------------------------------------------------------------


def test_a_playground_call_links_its_conversation_for_its_owner_only(model: Model,
                                                                     make_user: Callable[..., User]) -> None:
    member = make_user("member")
    record, answer = _playground_call(model, member, output=300, latency=1700, ttft=500)
    url = reverse("call_detail", args=[record.request_id])
    conversation = reverse("playground_conversation", args=[answer.turn.conversation_id])
    html = signed_in(member).get(url).content.decode()
    assert f'<a href="{conversation}#turn-{answer.turn_id}" id="call-conversation">' in html
    assert signed_in(member).get(conversation).status_code == 200
    # Admins and Finance open the call, but a conversation is only ever its owner's.
    for role in ("admin", "finance"):
        other = make_user(role)
        response = signed_in(other).get(url)
        assert response.status_code == 200 and 'id="call-conversation"' not in response.content.decode()
        assert signed_in(other).get(conversation).status_code == 404
    # Deleted since: nothing to link.
    answer.turn.conversation.delete()
    assert 'id="call-conversation"' not in signed_in(member).get(url).content.decode()


def test_other_calls_link_no_conversation(model: Model, make_user: Callable[..., User]) -> None:
    member = make_user("member")
    record, answer = _playground_call(model, member, output=300, latency=1700, ttft=500)
    gateway = write(model, user=member, source="gateway", created_at=NOON)
    Answer.objects.filter(pk=answer.pk).update(request_id=gateway.request_id)  # even if an answer said so
    html = signed_in(member).get(reverse("call_detail", args=[gateway.request_id])).content.decode()
    assert 'id="call-conversation"' not in html
    html = signed_in(member).get(reverse("call_detail", args=[record.request_id])).content.decode()
    assert 'id="call-conversation"' not in html


def _streamed(response: object) -> str:
    async def collect() -> list[bytes]:
        return [part async for part in response.streaming_content]

    return b"".join(async_to_sync(collect)()).decode()


@pytest.mark.parametrize("tz", ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_the_calendars_first_and_last_days_select_every_call(model: Model, make_user: Callable[..., User],
                                                             settings: object, tz: str) -> None:
    settings.TIME_ZONE = tz  # a day's start in +14 h or -11 h lies outside the calendar at its ends
    finance = make_user("finance")
    record = write(model, user=finance, created_at=NOON)
    client = signed_in(finance)
    wide = {"date_from": "0001-01-01", "date_to": "9999-12-31"}
    listed = client.get(reverse("call_list"), wide)
    assert listed.status_code == 200 and str(record.request_id) in listed.content.decode()
    exported = client.get(reverse("call_export"), wide)
    assert exported.status_code == 200 and str(record.request_id) in _streamed(exported)
    for none in ({"date_to": "0001-01-01"}, {"date_from": "9999-12-31"}):
        response = client.get(reverse("call_list"), none)
        assert response.status_code == 200 and str(record.request_id) not in response.content.decode()


@pytest.mark.parametrize(("kind", "words"), [("budget_exceeded", "over budget"), ("auth", "provider key refused"),
                                             ("server", "provider error"), ("some_new_kind", "some new kind")])
def test_a_failed_call_says_what_went_wrong_in_words(model: Model, make_user: Callable[..., User], kind: str,
                                                     words: str) -> None:
    finance = make_user("finance")
    record = write(model, user=finance, created_at=NOON, status="error", error_kind=kind,
                   error_message="What the provider said.", output_tokens=0)
    client = signed_in(finance)
    listed = re.sub(r"<[^>]*>", " ", _row(client.get(reverse("call_list")).content.decode(), record.request_id))
    page = _visible(client.get(reverse("call_detail", args=[record.request_id])).content.decode())
    assert words in listed and kind not in listed
    assert f"{words[0].upper()}{words[1:]}:" in page and kind not in page
