"""Budgets in real Chromium: finance creates a budget; a member spends past half of it in the playground
against the fake upstream; finance's bell lights up without a reload and the notification reads in plain
words; once the hard limit is reached, the playground refuses the next answer and says why."""

from collections.abc import Callable
from decimal import Decimal

import pytest
from playwright.sync_api import Browser, Page, expect

from accounts.models import User
from budgets.models import AlertEvent, Budget
from providers.models import Model
from tests.conftest import PASSWORD
from tests.e2e.conftest import readme_screenshot
from tests.fakes.upstream import FakeUpstream
from tests.playground_support import make_catalog


@pytest.fixture
def catalog(live_server_url: str, upstream: FakeUpstream) -> tuple[Model, Model]:
    models = make_catalog(upstream)
    upstream.reply = "Budgets keep spend in check."
    # Each answer reports 100k tokens in and 50k out: $0.10 + $0.10 at $1 / $2 per 1M.
    upstream.usage = {"input_tokens": 100_000, "output_tokens": 50_000}
    return models


def _member_page(browser: Browser, live_server_url: str, member: User) -> Page:
    """A second person, in a browser context of their own."""
    page = browser.new_context(base_url=live_server_url).new_page()
    page.set_default_timeout(10_000)
    page.goto("/login/")
    page.get_by_label("E-mail").fill(member.email)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    page.goto("/playground/")
    return page


def _ask(page: Page, model: Model, prompt: str) -> None:
    page.get_by_label("Model", exact=True).select_option(value=str(model.pk))
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_label("Prompt", exact=True).press("Enter")


def test_finance_sees_the_alert_when_a_member_spends_past_half(
        catalog: tuple[Model, Model], browser: Browser, live_server_url: str, make_user: Callable[..., User],
        sign_in: Callable[..., Page]) -> None:
    cheap, _ = catalog
    finance = sign_in(make_user("finance"))
    finance.get_by_role("navigation", name="Main").get_by_role("link", name="Budgets").click()
    expect(finance.get_by_role("heading", level=1)).to_have_text("Budgets")
    finance.get_by_role("link", name="Add budget").click()
    finance.get_by_label("Name").fill("Lab month")
    finance.get_by_label("Scope").select_option(label="Every call")
    finance.get_by_label("Period").select_option(label="Monthly (from the 1st)")
    finance.get_by_label("Amount (USD)").fill("0.30")
    expect(finance.get_by_label("Thresholds")).to_have_value("50, 80, 100")
    finance.get_by_label("Hard limit").check()
    finance.get_by_role("button", name="Add budget").click()
    expect(finance.get_by_role("heading", level=1)).to_contain_text("Lab month")
    expect(finance.locator("#bell .bell-count")).to_have_count(0)
    budget = Budget.objects.get(name="Lab month")
    assert (budget.amount, budget.hard_limit, budget.thresholds) == (Decimal("0.3"), True, [50, 80, 100])

    member = _member_page(browser, live_server_url, make_user("member"))
    _ask(member, cheap, "How do budgets work?")
    expect(member.locator("article.pane").first).to_have_attribute("data-status", "ok", timeout=20_000)

    # The bell polls: the count appears on finance's open page, no reload.
    expect(finance.locator("#bell .bell-count")).to_have_text("1", timeout=15_000)
    finance.locator("#bell").click()
    expect(finance.get_by_role("heading", level=1)).to_have_text("Notifications")
    notification = finance.locator("li.notification.unread")
    expect(notification).to_contain_text("Budget Lab month: 50% reached")
    expect(notification).to_contain_text("reached 50% of its $0.30")
    expect(notification).to_contain_text("$0.20 spent, $0.10 left.")
    assert list(AlertEvent.objects.values_list("threshold", flat=True)) == [50]

    # The status page shows where the month stands.
    finance.goto("/budgets/")
    card = finance.get_by_role("region", name="Budget Lab month")
    expect(card.locator("dd.spent")).to_have_text("$0.20")
    expect(card.locator("dd.used")).to_have_text("66.7%")
    expect(card.locator("svg polyline.chart-spend")).to_have_count(1)
    readme_screenshot(finance, "budgets.png")

    # A second answer still fits the worst case ($0.10 left), and takes spend to $0.40; the third cannot.
    _ask(member, cheap, "And then?")
    expect(member.locator("section.turn").nth(1).locator("article.pane")).to_have_attribute(
        "data-status", "ok", timeout=20_000)
    _ask(member, cheap, "One more?")
    refused = member.locator("section.turn").nth(2).locator("article.pane")
    expect(refused).to_have_attribute("data-status", "error", timeout=20_000)
    expect(refused).to_contain_text("Budget “Lab month” (every call, monthly) has $0.00 left of $0.30")
    member.context.close()
