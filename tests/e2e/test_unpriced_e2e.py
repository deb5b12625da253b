"""Calls without a price in real Chromium: the cost dashboard counts them beside the cost, the notice comes and
goes as the range changes over HTMX, and its link leads an admin to exactly those calls (a page of its own, not
swapped into the dashboard) and on to a call's page that says why it counts $0; finance lists them the same way
and downloads them as CSV. A regression here would be silent: the cost would just look complete."""

import csv
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import User
from providers.models import Model, Price, Provider
from usage.models import UsageRecord
from usage.services import usage_record_create


def _seed(make_user: Callable[..., User]) -> list[UsageRecord]:
    """Priced calls today, and three calls ten days ago to a model nobody priced yet (one without tokens, which
    is nothing to price). Returns the unpriced ones."""
    provider = Provider.objects.create(name="labs", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    priced = Model.objects.create(provider=provider, name="priced-model")
    Price.objects.create(model=priced, effective_from=datetime(2024, 1, 1, tzinfo=UTC), input=Decimal("2"),
                         output=Decimal("8"))
    unpriced = Model.objects.create(provider=provider, name="new-model")
    ana, ben = make_user("member", email="ana@example.com"), make_user("member", email="ben@example.com")
    now = timezone.now()
    for n in range(4):
        usage_record_create(provider=provider, model=priced, source="playground", status="ok", user=ana,
                            created_at=now - timedelta(minutes=5 + n), input_tokens=1000, output_tokens=500)
    records = [
        usage_record_create(provider=provider, model=unpriced, source="playground", status="ok", user=user,
                            created_at=now - timedelta(days=10, minutes=n), input_tokens=tokens, output_tokens=0)
        for n, (user, tokens) in enumerate([(ana, 30_000), (ben, 18_000)])
    ]
    usage_record_create(provider=provider, model=unpriced, source="playground", status="error", user=ben,
                        error_kind="network", created_at=now - timedelta(days=10, minutes=9))
    return records


def test_the_dashboard_counts_unpriced_calls_and_leads_an_admin_to_them(
        page: Page, sign_in: Callable[..., Page], make_user: Callable[..., User]) -> None:
    unpriced = _seed(make_user)
    sign_in(make_user("admin"))
    page.goto("/costs/")
    notice = page.locator("#unpriced-notice")
    expect(notice).to_contain_text("2 calls without a price, 48,000 tokens, not in the cost")
    # 4 calls x (1,000 x $2 + 500 x $8) per million: the unpriced calls add nothing to it.
    expect(page.locator("dl.totals div").first).to_contain_text("$0.024")

    presets = page.get_by_role("navigation", name="Date range")
    presets.get_by_role("link", name="7 days").click()
    expect(presets.locator("[aria-current]")).to_have_text("7 days")
    expect(notice).to_have_count(0)
    presets.get_by_role("link", name="30 days").click()
    expect(notice).to_be_visible()

    notice.get_by_role("link", name="2 calls without a price").click()
    expect(page).to_have_url(re.compile(r"/calls/\?unpriced=true&date_from=\d{4}-\d\d-\d\d&date_to="))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Calls")
    expect(page.locator("#dashboard")).to_have_count(0)
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(2)
    for n in range(2):
        expect(rows.nth(n).locator(".badge.warn")).to_have_text("unpriced")
    expect(page.get_by_label("Price")).to_have_value("true")
    hrefs = {rows.nth(n).get_by_role("link").get_attribute("href") for n in range(2)}
    assert hrefs == {f"/calls/{r.request_id}/" for r in unpriced}

    rows.first.get_by_role("link").click()
    expect(page.locator("#call-cost")).to_have_text("unpriced counted as $0.00")
    expect(page.locator("#unpriced-notice")).to_contain_text("No price was set for labs/new-model")
    page.locator("#unpriced-notice").get_by_role("link", name="model's page").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("new-model")


def test_finance_lists_everyones_unpriced_calls_and_downloads_them(
        page: Page, sign_in: Callable[..., Page], make_user: Callable[..., User]) -> None:
    unpriced = _seed(make_user)
    sign_in(make_user("finance"))
    page.goto("/costs/")
    notice = page.locator("#unpriced-notice")
    expect(notice).to_contain_text("2 calls without a price, 48,000 tokens, not in the cost")
    notice.get_by_role("link", name="2 calls without a price").click()
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="ana@example.com")).to_have_count(1)
    expect(rows.filter(has_text="ben@example.com")).to_have_count(1)
    # Someone else's call opens for Finance, as it lists.
    rows.filter(has_text="ben@example.com").get_by_role("link").click()
    expect(page.locator("#call-cost")).to_have_text("unpriced counted as $0.00")
    page.go_back()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
    assert sorted(row["request_id"] for row in rows) == sorted(str(r.request_id) for r in unpriced)
    assert {(row["user"], row["unpriced"], row["cost_usd"], row["computed_cost_usd"]) for row in rows} == {
        ("ana@example.com", "true", "0.0000000000", ""), ("ben@example.com", "true", "0.0000000000", "")}
