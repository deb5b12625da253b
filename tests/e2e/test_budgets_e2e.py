"""Budgets in real Chromium: finance creates a budget; a member spends past half of it in the playground
against the fake upstream; finance's bell lights up without a reload and the notification reads in plain
words; once the hard limit is reached, the playground refuses the next answer and says why."""

import re
from collections.abc import Callable
from decimal import Decimal

import pytest
from playwright.sync_api import Browser, Page, expect

from accounts.models import User
from budgets.models import AlertEvent, Budget
from providers.models import Model
from tests.budgets_support import make_budget, make_model, spend
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


def _no_sideways_scroll(page: Page) -> None:
    assert page.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")


# The element is cut with an ellipsis inside its box (its text is wider than what shows), and the box ends
# within the element given.
CUT_WITHIN = """([e, selector]) => getComputedStyle(e).textOverflow === "ellipsis" && e.scrollWidth > e.clientWidth
    && e.getBoundingClientRect().right <= e.closest(selector).getBoundingClientRect().right"""


def test_a_sub_cent_budget_reads_its_amount_and_the_real_spend(
        live_server_url: str, make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    spend(make_model(), "0.0048")
    budget = make_budget("Pennies", amount=Decimal("0.004"), thresholds=[25, 100])
    page = sign_in(make_user("finance"))

    page.goto("/budgets/")
    card = page.get_by_role("region", name="Budget Pennies")
    expect(card.locator("dd.spent")).to_have_text("$0.0048")
    expect(card.locator("dl.figures div").filter(has_text="Amount").locator("dd")).to_have_text("$0.004")
    expect(card.locator("dd.used")).to_have_text("120.0%")
    expect(card.get_by_role("img")).to_have_attribute("aria-label", re.compile(r": \$0\.0048 of \$0\.004$"))

    page.goto(f"/budgets/{budget.pk}/")
    current = page.get_by_role("region", name="Current period")
    expect(current.locator("dd.spent")).to_have_text("$0.0048")
    expect(current.locator("dl.figures div").filter(has_text="Amount").locator("dd")).to_have_text("$0.004")
    expect(page.locator("ul.thresholds li").first).to_contain_text("25%, at $0.001 spent")
    expect(page.locator("ul.thresholds li").nth(1)).to_contain_text("100%, at $0.004 spent")


def test_a_budget_added_below_current_spend_fires_at_once(
        live_server_url: str, make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    spend(make_model(), "0.6")
    page = sign_in(make_user("finance"))
    page.goto("/budgets/add/")
    page.get_by_label("Name").fill("Late")
    page.get_by_label("Amount (USD)").fill("1")
    page.get_by_label("Thresholds").fill("25, 50, 80")
    page.get_by_role("button", name="Add budget").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("Late")
    thresholds = page.locator("ul.thresholds li")
    expect(thresholds.nth(0)).to_contain_text("fired 25%")
    expect(thresholds.nth(1)).to_contain_text("fired 50%")
    expect(thresholds.nth(2)).to_contain_text("not yet 80%")
    expect(page.locator("#bell .bell-count")).to_have_text("1")
    page.locator("#bell").click()
    expect(page.locator("li.notification.unread")).to_contain_text("Budget Late: 50% reached")


def _target_fields(page: Page) -> dict[str, bool]:
    return {label: page.get_by_label(label, exact=True).is_visible()
            for label in ("Provider", "Model", "User", "API key")}


def test_the_form_shows_only_the_target_the_scope_needs(
        live_server_url: str, make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    make_model()
    page = sign_in(make_user("finance"))
    page.goto("/budgets/add/")
    expect(page.get_by_label("Scope")).to_have_value("global")
    expect(page.get_by_label("Model", exact=True)).to_be_hidden()
    assert _target_fields(page) == {"Provider": False, "Model": False, "User": False, "API key": False}

    page.get_by_label("Scope").select_option(label="One model")
    expect(page.get_by_label("Model", exact=True)).to_be_visible()
    assert _target_fields(page) == {"Provider": False, "Model": True, "User": False, "API key": False}
    page.get_by_label("Scope").select_option(label="One API key")
    expect(page.get_by_label("API key", exact=True)).to_be_visible()
    assert _target_fields(page) == {"Provider": False, "Model": False, "User": False, "API key": True}

    # The server says which field a scope lacks, and the page shows it again with the error.
    page.get_by_label("Scope").select_option(label="One user")
    page.get_by_label("Name").fill("Someone")
    page.get_by_label("Amount (USD)").fill("5")
    page.get_by_role("button", name="Add budget").click()
    expect(page.get_by_text("Choose the user this budget is for: the “One user” scope needs one.")).to_be_visible()
    assert _target_fields(page) == {"Provider": False, "Model": False, "User": True, "API key": False}
    page.get_by_label("Scope").select_option(label="Every call")
    expect(page.get_by_label("User", exact=True)).to_be_hidden()
    page.get_by_role("button", name="Add budget").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Someone")
    assert Budget.objects.get(name="Someone").scope == "global"


def test_without_javascript_every_target_shows(browser: Browser, live_server_url: str,
                                               make_user: Callable[..., User]) -> None:
    context = browser.new_context(base_url=live_server_url, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    finance = make_user("finance")
    page.goto("/login/")
    page.get_by_label("E-mail").fill(finance.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto("/budgets/add/")
    assert _target_fields(page) == {"Provider": True, "Model": True, "User": True, "API key": True}
    expect(page.get_by_text("For the “One model” scope.")).to_be_visible()
    context.close()


def test_a_long_name_is_cut_with_its_whole_text_in_a_title(
        live_server_url: str, make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    name = "Q" * 100  # the longest a name may be, without a space to break at
    budget = make_budget(name)
    make_budget("Short")
    page = sign_in(make_user("finance"))
    page.set_viewport_size({"width": 1000, "height": 800})

    page.goto("/budgets/")
    link = page.get_by_role("region", name=f"Budget {name}").get_by_role("link", name=name)
    expect(link).to_have_attribute("title", name)
    assert link.evaluate(f"e => ({CUT_WITHIN})([e, 'section'])")  # cut, not spilling over
    _no_sideways_scroll(page)

    for path in (f"/budgets/{budget.pk}/", f"/budgets/{budget.pk}/edit/"):
        page.goto(path)
        heading = page.get_by_role("heading", level=1).locator(".budget-name")
        expect(heading).to_have_attribute("title", name)
        assert heading.evaluate(f"e => ({CUT_WITHIN})([e, 'main'])")
        _no_sideways_scroll(page)

    # The form says the limit, and typing past it stops there.
    page.goto("/budgets/add/")
    expect(page.get_by_text("Up to 100 characters")).to_be_visible()
    page.get_by_label("Name").fill("x" * 300)
    expect(page.get_by_label("Name")).to_have_value("x" * 100)
