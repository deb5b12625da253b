"""The calls list, a call's page and the dashboard's way to them, in real Chromium: the filter bars keep each label
beside its input at a wide and a narrow window, a cache hit reads "cached · $0", speed and time to first token
read the same on the list, the call's page and the playground, a playground call leads back to its conversation,
and a row of the dashboard opens exactly its calls. Regressions here would be silent: a page that still loads,
saying something absurd."""

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import User
from gateway.models import ApiKey
from playground.models import Answer, Conversation, Turn
from providers.models import Model, Price, Provider
from usage.models import UsageRecord
from usage.services import usage_record_create


def _seed(make_user: Callable[..., User]) -> dict[str, object]:
    provider = Provider.objects.create(name="labs", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="fast-model")
    Price.objects.create(model=model, effective_from=datetime(2024, 1, 1, tzinfo=UTC), input=Decimal("2"),
                         output=Decimal("8"))
    ana, ben = make_user("member", email="ana@example.com"), make_user("member", email="ben@example.com")
    key = ApiKey.objects.create(name="support-bot", user=ben, prefix="asp_sb01", key_hash="1" * 64)
    now = timezone.now() - timedelta(minutes=30)
    common = {"provider": provider, "model": model, "status": "ok", "input_tokens": 1000}
    # 26 tokens in one 1 ms burst after the first token: no speed to speak of.
    burst = usage_record_create(**common, source="playground", user=ana, created_at=now, output_tokens=26,
                                latency_ms=1201, ttft_ms=1200)
    steady = usage_record_create(**common, source="playground", user=ana, created_at=now + timedelta(minutes=1),
                                 output_tokens=300, latency_ms=1700, ttft_ms=500)
    hit = usage_record_create(**common, source="gateway", user=ben, api_key=key, cached=True, attempts=0,
                              created_at=now + timedelta(minutes=2), output_tokens=40)
    for n in range(3):
        usage_record_create(**common, source="gateway", user=ben, api_key=key, output_tokens=100, latency_ms=900,
                            ttft_ms=300, created_at=now - timedelta(days=2, minutes=n))
    conversation = Conversation.objects.create(user=ana, title="Speed check")
    answers = {}
    for lane, record in enumerate((burst, steady)):
        turn = Turn.objects.create(conversation=conversation, prompt=f"Question {lane}")
        answers[record.pk] = Answer.objects.create(
            turn=turn, model=model, model_address="labs/fast-model", status="ok", content="An answer",
            input_tokens=1000, output_tokens=record.output_tokens, latency_ms=record.latency_ms,
            ttft_ms=record.ttft_ms, request_id=record.request_id)
    return {"ana": ana, "ben": ben, "burst": burst, "steady": steady, "hit": hit, "conversation": conversation,
            "answers": answers}


def _assert_pairs_hold_together(page: Page) -> None:
    """Every label of the filter bar sits on the same line as its input, just before it."""
    pairs = page.locator(".filter-pair")
    assert pairs.count() >= 3
    for n in range(pairs.count()):
        pair = pairs.nth(n)
        first, second = pair.locator(":scope > *").nth(0), pair.locator(":scope > *").nth(1)
        a, b = first.bounding_box(), second.bounding_box()
        assert a and b, pair.inner_html()
        middle_a, middle_b = a["y"] + a["height"] / 2, b["y"] + b["height"] / 2
        assert abs(middle_a - middle_b) < 6, f"{pair.inner_text()!r} breaks across lines"
        assert a["x"] + a["width"] <= b["x"] + 1, f"{pair.inner_text()!r}: its label is not before its input"
        width = page.viewport_size["width"]
        assert b["x"] + b["width"] <= width, f"{pair.inner_text()!r} runs off the window"


@pytest.mark.parametrize("width", [1280, 800])
def test_filter_bars_keep_each_label_with_its_input(page: Page, sign_in: Callable[..., Page],
                                                   make_user: Callable[..., User], width: int) -> None:
    _seed(make_user)
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(make_user("admin"))
    for path in ("/calls/", "/costs/", "/usage/"):
        page.goto(path)
        _assert_pairs_hold_together(page)


def test_every_input_of_the_filter_bar_is_drawn_alike(page: Page, sign_in: Callable[..., Page],
                                                     make_user: Callable[..., User]) -> None:
    """The days and the search box have the bar's border and type, not the browser's small default input."""
    _seed(make_user)
    sign_in(make_user("admin"))
    page.goto("/calls/")
    look = "e => [getComputedStyle(e).borderTopLeftRadius, getComputedStyle(e).fontSize]"
    expected = page.locator("form.form input[name=tag]").evaluate(look)
    assert expected[0] == "6px"
    for name in ("date_from", "date_to", "q"):
        field = page.locator(f"form.form input[name={name}]")
        assert field.evaluate(look) == expected, f"the {name} input is drawn apart from the others"


@pytest.mark.parametrize("width", [1280, 1024])
def test_a_model_address_breaks_only_after_its_provider(page: Page, sign_in: Callable[..., Page],
                                                         make_user: Callable[..., User], width: int) -> None:
    seed = _seed(make_user)
    provider = Provider.objects.create(name="fake-oai", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="fake-large-2025-04-14")
    usage_record_create(provider=provider, model=model, status="ok", source="gateway", user=seed["ben"],
                        input_tokens=87, output_tokens=48, latency_ms=5, ttft_ms=5)
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(make_user("admin"))
    page.goto("/calls/")
    names = page.locator("#results td.address span")
    assert names.count() >= 2
    for n in range(names.count()):
        name = names.nth(n)
        assert name.evaluate("e => e.getClientRects().length") == 1, f"{name.inner_text()!r} breaks across lines"


def test_the_list_the_call_page_and_the_playground_read_alike(page: Page, sign_in: Callable[..., Page],
                                                              make_user: Callable[..., User]) -> None:
    seed = _seed(make_user)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(seed["ana"])
    page.goto("/calls/")
    headings = page.locator("#results thead th").all_inner_texts()
    assert headings[-3:] == ["LATENCY", "TTFT", "SPEED"]
    burst = page.locator("#results tbody tr").filter(has=page.locator(f'a[href="/calls/{seed["burst"].request_id}/"]'))
    steady = page.locator("#results tbody tr").filter(
        has=page.locator(f'a[href="/calls/{seed["steady"].request_id}/"]'))
    expect(burst.locator("td").nth(-1)).to_have_text("—")
    expect(burst.locator("td").nth(-2)).to_have_text("1,200\u00a0ms")
    expect(steady.locator("td").nth(-1)).to_have_text("250 tok/s")
    started = steady.locator("time").inner_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", started), started

    steady.get_by_role("link").click()
    expect(page.locator("#call-speed")).to_have_text("250 tok/s")
    expect(page.get_by_role("heading", level=1)).to_contain_text(started)
    page.get_by_role("link", name="open the conversation").click()
    expect(page).to_have_url(re.compile(rf"/playground/c/{seed['conversation'].pk}/#turn-\d+$"))
    panes = page.locator("article.pane")
    expect(panes).to_have_count(2)
    speeds = page.locator("dl.metrics div").filter(has=page.locator("dt", has_text="Speed")).locator("dd")
    expect(speeds).to_have_text(["—", "250 tok/s"])


def test_a_cache_hit_reads_cached_at_no_cost(page: Page, sign_in: Callable[..., Page],
                                             make_user: Callable[..., User]) -> None:
    seed = _seed(make_user)
    sign_in(seed["ben"])
    page.goto("/calls/?source=gateway")
    row = page.locator("#results tbody tr").filter(has=page.locator(f'a[href="/calls/{seed["hit"].request_id}/"]'))
    expect(row.locator("td").nth(5)).to_have_text("cached · $0")
    expect(row).not_to_contain_text("no price")
    row.get_by_role("link").click()
    expect(page.locator("#call-cost")).to_contain_text("answered from the gateway's cache")


def test_a_dashboard_row_opens_its_calls(page: Page, sign_in: Callable[..., Page],
                                         make_user: Callable[..., User]) -> None:
    seed = _seed(make_user)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(make_user("finance"))
    page.goto("/costs/?group=user")
    groups = page.locator("section:has(#groups-h)")
    expect(groups.get_by_role("heading", level=2)).to_contain_text("By user")
    expect(page.locator("#requests-h + svg.chart rect.requests").first).to_be_attached()
    expect(page.locator("#latency-h + svg.chart rect.s0").first).to_be_attached()
    ben = groups.locator("tbody tr").filter(has_text="ben@example.com")
    ben.get_by_role("link", name="Calls of ben@example.com").click()
    expect(page).to_have_url(re.compile(rf"/calls/\?date_from=[\d-]+&date_to=[\d-]+&user={seed['ben'].pk}$"))
    expect(page.get_by_label("User", exact=True)).to_have_value(str(seed["ben"].pk))
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(UsageRecord.objects.filter(user=seed["ben"]).count())
    expect(rows.filter(has_text="ana@example.com")).to_have_count(0)
    # Finance opens another person's call from the list.
    rows.first.get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("labs/fast-model")
    expect(page.locator("dl.facts").first).to_contain_text("ben@example.com")
