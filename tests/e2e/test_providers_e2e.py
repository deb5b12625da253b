"""Provider pages in a real browser: add a provider, test it and sync its models over HTMX, set a price with
long-context tiers."""

import re
from collections.abc import Callable
from decimal import Decimal

import pytest
from playwright.sync_api import Locator, Page, expect

from accounts.models import User
from providers.models import Model, Provider
from tests.e2e.conftest import readme_screenshot
from tests.fakes.upstream import FakeUpstream

API_KEY = "sk-e2e-secret-key-7f3a9c"


class HtmlLog:
    """The HTML of every state of the page a test looked at, to check nothing leaked into any of them."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.pages: list[tuple[str, str]] = []

    def take(self) -> None:
        self.pages.append((self.page.url, self.page.content()))

    def assert_absent(self, secret: str) -> None:
        assert self.pages
        leaks = [url for url, html in self.pages if secret in html]
        assert not leaks, f"the API key appears in the HTML of {leaks}"


def _add_provider(page: Page, html: HtmlLog, *, kind_label: str, name: str, base_url: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Providers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Providers")
    html.take()
    page.get_by_role("link", name="Add provider", exact=True).click()
    html.take()
    page.locator("a.tile").filter(has=page.get_by_role("heading", name=kind_label, exact=True)).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Add {kind_label}")
    html.take()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Base URL").fill(base_url)
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_role("button", name="Add provider").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    expect(page.locator(".messages")).to_contain_text(f"Provider {name} added.")
    # The page says which key is stored without showing it.
    expect(page.locator("dl.facts")).to_contain_text(f"stored, ends in {API_KEY[-4:]}")
    html.take()


def _test_connection_in_place(page: Page, html: HtmlLog, upstream: FakeUpstream) -> None:
    """Click "Test connection" and check HTMX swapped the result in without reloading the page."""
    health = page.locator("#health")
    expect(health).to_contain_text("Not tested yet.")
    page.evaluate("window.e2eMarker = 'same document'")
    with page.expect_response(re.compile(r"/providers/\d+/test/?$")) as response_info:
        health.get_by_role("button", name="Test connection").click()
    response = response_info.value
    assert response.request.headers.get("hx-request") == "true"
    assert response.status == 200
    expect(health.get_by_role("status")).to_contain_text("Connected; 2 models listed.")
    expect(health.get_by_role("status")).to_have_text(re.compile(r"\d+ ms\s*$"))
    assert page.evaluate("window.e2eMarker") == "same document", "the page was reloaded"
    # The fake only answers to the stored key, so this also proves the key reached it.
    assert upstream.last_request.path == "/v1/models"
    assert upstream.last_request.api_key == API_KEY
    html.take()


def _sync_models_in_place(page: Page, html: HtmlLog, said: str) -> None:
    models = page.locator("#models")
    expect(models).to_contain_text("No models yet.")
    page.evaluate("window.e2eMarker = 'before sync'")
    models.get_by_role("button", name="Sync models").click()
    expect(models.get_by_role("status")).to_have_text(said)
    assert page.evaluate("window.e2eMarker") == "before sync", "the page was reloaded"
    expect(models.locator("tbody tr")).to_have_count(2)
    html.take()


def _price_cells(page: Page, model: str) -> list[str]:
    row = page.locator("#models tbody tr").filter(has=page.get_by_role("link", name=model, exact=True))
    return [text.strip() for text in row.locator("td").all_inner_texts()]


def _dollars(cell: str) -> Decimal:
    assert cell.startswith("$"), cell
    return Decimal(cell.removeprefix("$"))


def test_admin_adds_openai_compatible_provider_tests_it_syncs_and_prices_a_model(
    make_user: Callable[..., User],
    sign_in: Callable[..., Page],
    upstream: FakeUpstream,
) -> None:
    upstream.api_key = API_KEY
    upstream.models = ["gpt-4o-mini", "local-small"]
    page = sign_in(make_user("admin"))
    html = HtmlLog(page)
    html.take()

    _add_provider(page, html, kind_label="OpenAI-compatible URL", name="lab", base_url=upstream.openai_base_url)
    _test_connection_in_place(page, html, upstream)
    _sync_models_in_place(page, html, "Added 2 models: gpt-4o-mini, local-small; 2 have no price yet: "
                                      "gpt-4o-mini, local-small. Set their prices.")

    # genai-prices has no data for an arbitrary OpenAI-compatible server: no model has a price yet.
    for model in ("gpt-4o-mini", "local-small"):
        assert _price_cells(page, model)[4] == "no price yet: set one"

    page.get_by_role("link", name="local-small", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("lab/local-small")
    html.take()
    _price_field(page, "Input").fill("0.25")
    _price_field(page, "Output").fill("1.75")
    page.get_by_role("button", name="Save prices").click()
    expect(page.locator(".messages")).to_contain_text("New price version saved.")
    html.take()
    page.locator(".crumbs").get_by_role("link", name="lab").click()
    cells = _price_cells(page, "local-small")
    assert (_dollars(cells[4]), _dollars(cells[5])) == (Decimal("0.25"), Decimal("1.75"))
    assert _price_cells(page, "gpt-4o-mini")[4] == "no price yet: set one"
    html.take()

    html.assert_absent(API_KEY)


def test_openai_provider_pointed_at_the_fake_gets_default_prices_on_sync(
    make_user: Callable[..., User],
    sign_in: Callable[..., Page],
    upstream: FakeUpstream,
) -> None:
    upstream.api_key = API_KEY
    upstream.models = ["gpt-4o-mini", "local-small"]
    page = sign_in(make_user("admin"))
    html = HtmlLog(page)

    _add_provider(page, html, kind_label="OpenAI", name="openai", base_url=upstream.openai_base_url)
    _test_connection_in_place(page, html, upstream)
    _sync_models_in_place(page, html, "Added 2 models: gpt-4o-mini, local-small; 1 has no price yet: local-small. "
                                      "Set its price.")

    cells = _price_cells(page, "gpt-4o-mini")
    assert (_dollars(cells[4]), _dollars(cells[5])) == (Decimal("0.15"), Decimal("0.6"))
    # genai-prices does not know the fake's own model.
    assert _price_cells(page, "local-small")[4] == "no price yet: set one"

    readme_screenshot(page, "providers.png")
    html.assert_absent(API_KEY)


@pytest.mark.console_errors(r"status of 403 \(Forbidden\)")
def test_member_sees_no_providers_link_and_is_refused_the_providers_page(
    make_user: Callable[..., User],
    sign_in: Callable[..., Page],
) -> None:
    member = make_user("member")
    page = sign_in(member)
    expect(page.locator(".who")).to_contain_text(member.email)
    expect(page.get_by_role("link", name="Providers")).to_have_count(0)

    response = page.goto("/providers/")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You do not have access to this page")
    expect(page.get_by_role("main")).to_contain_text("This page is for admins.")


TIER_FIELDS = ("above (prompt tokens)", "input", "output", "cache read", "cache write (5 minutes)",
               "cache write (1 hour)")


def _price_field(page: Page, label: str) -> Locator:
    """A price of the new version, by its accessible name (a required field's * is hidden from it)."""
    return page.get_by_role("spinbutton", name=label, exact=True)


def _fill_tier(page: Page, row: int, *values: str) -> None:
    for field, value in zip(TIER_FIELDS, values, strict=True):
        _price_field(page, f"Tier {row} {field}").fill(value)


def _history(page: Page) -> list[list[str]]:
    rows = page.get_by_role("region", name="Price history").locator("tbody tr")
    return [[cell.strip() for cell in row.locator("td").all_inner_texts()] for row in rows.all()]


def test_admin_prices_a_model_with_a_1h_write_and_a_long_context_tier(
    make_user: Callable[..., User],
    sign_in: Callable[..., Page],
) -> None:
    provider = Provider.objects.create(name="lab", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="long-context")
    page = sign_in(make_user("admin"), next_path=f"/models/{model.pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("lab/long-context")

    for label, value in (("Input", "3"), ("Output", "15"), ("Cache read", "0.3"), ("Cache write (5 minutes)", "3.75"),
                         ("Cache write (1 hour)", "6")):
        _price_field(page, label).fill(value)
    _fill_tier(page, 1, "200000", "6", "22.5", "0.6", "7.5", "12")
    page.get_by_role("button", name="Save prices").click()

    expect(page.locator(".messages")).to_contain_text("New price version saved.")
    history = _history(page)
    assert [cells[1:6] for cells in history] == [["$3.00", "$15.00", "$0.30", "$3.75", "$6.00"],
                                                 ["$6.00", "$22.50", "$0.60", "$7.50", "$12.00"]]
    assert history[1][0] == "above 200,000 prompt tokens"
    # The form now holds the version in force, its tier, and an empty row for another.
    expect(_price_field(page, "Tier 1 above (prompt tokens)")).to_have_value("200000")
    expect(_price_field(page, "Tier 1 output")).to_have_value("22.5")
    expect(_price_field(page, "Tier 2 above (prompt tokens)")).to_have_value("")

    # A second tier on the same threshold is refused, next to its field, and nothing is saved.
    _fill_tier(page, 2, "200000", "9", "30", "0.9", "11.25", "18")
    page.get_by_role("button", name="Save prices").click()
    expect(page.get_by_role("alert")).to_have_text("Another tier already starts above 200,000 prompt tokens.")
    assert model.prices.count() == 1
    # A tier that leaves out a cache price its version sets is refused too: it would charge the tier's input.
    _price_field(page, "Tier 2 above (prompt tokens)").fill("1000000")
    _price_field(page, "Tier 2 cache read").fill("")
    page.get_by_role("button", name="Save prices").click()
    expect(page.get_by_role("alert")).to_contain_text("set this tier's too")
    assert model.prices.count() == 1
    _price_field(page, "Tier 2 cache read").fill("0.9")

    # Moved above 1M, it is a second tier of a new version.
    _price_field(page, "Tier 2 above (prompt tokens)").fill("1000000")
    page.get_by_role("button", name="Save prices").click()
    expect(page.locator(".messages")).to_contain_text("New price version saved.")
    assert [tier.above for tier in model.current_price().tier_list] == [200000, 1000000]

    # The catalog shows the 1-hour write and that the model is tiered.
    page.locator(".crumbs").get_by_role("link", name="lab").click()
    cells = _price_cells(page, "long-context")
    assert [_dollars(cell) for cell in cells[4:9]] == [Decimal(3), Decimal(15), Decimal("0.3"), Decimal("3.75"),
                                                       Decimal(6)]
    assert "priced higher above 200,000, 1,000,000 prompt tokens" in " ".join(cells[0].split())


def _catalog_row(page: Page, model: str) -> Locator:
    return page.locator("#models tbody tr").filter(has=page.get_by_role("link", name=model, exact=True))


def test_admin_syncs_then_prices_the_unpriced_models_at_once_and_toggles_one_in_place(
    make_user: Callable[..., User],
    sign_in: Callable[..., Page],
    upstream: FakeUpstream,
) -> None:
    upstream.api_key = API_KEY
    upstream.models = ["gpt-4o-mini", "local-small", "local-large"]
    provider = Provider.objects.create(name="lab", kind="openai_compatible", base_url=upstream.openai_base_url,
                                       api_key=API_KEY)
    page = sign_in(make_user("admin"), next_path=f"/providers/{provider.pk}/")

    models = page.locator("#models")
    models.get_by_role("button", name="Sync models").click()
    expect(models.get_by_role("status")).to_contain_text("Added 3 models: gpt-4o-mini, local-small, local-large; "
                                                         "3 have no price yet")
    # The sync's link opens the bulk edit with the unpriced models ticked.
    models.get_by_role("status").get_by_role("link", name="Set their prices").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Set prices of several models")
    for name in ("gpt-4o-mini", "local-large", "local-small"):
        expect(page.get_by_role("checkbox", name=name)).to_be_checked()
    page.get_by_role("checkbox", name="gpt-4o-mini").uncheck()
    _price_field(page, "Input").fill("0.1")
    _price_field(page, "Output").fill("0.4")
    page.get_by_role("button", name="Save prices").click()
    expect(page.locator(".messages")).to_contain_text("New price version saved for 2 models.")
    for name in ("local-large", "local-small"):
        cells = [text.strip() for text in _catalog_row(page, name).locator("td").all_inner_texts()]
        assert (_dollars(cells[4]), _dollars(cells[5])) == (Decimal("0.1"), Decimal("0.4"))
    expect(_catalog_row(page, "gpt-4o-mini")).to_contain_text("no price yet")

    # Ticked in the catalog, the models go to the bulk edit too, prefilled with their shared price.
    page.get_by_role("checkbox", name="Select local-large").check()
    page.get_by_role("checkbox", name="Select local-small").check()
    page.get_by_role("button", name="Set prices of selected").click()
    expect(_price_field(page, "Input")).to_have_value("0.1")
    expect(page.get_by_role("checkbox", name="gpt-4o-mini")).not_to_be_checked()
    page.go_back()

    # The switch turns a model off without leaving the page.
    page.evaluate("window.e2eMarker = 'catalog'")
    switch = _catalog_row(page, "local-small").get_by_role("switch")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.click()
    expect(_catalog_row(page, "local-small").get_by_role("switch")).to_have_attribute("aria-checked", "false")
    assert page.evaluate("window.e2eMarker") == "catalog", "the page was reloaded"
    assert Model.objects.get(provider=provider, name="local-small").enabled is False
    _catalog_row(page, "local-small").get_by_role("switch").click()
    expect(_catalog_row(page, "local-small").get_by_role("switch")).to_have_attribute("aria-checked", "true")
    assert Model.objects.get(provider=provider, name="local-small").enabled is True


def test_a_long_model_name_is_cut_with_an_ellipsis_and_whole_in_its_title(
    make_user: Callable[..., User],
    sign_in: Callable[..., Page],
) -> None:
    long_name = "a-very-long-model-name-" * 8
    provider = Provider.objects.create(name="p" * 64, kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    Model.objects.create(provider=provider, name=long_name)
    page = sign_in(make_user("admin"), next_path=f"/providers/{provider.pk}/")
    link = page.get_by_role("link", name=long_name, exact=True)
    expect(link).to_have_attribute("title", long_name)
    assert link.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"
    assert link.evaluate("e => e.scrollWidth > e.clientWidth"), "the name is not cut"
    # The table stays within the page.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

    page.goto("/providers/")
    name = page.get_by_role("link", name="p" * 64, exact=True)
    expect(name).to_have_attribute("title", "p" * 64)
    assert name.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"


def test_out_of_range_settings_are_refused_in_words_next_to_their_fields(
    make_user: Callable[..., User],
    sign_in: Callable[..., Page],
) -> None:
    provider = Provider.objects.create(name="lab", kind="ollama", base_url="http://127.0.0.1:9/v1")
    page = sign_in(make_user("admin"), next_path=f"/providers/{provider.pk}/edit/")
    page.get_by_label("Time limit (seconds)").fill("999999999")
    page.get_by_label("Retries").fill("-5")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".field.has-error")).to_have_count(2)
    expect(page.get_by_role("alert").filter(has_text="Enter a number from 1 to 600.")).to_have_count(1)
    expect(page.get_by_role("alert").filter(has_text="Enter a number from 0 to 10.")).to_have_count(1)
    provider.refresh_from_db()
    assert (provider.timeout_seconds, provider.max_retries) == (120, 3)
