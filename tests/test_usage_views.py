"""The calls list, a call's page and the CSV export: who sees what, the filters, and the CSV's content."""

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from accounts.models import User
from accounts.teams import team_create
from gateway.models import ApiKey
from providers.models import Model, Price, PriceTier, Provider
from tests.conftest import signed_in
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


def test_admins_and_finance_see_everyones_calls_and_members_their_own(model: Model, people: dict[str, User]) -> None:
    mine = write(model, user=people["member"], created_at=NOON)
    theirs = write(model, user=people["other"], created_at=NOON + timedelta(minutes=1))
    finance_own = write(model, user=people["finance"], created_at=NOON + timedelta(minutes=2))
    url = reverse("call_list")
    assert _listed(signed_in(people["admin"]).get(url)) == [finance_own, theirs, mine]  # newest first
    assert _listed(signed_in(people["member"]).get(url)) == [mine]
    assert _listed(signed_in(people["finance"]).get(url)) == [finance_own, theirs, mine]
    assert _listed(signed_in(people["finance"]).get(url, {"user": people["other"].pk})) == [theirs]
    # A member cannot widen the list by asking for someone else's calls.
    assert _listed(signed_in(people["member"]).get(url, {"user": people["other"].pk})) == [mine]


def test_the_list_filters(model: Model, people: dict[str, User]) -> None:
    other_provider = Provider.objects.create(name="other", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    other_model = Model.objects.create(provider=other_provider, name="m2")
    a = write(model, user=people["member"], source="playground", status="ok", created_at=NOON)
    b = write(model, user=people["other"], source="gateway", status="error", error_kind="auth",
              created_at=NOON + timedelta(days=1))
    c = write(other_model, user=people["member"], source="cli", status="cancelled",
              created_at=NOON + timedelta(days=2))
    client = signed_in(people["admin"])
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
    client = signed_in(people["member"])
    first = client.get(reverse("call_list"), {"source": "playground"})
    assert len(_listed(first)) == views.CALLS_PER_PAGE and first.context["has_next"]
    assert "source=playground&amp;page=2" in first.content.decode()
    second = client.get(reverse("call_list"), {"source": "playground", "page": 2})
    assert len(_listed(second)) == 3 and not second.context["has_next"]
    assert {r.pk for r in _listed(first)}.isdisjoint(r.pk for r in _listed(second))
    assert _listed(client.get(reverse("call_list"), {"page": "nonsense"})) == _listed(first)


def test_htmx_filtering_returns_only_the_results(model: Model, people: dict[str, User]) -> None:
    write(model, user=people["member"], created_at=NOON)
    response = signed_in(people["member"]).get(reverse("call_list"), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="results">') and "<html" not in html
    assert "<span>local/</span><wbr><span>fake-model-a</span>" in html


def test_unpriced_calls_are_marked_and_can_be_listed_alone(model: Model, people: dict[str, User]) -> None:
    priced = write(model, user=people["member"], created_at=NOON)
    new = Model.objects.create(provider=model.provider, name="no-price-yet")
    unpriced = write(new, user=people["member"], created_at=NOON + timedelta(minutes=1))
    # Nothing to price: no tokens. Not counted apart.
    empty = write(new, user=people["member"], created_at=NOON + timedelta(minutes=2), status="error",
                  error_kind="network", input_tokens=0, output_tokens=0)
    client = signed_in(people["member"])
    response = client.get(reverse("call_list"))
    assert _listed(response) == [empty, unpriced, priced]
    rows = response.content.decode().split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("<tr>")[1:]
    assert ['<span class="badge warn"' in row for row in rows] == [False, True, False]
    assert "$0.00</td>" in rows[0] and "$0.0006</td>" in rows[2]  # 100 in at $3, 20 out at $15 per 1M
    assert _listed(client.get(reverse("call_list"), {"unpriced": "true"})) == [unpriced]
    assert 'value="true">Without a price</option>' in response.content.decode()
    assert _listed(client.get(reverse("call_list"), {"unpriced": "maybe"})) == []  # not a choice: an error


def test_the_list_filters_by_api_key_and_members_pick_only_their_own(model: Model, people: dict[str, User]) -> None:
    mine = ApiKey.objects.create(name="mine", user=people["member"], prefix="asp_mi01", key_hash="3" * 64)
    theirs = ApiKey.objects.create(name="theirs", user=people["other"], prefix="asp_th02", key_hash="4" * 64)
    a = write(model, user=people["member"], api_key=mine, source="gateway", created_at=NOON)
    b = write(model, user=people["other"], api_key=theirs, source="gateway", created_at=NOON)
    write(model, user=people["member"], created_at=NOON)
    assert _listed(signed_in(people["admin"]).get(reverse("call_list"), {"api_key": theirs.pk})) == [b]
    member = signed_in(people["member"])
    response = member.get(reverse("call_list"), {"api_key": mine.pk})
    assert _listed(response) == [a]
    assert "asp_th02" not in response.content.decode() and "theirs" not in response.content.decode()
    assert _listed(member.get(reverse("call_list"), {"api_key": theirs.pk})) == []  # not theirs to pick


# -- a call's page -----------------------------------------------------------------------------


def test_a_call_page_shows_tokens_cost_per_class_and_timings(model: Model, people: dict[str, User]) -> None:
    call = write(model, user=people["member"], created_at=NOON, input_tokens=1000, cache_read_tokens=2000,
                 output_tokens=500, reasoning_tokens=200, latency_ms=2500, ttft_ms=500, attempts=2)
    response = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id]))
    assert response.status_code == 200
    assert _classes(response) == [
        ("Input (uncached)", 1000, Decimal("3"), "", Decimal("0.003")),
        ("Cache read", 2000, Decimal("0.3"), "", Decimal("0.0006")),
        ("Cache write, kept 5 minutes", 0, Decimal("3"), "the input price", Decimal(0)),
        ("Cache write, kept 1 hour", 0, Decimal("3"), "the input price", Decimal(0)),
        ("Output, reasoning included", 500, Decimal("15"), "", Decimal("0.0075")),
    ]
    html = response.content.decode()
    for text in ("$0.003", "$0.0006", "$0.0075", "<b>$0.0111</b> <small class=\"muted\">aspweb's computation",
                 "2,000", "200 of them reasoning", "2,500 ms", "500 ms", '<dd id="call-speed">250 tok/s</dd>',
                 "<dd>2</dd>",
                 str(call.request_id), "from 2025-01-01 00:00"):
        assert text in html, text
    for text in ('id="tier"', 'id="cost-comparison"', 'id="unpriced-notice"'):
        assert text not in html, text
    assert reverse("model_detail", args=[model.pk]) not in html  # the price's page is for admins
    admin_html = signed_in(people["admin"]).get(reverse("call_detail", args=[call.request_id])).content.decode()
    assert reverse("model_detail", args=[model.pk]) in admin_html


def test_a_failed_estimated_call_page_says_what_happened(model: Model, people: dict[str, User]) -> None:
    call = write(model, user=people["member"], created_at=NOON, status="error", error_kind="network",
                 error_message="The connection to local broke before the answer was complete.",
                 usage_estimated=True, ttft_ms=None)
    html = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id])).content.decode()
    assert "<strong>Provider unreachable:</strong> The connection to local broke" in html
    assert "Estimated counts" in html
    assert 'id="call-upstream-id"' not in html  # the provider gave no id: nothing to show


def test_a_call_page_shows_the_providers_own_id_for_its_support(model: Model, people: dict[str, User]) -> None:
    call = write(model, user=people["member"], created_at=NOON, upstream_id="gen-1733456789-AbCdEf<b>")
    html = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id])).content.decode()
    assert "<dt>Provider's id</dt>" in html
    assert '<dd id="call-upstream-id"><code>gen-1733456789-AbCdEf&lt;b&gt;</code>' in html


def test_the_providers_id_finds_its_call(model: Model, people: dict[str, User]) -> None:
    call = write(model, user=people["member"], created_at=NOON, upstream_id="gen-1733456789-AbCdEf")
    write(model, user=people["member"], created_at=NOON, upstream_id="gen-1733456789-Other1")
    member = signed_in(people["member"])
    assert _listed(member.get(reverse("call_list"), {"q": "gen-1733456789-AbCdEf"})) == [call]
    assert _listed(member.get(reverse("call_list"), {"q": "gen-1733456789"})) == []  # the whole id, not a part


def _classes(response) -> list[tuple]:
    """A call page's rows per token class: (label, tokens, rate per 1M, what it fell back to, cost)."""
    assert response.status_code == 200
    return [(c.label, c.tokens, c.rate, c.fallback, c.cost) for c in response.context["classes"]]


def _tiered(model: Model) -> None:
    price = Price.objects.create(model=model, effective_from=datetime(2025, 3, 1, tzinfo=UTC), input=Decimal("3"),
                                 output=Decimal("15"), cache_read=Decimal("0.3"), cache_write=Decimal("3.75"),
                                 cache_write_1h=Decimal("6"))
    PriceTier.objects.create(price=price, above=200_000, input=Decimal("6"), output=Decimal("22.5"),
                             cache_read=Decimal("0.6"), cache_write=Decimal("7.5"), cache_write_1h=Decimal("12"))


def test_a_call_whose_prompt_selects_a_tier_shows_the_tiers_rates(model: Model, people: dict[str, User]) -> None:
    _tiered(model)
    # 150,000 + 40,000 + 10,000 + 5,000 = 205,000 prompt tokens: above 200,000, so every token at the tier.
    call = write(model, user=people["member"], created_at=NOON, input_tokens=150_000, cache_read_tokens=40_000,
                 cache_write_tokens=10_000, cache_write_1h_tokens=5_000, output_tokens=2_000)
    response = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id]))
    assert _classes(response) == [
        ("Input (uncached)", 150_000, Decimal("6"), "", Decimal("0.9")),
        ("Cache read", 40_000, Decimal("0.6"), "", Decimal("0.024")),
        ("Cache write, kept 5 minutes", 10_000, Decimal("7.5"), "", Decimal("0.075")),
        ("Cache write, kept 1 hour", 5_000, Decimal("12"), "", Decimal("0.06")),
        ("Output, reasoning included", 2_000, Decimal("22.5"), "", Decimal("0.045")),
    ]
    html = response.content.decode()
    assert "long-context tier: above 200,000 prompt tokens. This call's prompt had 205,000" in html
    for text in ("$6.00", "$0.60", "$7.50", "$12.00", "$22.50", "$0.90", "$0.024", "$0.075", "$0.06", "$0.045",
                 "<b>$1.104</b>", "205,000", "207,000"):
        assert text in html, text


def test_a_prompt_at_the_threshold_pays_the_base_rates(model: Model, people: dict[str, User]) -> None:
    _tiered(model)
    call = write(model, user=people["member"], created_at=NOON, input_tokens=145_000, cache_read_tokens=40_000,
                 cache_write_tokens=10_000, cache_write_1h_tokens=5_000, output_tokens=2_000)
    response = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id]))
    assert [(rate, cost) for _, _, rate, _, cost in _classes(response)] == [
        (Decimal("3"), Decimal("0.435")), (Decimal("0.3"), Decimal("0.012")), (Decimal("3.75"), Decimal("0.0375")),
        (Decimal("6"), Decimal("0.03")), (Decimal("15"), Decimal("0.03"))]
    html = response.content.decode()
    assert "<b>$0.5445</b>" in html and 'id="tier"' not in html


def test_a_call_with_1_hour_cache_writes_prices_them_apart(model: Model, people: dict[str, User]) -> None:
    Price.objects.create(model=model, effective_from=datetime(2025, 3, 1, tzinfo=UTC), input=Decimal("3"),
                         output=Decimal("15"), cache_read=Decimal("0.3"), cache_write=Decimal("3.75"))
    call = write(model, user=people["member"], created_at=NOON, input_tokens=1000, cache_write_tokens=2000,
                 cache_write_1h_tokens=4000, output_tokens=100)
    response = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id]))
    # No 1-hour price in this version: those writes cost the 5-minute write price, and the page says so.
    assert _classes(response)[2:4] == [
        ("Cache write, kept 5 minutes", 2000, Decimal("3.75"), "", Decimal("0.0075")),
        ("Cache write, kept 1 hour", 4000, Decimal("3.75"), "the 5-minute write price", Decimal("0.015")),
    ]
    html = response.content.decode()
    assert "<td>Cache write, kept 1 hour</td><td class=\"num\">4,000</td>" in html
    assert "$3.75 <small class=\"muted\">(the 5-minute write price)</small>" in html
    # 1,000 x $3 + 2,000 x $3.75 + 4,000 x $3.75 + 100 x $15, per million
    assert "<b>$0.027</b>" in html

    Price.objects.create(model=model, effective_from=datetime(2025, 4, 1, tzinfo=UTC), input=Decimal("3"),
                         output=Decimal("15"), cache_write=Decimal("3.75"), cache_write_1h=Decimal("6"))
    call = write(model, user=people["member"], created_at=NOON, input_tokens=1000, cache_write_tokens=2000,
                 cache_write_1h_tokens=4000, output_tokens=100)
    response = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id]))
    assert _classes(response)[3] == ("Cache write, kept 1 hour", 4000, Decimal("6"), "", Decimal("0.024"))
    assert "<b>$0.036</b>" in response.content.decode()


@pytest.mark.parametrize("kind", ["openrouter", "claude_cli"])
def test_a_billing_partys_reported_charge_is_the_cost_beside_aspwebs_computation(
        kind: str, people: dict[str, User]) -> None:
    provider = Provider.objects.create(name="billed", kind=kind, base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="routed")
    Price.objects.create(model=model, effective_from=datetime(2025, 1, 1, tzinfo=UTC), input=Decimal("3"),
                         output=Decimal("15"))
    # Computed: 1,000 x $3 + 500 x $15 per million = $0.0105; the provider charged $0.0099.
    call = write(model, user=people["member"], created_at=NOON, input_tokens=1000, output_tokens=500,
                 reported_cost=Decimal("0.0099"))
    response = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id]))
    assert response.context["reported_is_cost"] is True
    html = response.content.decode()
    assert '<time datetime="2025-05-10T12:00:00+00:00">2025-05-10 12:00:00 UTC</time>' in html
    assert '<b>$0.0099</b> <small class="muted">reported by billed</small>' in html
    comparison = html.split('id="cost-comparison">', 1)[1].split("</table>", 1)[0]
    assert ("<th class=\"num\">Reported by billed</th><th class=\"num\">aspweb's computation</th>"
            "<th class=\"num\">Reported minus computed</th>") in comparison
    assert '$0.0099 <span class="badge">the call\'s cost</span></td>' in comparison
    assert '<td class="num">$0.0105</td>' in comparison  # aspweb's, not the cost here
    assert '<td class="num">-$0.0006</td>' in comparison
    assert "billed is the billing party" in html

    # Without a price, the reported charge still prices the call: it is not unpriced.
    new = Model.objects.create(provider=provider, name="no-price-yet")
    call = write(new, user=people["member"], created_at=NOON, input_tokens=1000, output_tokens=500,
                 reported_cost=Decimal("0.0099"))
    html = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id])).content.decode()
    comparison = html.split('id="cost-comparison">', 1)[1].split("</table>", 1)[0]
    assert '<span class="warn">no price</span>' in comparison and '<td class="num">—</td>' in comparison
    assert "the model has no price in aspweb to compare it with" in html
    assert '<b>$0.0099</b> <small class="muted">reported by billed</small>' in html
    assert 'id="unpriced-notice"' not in html


def test_a_charge_reported_by_a_provider_that_does_not_bill_is_shown_but_not_the_cost(
        model: Model, people: dict[str, User]) -> None:
    call = write(model, user=people["member"], created_at=NOON, input_tokens=1000, output_tokens=500,
                 reported_cost=Decimal("0.02"))
    response = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id]))
    assert response.context["reported_is_cost"] is False
    html = response.content.decode()
    assert "<b>$0.0105</b> <small class=\"muted\">aspweb's computation" in html
    comparison = html.split('id="cost-comparison">', 1)[1].split("</table>", 1)[0]
    assert '<td class="num">$0.02</td>' in comparison
    assert '$0.0105 <span class="badge">the call\'s cost</span>' in comparison
    assert '<td class="num">+$0.0095</td>' in comparison


def test_an_unpriced_call_says_it_counts_nothing_and_is_listed_apart(model: Model, people: dict[str, User]) -> None:
    model.prices.all().delete()
    call = write(model, user=people["member"], created_at=NOON, input_tokens=1000, output_tokens=500)
    response = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id]))
    assert _classes(response) == [
        ("Input (uncached)", 1000, None, "", None), ("Cache read", 0, None, "", None),
        ("Cache write, kept 5 minutes", 0, None, "", None), ("Cache write, kept 1 hour", 0, None, "", None),
        ("Output, reasoning included", 500, None, "", None)]
    html = response.content.decode()
    assert '<dd id="call-cost"><span class="badge warn">unpriced</span> counted as $0.00</dd>' in html
    notice = html.split('id="unpriced-notice">', 1)[1].split("</p>", 1)[0]
    assert "No price was set for local/fake-model-a when this call was made" in notice
    assert "counts $0 and is listed apart" in notice
    model_page = reverse("model_detail", args=[model.pk])
    assert model_page not in html  # the model's page is for admins
    admin_html = signed_in(people["admin"]).get(reverse("call_detail", args=[call.request_id])).content.decode()
    assert f'Set a price on the <a href="{model_page}">model\'s page</a>, then re-price the range' in admin_html


def test_someone_elses_call_is_not_found_by_a_member(model: Model, people: dict[str, User]) -> None:
    call = write(model, user=people["other"], created_at=NOON)
    assert signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id])).status_code == 404
    assert signed_in(people["other"]).get(reverse("call_detail", args=[call.request_id])).status_code == 200


@pytest.mark.parametrize("role", ["admin", "finance"])
def test_admins_and_finance_open_every_call_they_list(model: Model, people: dict[str, User], role: str) -> None:
    calls = [write(model, user=people[who], created_at=NOON + timedelta(minutes=n))
             for n, who in enumerate(("other", "member", "admin", "finance"))]
    calls.append(write(model, user=None, source="cli", created_at=NOON + timedelta(minutes=9)))
    client = signed_in(people[role])
    listed = _listed(client.get(reverse("call_list")))
    assert {c.pk for c in listed} == {c.pk for c in calls}
    for call in listed:
        assert client.get(reverse("call_detail", args=[call.request_id])).status_code == 200


# -- CSV export --------------------------------------------------------------------------------


def test_the_export_streams_raw_records_with_plain_decimals_and_utc_times(model: Model,
                                                                          people: dict[str, User]) -> None:
    key = ApiKey.objects.create(name="ci", user=people["member"], prefix="asp_ci01", key_hash="2" * 64)
    team = team_create(name="Research, EU", members=[people["member"]])
    call = write(model, user=people["member"], api_key=key, source="gateway", team_id=team.pk,
                 tags=("nightly", "search"), end_user="cust-7",
                 created_at=datetime(2025, 5, 10, 12, 30, 15, 250000, tzinfo=UTC),
                 input_tokens=1, output_tokens=0, cache_read_tokens=0, reasoning_tokens=0, latency_ms=812,
                 ttft_ms=None, reported_cost=Decimal("0.0000001"), upstream_id="chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT")
    rows = _csv(signed_in(people["member"]).get(reverse("call_export")))
    assert rows == [{
        "request_id": str(call.request_id), "started_at_utc": "2025-05-10T12:30:15.250000Z",
        "user": "member@example.com", "api_key": "asp_ci01", "team": "Research, EU", "tags": "nightly,search",
        "end_user": "cust-7", "source": "gateway",
        "provider": "local", "model": "fake-model-a", "status": "ok", "error_kind": "", "error_message": "",
        "finish_reason": "", "input_tokens": "1", "cache_read_tokens": "0", "cache_write_tokens": "0",
        "cache_write_1h_tokens": "0", "output_tokens": "0", "reasoning_tokens": "0", "usage_estimated": "false",
        "cost_usd": "0.0000030000",  # 1 token at $3 per million: never 3E-6
        "computed_cost_usd": "0.0000030000", "unpriced": "false",
        "price_effective_from_utc": "2025-01-01T00:00:00Z", "reported_cost_usd": "0.0000001000",
        "latency_ms": "812", "ttft_ms": "", "attempts": "1", "cached": "false",
        "upstream_id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    }]


def test_the_export_names_its_columns() -> None:
    assert [column for column, _ in views.CSV_COLUMNS] == [
        "request_id", "started_at_utc", "user", "api_key", "team", "tags", "end_user", "source", "provider", "model",
        "status", "error_kind",
        "error_message", "finish_reason", "input_tokens", "cache_read_tokens", "cache_write_tokens",
        "cache_write_1h_tokens", "output_tokens", "reasoning_tokens", "usage_estimated", "cost_usd",
        "computed_cost_usd", "unpriced", "price_effective_from_utc", "reported_cost_usd", "latency_ms", "ttft_ms",
        "attempts", "cached", "upstream_id"]


def test_the_export_keeps_1_hour_writes_the_computed_cost_and_unpriced_calls(model: Model,
                                                                             people: dict[str, User]) -> None:
    router = Provider.objects.create(name="router", kind="openrouter", base_url="http://127.0.0.1:9/v1")
    routed = Model.objects.create(provider=router, name="routed")
    Price.objects.create(model=routed, effective_from=datetime(2025, 1, 1, tzinfo=UTC), input=Decimal("3"),
                         output=Decimal("15"), cache_write=Decimal("3.75"), cache_write_1h=Decimal("6"))
    write(routed, user=people["member"], created_at=NOON, input_tokens=1000, cache_write_tokens=2000,
          cache_write_1h_tokens=4000, output_tokens=100, reported_cost=Decimal("0.04"))
    unpriced = Model.objects.create(provider=model.provider, name="no-price-yet")
    write(unpriced, user=people["member"], created_at=NOON + timedelta(seconds=1), input_tokens=700,
          output_tokens=30)
    client = signed_in(people["member"])
    billed, free = _csv(client.get(reverse("call_export")))
    assert (billed["cache_write_tokens"], billed["cache_write_1h_tokens"]) == ("2000", "4000")
    # Computed: 1,000 x $3 + 2,000 x $3.75 + 4,000 x $6 + 100 x $15 per million = $0.036; OpenRouter charged $0.04.
    assert (billed["cost_usd"], billed["computed_cost_usd"], billed["reported_cost_usd"], billed["unpriced"]) == (
        "0.0400000000", "0.0360000000", "0.0400000000", "false")
    assert (free["cost_usd"], free["computed_cost_usd"], free["price_effective_from_utc"], free["unpriced"]) == (
        "0.0000000000", "", "", "true")
    only = _csv(client.get(reverse("call_export"), {"unpriced": "true"}))
    assert [row["model"] for row in only] == ["no-price-yet"]


def test_who_exports_what(model: Model, people: dict[str, User]) -> None:
    for name in ("member", "other", "finance"):
        write(model, user=people[name], created_at=NOON)
    url = reverse("call_export")

    def users(role: str, **query: object) -> list[str]:
        return sorted(row["user"] for row in _csv(signed_in(people[role]).get(url, query)))

    everyone = ["finance@example.com", "member@example.com", "other@example.com"]
    assert users("admin") == users("finance") == everyone
    assert users("member") == ["member@example.com"]
    assert users("member", user=people["other"].pk) == ["member@example.com"]  # no widening
    assert users("finance", user=people["other"].pk) == ["other@example.com"]


def test_the_export_follows_the_filters_and_range(model: Model, people: dict[str, User]) -> None:
    for day in range(1, 6):
        write(model, user=people["member"], created_at=datetime(2025, 5, day, 23, 59, tzinfo=UTC),
              status="error" if day == 3 else "ok")
    client = signed_in(people["admin"])
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
    rows = _csv(signed_in(people["admin"]).get(reverse("call_export")))
    assert [row["request_id"] for row in rows] == [str(r.request_id) for r in written]
    assert batches == [3, 3, 2, 0]


def test_the_export_defuses_cells_that_spreadsheets_would_run(model: Model, people: dict[str, User]) -> None:
    write(model, user=people["member"], created_at=NOON, status="error", error_kind="server",
          error_message='=HYPERLINK("http://evil.example","click")')
    [row] = _csv(signed_in(people["member"]).get(reverse("call_export")))
    assert row["error_message"] == "'=HYPERLINK(\"http://evil.example\",\"click\")"


def test_a_response_cache_hit_says_it_called_no_provider_rather_than_that_it_has_no_price(
        model: Model, people: dict[str, User]) -> None:
    call = write(model, user=people["member"], created_at=NOON, cached=True, input_tokens=1000, output_tokens=50)
    html = signed_in(people["member"]).get(reverse("call_detail", args=[call.request_id])).content.decode()
    assert "answered from the gateway's cache: no provider was called" in html
    assert "not priced: no provider was called" in html and '<span class="warn">no price</span>' not in html
