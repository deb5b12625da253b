"""Teams in real Chromium: an admin makes a team and puts people in it; finance groups the costs by team and
filters them by a tag, over HTMX, and the numbers on screen are the raw records' sums."""

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import Team, User
from aspweb.money import money
from providers.models import Model, Price, Provider
from usage.attribution import tag_q
from usage.models import UsageRecord
from usage.services import usage_record_create


def _model() -> Model:
    provider = Provider.objects.create(name="lab", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="m")
    Price.objects.create(model=model, effective_from=datetime(2024, 1, 1, tzinfo=UTC), input=Decimal(3),
                         output=Decimal(15))
    return model


def _cost(**filters: object) -> str:
    records = UsageRecord.objects.filter(*[tag_q(filters.pop("tag"))] if "tag" in filters else [], **filters)
    return money(records.aggregate(total=Sum("cost"))["total"])


def test_an_admin_makes_a_team_and_finance_sees_its_costs(page: Page, sign_in: Callable[..., Page],
                                                          make_user: Callable[..., User]) -> None:
    ana, ben = make_user("member", email="ana@example.com"), make_user("member", email="ben@example.com")
    sign_in(make_user("admin"))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Teams").click()
    form = page.locator("#team-add")
    form.get_by_label("Name").fill("Research")
    form.get_by_label("ana@example.com").check()
    form.get_by_label("ben@example.com").check()
    form.get_by_role("button", name="Add the team").click()
    expect(page.locator("#team-table")).to_contain_text("Research")
    team = Team.objects.get()
    assert set(team.members.all()) == {ana, ben}

    model = _model()
    now = timezone.now() - timedelta(hours=1)
    for n in range(12):
        usage_record_create(provider=model.provider, model=model, user=(ana, ben)[n % 2], source="gateway",
                            status="ok", created_at=now - timedelta(days=n), team_id=team.pk if n % 3 else None,
                            tags=(("search",), ("search", "nightly"), ())[n % 3], end_user=f"c{n % 2}",
                            input_tokens=1000 * (n + 1), output_tokens=100 * n)

    page.context.clear_cookies()
    sign_in(make_user("finance"))
    page.goto("/costs/")
    page.locator("#id_group").select_option("team")
    expect(page).to_have_url(re.compile(r"group=team"))
    table = page.locator("table.sortable")
    expect(table).to_contain_text("Research")
    row = table.locator("tbody tr").filter(has_text="Research")
    expect(row).to_contain_text(_cost(team=team))
    expect(table.locator("tbody tr").filter(has_text="No team")).to_contain_text(_cost(team__isnull=True))
    expect(page.locator("#teams-h")).to_have_text("Cost by team")

    page.locator("#id_tag").fill("Nightly")
    page.locator("#id_tag").press("Enter")
    expect(page).to_have_url(re.compile(r"tag=nightly", re.IGNORECASE))
    expect(page.locator("dl.totals")).to_contain_text(_cost(tag="nightly"))
    expect(table.locator("tbody tr").filter(has_text="Research")).to_contain_text(_cost(team=team, tag="nightly"))
