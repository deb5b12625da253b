"""Reconciliation in real Chromium: an admin stores a reporting key through the form (it is never shown
again); after the days are checked against the fake report server, the month's strip shows matches and a
drift, the total reads "aspweb recorded $X; the provider reports $Y", and the drifting day's models stand
side by side with a link to the model's price history."""

import re
from collections.abc import Callable
from datetime import timedelta

from playwright.sync_api import Page, expect

from accounts.models import User
from providers.models import Provider
from reconcile.models import ReportingCredential
from tests.budgets_support import ensure_role_groups
from tests.e2e.conftest import readme_screenshot
from tests.fakes.reports import ADMIN_KEY, FakeReports
from tests.reconcile_support import DAY, OUR_KEY, OUR_PROJECT, call, priced, run


def _november(fake: FakeReports, provider: Provider) -> None:
    """Five days of calls: four match, the third is billed dearer than aspweb priced it."""
    model = priced(provider, "gpt-4o-mini")
    for n in range(5):
        day = DAY + timedelta(days=n)
        call(model, day=day, input_tokens=2_000_000, output_tokens=1_000_000)  # $2 + $2
        fake.add_usage("openai", day, model="gpt-4o-mini-2024-07-18", api_key_id=OUR_KEY, project_id=OUR_PROJECT,
                       input_tokens=2_000_000, output_tokens=1_000_000, num_model_requests=1)
        fake.add_cost("openai", day, line_item="gpt-4o-mini-2024-07-18, input", project_id=OUR_PROJECT, value=2.0)
        fake.add_cost("openai", day, line_item="gpt-4o-mini-2024-07-18, output", project_id=OUR_PROJECT,
                      value=3.0 if n == 2 else 2.0)


def test_finance_reads_the_month_and_drills_into_a_drifting_day(
        reports_server: FakeReports, make_user: Callable[..., User], sign_in: Callable[..., Page],
        page: Page) -> None:
    ensure_role_groups()
    provider = Provider.objects.create(name="openai-prod", kind="openai", base_url=f"{reports_server.base_url}/v1",
                                       api_key="sk-proj-calls-key-9999")
    admin = sign_in(make_user("admin"))
    admin.get_by_role("navigation", name="Main").get_by_role("link", name="Reconciliation").click()
    expect(admin.get_by_role("heading", level=1)).to_contain_text("Reconciliation")
    expect(admin.get_by_text("No reporting key: nothing to check against.")).to_be_visible()
    admin.get_by_role("link", name="Reporting key settings").click()
    admin.get_by_label("Admin key").fill(ADMIN_KEY)
    admin.get_by_label("aspweb's API key id").fill(OUR_KEY)
    admin.get_by_label("Project or workspace id").fill(OUR_PROJECT)
    admin.get_by_role("button", name="Save").click()
    expect(admin.get_by_text("Reconciliation settings of openai-prod saved.")).to_be_visible()
    assert ReportingCredential.objects.get(provider=provider).api_key_id == OUR_KEY
    admin.goto(f"/reconciliation/{provider.pk}/settings/")
    expect(admin.get_by_label("Admin key")).to_have_value("")
    assert ADMIN_KEY not in admin.content()
    admin.context.clear_cookies()

    _november(reports_server, provider)
    run(provider, DAY, DAY + timedelta(days=4))

    finance = sign_in(make_user("finance"), next_path="/reconciliation/?month=2026-11")
    section = finance.get_by_role("region", name="Reconciliation of openai-prod")
    total = re.compile(r"Over 5 checked days: aspweb recorded \$20\.00; the provider reports \$21\.00\. 1 day drifts\.")
    expect(section.get_by_text(total)).to_be_visible()
    expect(section.get_by_role("link", name="2 Nov: matches")).to_be_visible()
    expect(section.locator(".recon-day.recon-drift")).to_have_count(1)
    readme_screenshot(finance, "reconciliation.png")
    section.get_by_role("link", name="4 Nov: drift").click()
    expect(finance.get_by_role("heading", level=1)).to_contain_text("Wednesday 4 November 2026")
    expect(finance.get_by_text("aspweb recorded $4.00; the provider reports $5.00")).to_be_visible()
    row = finance.locator("tbody", has_text="gpt-4o-mini")
    expect(row.get_by_text("Drift", exact=True)).to_be_visible()
    expect(row.get_by_text("Tokens match, the cost does not")).to_be_visible()
    expect(row.get_by_role("link", name="Price history")).to_be_visible()
    readme_screenshot(finance, "reconciliation-day.png")
    # On a phone the strip wraps and the day's table scrolls in its own box: the page keeps to the screen.
    finance.set_viewport_size({"width": 390, "height": 800})
    for path in ("/reconciliation/?month=2026-11", f"/reconciliation/{provider.pk}/2026-11-04/"):
        finance.goto(path)
        width = finance.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide"
