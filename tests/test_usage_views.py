"""The calls list, a call's page and the CSV export: who sees what, the filters, and the CSV's content."""

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from accounts.models import User
from providers.models import ApiKey, Model, Price, Provider
from tests.usage_support import write
from usage import views
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db

NOON = datetime(2025, 5, 10, 12, tzinfo=UTC)


@pytest.fixture
def model(db: None) -> Model:
    provider = Provider.objects.create(name="local", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="fake-model-a")
    Price.objects.create(model=model, effective_from=datetime(2025, 1, 1, tzinfo=UTC), input=Decimal("3"),
                         output=Decimal("15"), cache_read=Decimal("0.3"))
    return model


@pytest.fixture
def people(make_user: Callable[..., User]) -> dict[str, User]:
    return {role: make_user(role) for role in ("admin", "finance", "member")} | {
        "other": make_user("member", email="other@example.com")}


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _listed(response) -> list[UsageRecord]:
    assert response.status_code == 200
    return list(response.context["calls"])


def _csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"

    async def collect() -> list[bytes]:
        return [part async for part in response.streaming_content]

    text = b"".join(async_to_sync(collect)()).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [column for column, _ in views.CSV_COLUMNS]
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


# -- the list ----------------------------------------------------------------------------------


def test_admins_see_everyones_calls_and_others_their_own(model: Model, people: dict[str, User]) -> None:
    mine = write(model, user=people["member"], created_at=NOON)
    theirs = write(model, user=people["other"], created_at=NOON + timedelta(minutes=1))
    finance_own = write(model, user=people["finance"], created_at=NOON + timedelta(minutes=2))
    url = reverse("call_list")
    assert _listed(_client(people["admin"]).get(url)) == [finance_own, theirs, mine]  # newest first
    assert _listed(_client(people["member"]).get(url)) == [mine]
    assert _listed(_client(people["finance"]).get(url)) == [finance_own]
    # A member cannot widen the list by asking for someone else's calls.
    assert _listed(_client(people["member"]).get(url, {"user": people["other"].pk})) == [mine]


def test_the_list_filters(model: Model, people: dict[str, User]) -> None:
    other_provider = Provider.objects.create(name="other", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    other_model = Model.objects.create(provider=other_provider, name="m2")
    a = write(model, user=people["member"], source="playground", status="ok", created_at=NOON)
    b = write(model, user=people["other"], source="gateway", status="error", error_kind="auth",
              created_at=NOON + timedelta(days=1))
    c = write(other_model, user=people["member"], source="cli", status="cancelled",
              created_at=NOON + timedelta(days=2))
    client = _client(people["admin"])
    url = reverse("call_list")
    cases = [
        ({"provider": model.provider.pk}, [b, a]),
        ({"model": other_model.pk}, [c]),
        ({"user": people["member"].pk}, [c, a]),
        ({"source": "gateway"}, [b]),
        ({"status": "cancelled"}, [c]),
        ({"date_from": "2025-05-11"}, [c, b]),
        ({"date_to": "2025-05-11"}, [b, a]),
        ({"date_from": "2025-05-11", "date_to": "2025-05-11"}, [b]),
        ({"provider": model.provider.pk, "status": "ok", "source": "playground"}, [a]),
    ]
    for query, expected in cases:
        assert _listed(client.get(url, query)) == expected, query
    response = client.get(url, {"date_from": "2025-05-12", "date_to": "2025-05-10"})
    assert _listed(response) == [] and "The start date is after the end date." in response.content.decode()


def test_the_list_pages_without_counting(model: Model, people: dict[str, User]) -> None:
    for i in range(views.CALLS_PER_PAGE + 3):
        write(model, user=people["member"], created_at=NOON + timedelta(seconds=i))
    client = _client(people["member"])
    first = client.get(reverse("call_list"), {"source": "playground"})
    assert len(_listed(first)) == views.CALLS_PER_PAGE and first.context["has_next"]
    assert "source=playground&amp;page=2" in first.content.decode()
    second = client.get(reverse("call_list"), {"source": "playground", "page": 2})
    assert len(_listed(second)) == 3 and not second.context["has_next"]
    assert {r.pk for r in _listed(first)}.isdisjoint(r.pk for r in _listed(second))
    assert _listed(client.get(reverse("call_list"), {"page": "nonsense"})) == _listed(first)


def test_htmx_filtering_returns_only_the_results(model: Model, people: dict[str, User]) -> None:
    write(model, user=people["member"], created_at=NOON)
    response = _client(people["member"]).get(reverse("call_list"), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="results">') and "<html" not in html
    assert "local/fake-model-a" in html


def test_calls_without_a_price_say_so(model: Model, people: dict[str, User]) -> None:
    model.prices.all().delete()
    write(model, user=people["member"], created_at=NOON)
    assert "no price" in _client(people["member"]).get(reverse("call_list")).content.decode()


# -- a call's page -----------------------------------------------------------------------------


def test_a_call_page_shows_tokens_cost_per_class_and_timings(model: Model, people: dict[str, User]) -> None:
    call = write(model, user=people["member"], created_at=NOON, input_tokens=1000, cache_read_tokens=2000,
                 output_tokens=500, reasoning_tokens=200, latency_ms=2500, ttft_ms=500, attempts=2)
    response = _client(people["member"]).get(reverse("call_detail", args=[call.request_id]))
    assert response.status_code == 200
    assert response.context["breakdown"] == {"input": Decimal("0.003"), "cache_read": Decimal("0.0006"),
                                             "cache_write": Decimal(0), "output": Decimal("0.0075")}
    html = response.content.decode()
    for text in ("$0.003", "$0.0006", "$0.0075", "$0.0111", "2,000", "200 of them reasoning", "2,500 ms",
                 "500 ms", "250.0 tokens/s", "<dd>2</dd>", str(call.request_id), "from 2025-01-01 00:00"):
        assert text in html, text
    assert reverse("model_detail", args=[model.pk]) not in html  # the price's page is for admins
    admin_html = _client(people["admin"]).get(reverse("call_detail", args=[call.request_id])).content.decode()
    assert reverse("model_detail", args=[model.pk]) in admin_html


def test_a_failed_estimated_call_page_says_what_happened(model: Model, people: dict[str, User]) -> None:
    call = write(model, user=people["member"], created_at=NOON, status="error", error_kind="network",
                 error_message="The connection to local broke before the answer was complete.",
                 usage_estimated=True, ttft_ms=None)
    html = _client(people["member"]).get(reverse("call_detail", args=[call.request_id])).content.decode()
    assert "<code>network</code> The connection to local broke" in html
    assert "Estimated counts" in html


@pytest.mark.parametrize("role", ["member", "finance"])
def test_someone_elses_call_is_not_found(model: Model, people: dict[str, User], role: str) -> None:
    call = write(model, user=people["other"], created_at=NOON)
    assert _client(people[role]).get(reverse("call_detail", args=[call.request_id])).status_code == 404
    assert _client(people["admin"]).get(reverse("call_detail", args=[call.request_id])).status_code == 200
    assert _client(people["other"]).get(reverse("call_detail", args=[call.request_id])).status_code == 200


# -- CSV export --------------------------------------------------------------------------------


def test_the_export_streams_raw_records_with_plain_decimals_and_utc_times(model: Model,
                                                                          people: dict[str, User]) -> None:
    key = ApiKey.objects.create(name="ci", user=people["member"], prefix="asp_ci01", key_hash="2" * 64)
    call = write(model, user=people["member"], api_key=key, source="gateway",
                 created_at=datetime(2025, 5, 10, 12, 30, 15, 250000, tzinfo=UTC),
                 input_tokens=1, output_tokens=0, cache_read_tokens=0, reasoning_tokens=0, latency_ms=812,
                 ttft_ms=None, reported_cost=Decimal("0.0000001"))
    rows = _csv(_client(people["member"]).get(reverse("call_export")))
    assert rows == [{
        "request_id": str(call.request_id), "started_at_utc": "2025-05-10T12:30:15.250000Z",
        "user": "member@example.com", "api_key": "asp_ci01", "source": "gateway",
        "provider": "local", "model": "fake-model-a", "status": "ok", "error_kind": "", "error_message": "",
        "finish_reason": "", "input_tokens": "1", "cache_read_tokens": "0", "cache_write_tokens": "0",
        "output_tokens": "0", "reasoning_tokens": "0", "usage_estimated": "false",
        "cost_usd": "0.0000030000",  # 1 token at $3 per million: never 3E-6
        "price_effective_from_utc": "2025-01-01T00:00:00Z", "reported_cost_usd": "0.0000001000",
        "latency_ms": "812", "ttft_ms": "", "attempts": "1", "cached": "false",
    }]


def test_who_exports_what(model: Model, people: dict[str, User]) -> None:
    for name in ("member", "other", "finance"):
        write(model, user=people[name], created_at=NOON)
    url = reverse("call_export")

    def users(role: str, **query: object) -> list[str]:
        return sorted(row["user"] for row in _csv(_client(people[role]).get(url, query)))

    everyone = ["finance@example.com", "member@example.com", "other@example.com"]
    assert users("admin") == users("finance") == everyone
    assert users("member") == ["member@example.com"]
    assert users("member", user=people["other"].pk) == ["member@example.com"]  # no widening
    assert users("finance", user=people["other"].pk) == ["other@example.com"]


def test_the_export_follows_the_filters_and_range(model: Model, people: dict[str, User]) -> None:
    for day in range(1, 6):
        write(model, user=people["member"], created_at=datetime(2025, 5, day, 23, 59, tzinfo=UTC),
              status="error" if day == 3 else "ok")
    client = _client(people["admin"])
    rows = _csv(client.get(reverse("call_export"), {"date_from": "2025-05-02", "date_to": "2025-05-04"}))
    assert [row["started_at_utc"][:10] for row in rows] == ["2025-05-02", "2025-05-03", "2025-05-04"]
    assert [row["status"] for row in _csv(client.get(reverse("call_export"), {"status": "error"}))] == ["error"]
    bad = client.get(reverse("call_export"), {"date_from": "yesterday"})
    assert bad.status_code == 400 and b"Enter a valid date" in bad.content


def test_the_export_goes_in_batches_and_keeps_every_row_once(model: Model, people: dict[str, User],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "EXPORT_BATCH", 3)
    batches: list[int] = []
    batch = views._csv_batch

    def counting(*args: object) -> list:
        rows = batch(*args)
        batches.append(len(rows))
        return rows

    monkeypatch.setattr(views, "_csv_batch", counting)
    # Several calls in the very same microsecond: the batches must neither skip nor repeat them.
    written = [write(model, user=people["member"], created_at=NOON + timedelta(seconds=i // 3)) for i in range(8)]
    rows = _csv(_client(people["admin"]).get(reverse("call_export")))
    assert [row["request_id"] for row in rows] == [str(r.request_id) for r in written]
    assert batches == [3, 3, 2, 0]


def test_the_export_defuses_cells_that_spreadsheets_would_run(model: Model, people: dict[str, User]) -> None:
    write(model, user=people["member"], created_at=NOON, status="error", error_kind="server",
          error_message='=HYPERLINK("http://evil.example","click")')
    [row] = _csv(_client(people["member"]).get(reverse("call_export")))
    assert row["error_message"] == "'=HYPERLINK(\"http://evil.example\",\"click\")"
