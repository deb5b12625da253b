"""The cost dashboard in real Chromium: finance opens it, changes the range (a preset, then a custom day),
drills into a provider, and downloads the CSV of that view; the numbers on screen and in the file are the
raw records' sums."""

import csv
import io
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.db.models import Sum
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import User
from aspweb.money import money
from gateway.models import ApiKey
from providers.models import Model, Price, Provider
from tests.e2e.conftest import readme_screenshot
from usage import dashboards
from usage.models import UsageRecord
from usage.services import day_start, usage_record_create

CATALOG = {  # provider -> kind, models with (input, output) prices per 1M tokens
    "claude": ("anthropic", {"claude-sonnet-4-5": ("3", "15"), "claude-haiku-4-5": ("1", "5")}),
    "openai": ("openai", {"gpt-4.1": ("2", "8"), "gpt-4.1-mini": ("0.4", "1.6")}),
    "groq": ("groq", {"llama-3.3-70b": ("0.59", "0.79")}),
}


def _seed(make_user: Callable[..., User]) -> list[Model]:
    models = []
    for name, (kind, catalog) in CATALOG.items():
        provider = Provider.objects.create(name=name, kind=kind, base_url="http://127.0.0.1:9/v1")
        for model_name, (inp, out) in catalog.items():
            model = Model.objects.create(provider=provider, name=model_name)
            Price.objects.create(model=model, effective_from=datetime(2024, 1, 1, tzinfo=UTC), input=Decimal(inp),
                                 output=Decimal(out), cache_read=Decimal(inp) / 10)
            models.append(model)
    people = [make_user("member", email=f"{name}@example.com") for name in ("ana", "ben", "chen", "dara")]
    keys = [ApiKey.objects.create(name="support-bot", user=people[0], prefix="asp_sb01", key_hash="1" * 64),
            ApiKey.objects.create(name="nightly-evals", user=people[2], prefix="asp_ne02", key_hash="2" * 64)]
    rng = random.Random(4)
    now = timezone.now()
    for day in range(40):
        for _ in range(6 + day % 7):
            person = rng.choice(people)
            key = next((k for k in keys if k.user == person), None) if rng.random() < 0.6 else None
            status = rng.choice(["ok"] * 12 + ["error", "cancelled"])
            usage_record_create(
                provider=(model := rng.choice(models)).provider, model=model, user=person, api_key=key,
                source="gateway" if key else rng.choice(["playground", "cli"]), status=status,
                created_at=now - timedelta(days=day, minutes=rng.randint(0, 600)),
                input_tokens=rng.randint(500, 40_000), cache_read_tokens=rng.choice([0, rng.randint(0, 60_000)]),
                output_tokens=rng.randint(100, 4000), latency_ms=rng.randint(400, 12_000),
                ttft_ms=rng.randint(150, 1200), error_kind="rate_limit" if status == "error" else "",
            )
    return models


def _total(page: Page, name: str) -> str:
    return page.locator("dl.totals div").filter(has=page.locator("dt", has_text=re.compile(f"^{name}$"))) \
        .locator("dd").inner_text()


def test_finance_changes_the_range_drills_into_a_provider_and_exports(
        page: Page, sign_in: Callable[..., Page], make_user: Callable[..., User]) -> None:
    _seed(make_user)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(make_user("finance"))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Costs").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Costs")
    presets = page.get_by_role("navigation", name="Date range")
    expect(presets.locator("[aria-current]")).to_have_text("30 days")
    expect(page.locator("dl.totals")).to_be_visible()
    thirty = dashboards.today() - timedelta(days=29)
    assert _total(page, "Requests") == f"{UsageRecord.objects.filter(created_at__gte=day_start(thirty)).count():,}"
    page.evaluate("window.e2eMarker = 'same document'")

    # A preset: the dashboard region is swapped over HTMX and the URL follows.
    with page.expect_response(re.compile(r"/costs/\?range=7d$")) as response:
        presets.get_by_role("link", name="7 days").click()
    assert response.value.request.headers.get("hx-request") == "true"
    expect(presets.locator("[aria-current]")).to_have_text("7 days")
    expect(page).to_have_url(re.compile(r"/costs/\?range=7d$"))
    week = UsageRecord.objects.filter(created_at__gte=day_start(dashboards.today() - timedelta(days=6)))
    expect(page.locator("dl.totals")).to_contain_text(f"{week.count():,}")

    # A custom range: editing a day in the filter form.
    start = dashboards.today() - timedelta(days=13)
    page.get_by_label("From", exact=True).fill(start.isoformat())
    expect(presets.locator("[aria-current]")).to_have_text("Custom")
    expect(page.locator(".dash-head .crumbs")).to_contain_text(f"Custom: {start.isoformat()} to")
    fortnight = UsageRecord.objects.filter(created_at__gte=day_start(start))
    expect(page.locator("dl.totals")).to_contain_text(f"{fortnight.count():,}")

    # Back to 30 days, as finance would show it.
    presets.get_by_role("link", name="30 days").click()
    expect(presets.locator("[aria-current]")).to_have_text("30 days")
    expect(page.locator("#daily-h + svg.chart rect.s0").first).to_be_attached()
    readme_screenshot(page, "dashboard.png")

    # Drill into a provider from the grouped table: its models.
    groups = page.locator("section:has(#groups-h)")
    expect(groups.get_by_role("heading", level=2)).to_contain_text("By provider")
    groups.get_by_role("link", name="claude", exact=True).click()
    expect(groups.get_by_role("heading", level=2)).to_have_text("By model")
    expect(page.locator(".dash-head .crumbs")).to_contain_text("All providers \u203a claude")
    table = groups.locator("tbody tr")
    expect(table).to_have_count(2)
    expect(table.first).to_contain_text("claude/")
    claude = Provider.objects.get(name="claude")
    claude_cost = UsageRecord.objects.filter(provider=claude, created_at__gte=day_start(thirty)).aggregate(
        cost=Sum("cost"))["cost"]
    assert _total(page, "Cost") == money(claude_cost)
    assert page.evaluate("window.e2eMarker") == "same document", "the page was reloaded"

    # The CSV of this view: claude's models, by cost, each with its summed cost.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert re.fullmatch(r"aspweb-costs-by-model-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv", download.suggested_filename)
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert {row["model"] for row in rows} == {"claude-sonnet-4-5", "claude-haiku-4-5"}
    assert {row["provider"] for row in rows} == {"claude"}
    assert sum(Decimal(row["cost_usd"]) for row in rows) == claude_cost
    assert [Decimal(row["cost_usd"]) for row in rows] == sorted((Decimal(row["cost_usd"]) for row in rows),
                                                                reverse=True)


def test_the_legends_swatches_are_all_one_size(page: Page, sign_in: Callable[..., Page],
                                               make_user: Callable[..., User]) -> None:
    # The errors' swatch must not pick up the red box that wraps a form's errors.
    _seed(make_user)
    sign_in(make_user("finance"), next_path="/costs/")
    swatches = page.locator(".legend .swatch")
    expect(page.locator(".legend .swatch.failures")).to_have_count(1)
    sizes = {tuple(s.evaluate("e => [e.offsetWidth, e.offsetHeight]")) for s in swatches.all()}
    assert len(sizes) == 1, sizes
    expect(page.locator("#requests-h ~ svg.chart rect.failures").first).to_be_attached()


def test_on_a_phone_the_dashboards_fit_the_screen(page: Page, sign_in: Callable[..., Page],
                                                  make_user: Callable[..., User]) -> None:
    # The wide tables scroll in their own box; nothing else makes the page wider than the screen.
    _seed(make_user)
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(make_user("finance"), next_path="/costs/")
    for path in ("/costs/", "/costs/?group=api_key", "/usage/"):
        page.goto(path)
        expect(page.locator("#groups-h")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path


def test_my_usage_draws_the_top_keys_at_their_size(page: Page, sign_in: Callable[..., Page],
                                                   make_user: Callable[..., User]) -> None:
    # Alone in its row (My usage has no top users), the chart is not a half-width one blown up to twice its size.
    _seed(make_user)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(User.objects.get(email="ana@example.com"), next_path="/usage/")
    chart = page.locator("#keys-h ~ svg.chart")
    expect(chart).to_be_visible()
    scale = chart.evaluate("s => s.getBoundingClientRect().width / s.viewBox.baseVal.width")
    assert scale <= 1.1, scale
