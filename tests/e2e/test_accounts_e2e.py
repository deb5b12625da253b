"""Users and the audit log in a real browser: searching people, filtering the log, the words it reads in."""

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import AuditEvent, User


def test_an_admin_searches_users_and_a_superuser_is_an_admin(make_user: Callable[..., User],
                                                             sign_in: Callable[..., Page]) -> None:
    make_user("member", email="ann@example.com")
    make_user("superuser", email="boss@example.com")
    page = sign_in(make_user("admin"), next_path="/users/")
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="boss@example.com").locator("td").nth(2)).to_contain_text("Admin")
    page.get_by_label("Search users").fill("ANN")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ann@example.com")
    expect(page.get_by_role("heading", level=1)).to_contain_text("1 user matching “ANN”")


def test_the_audit_log_filters_by_who_and_days_in_plain_words(make_user: Callable[..., User],
                                                              sign_in: Callable[..., Page]) -> None:
    now = timezone.now()
    AuditEvent.objects.create(actor_label="ann@example.com", action="apikey.create", target_type="apikey",
                              target_label="ci", created_at=now - timedelta(days=5),
                              details={"models": [], "rpm_limit": None, "expires_at": ""})
    AuditEvent.objects.create(actor_label="bob@example.com", action="user.roles", target_type="user",
                              target_label="carl@example.com", details={"added": ["Finance"], "removed": []})
    page = sign_in(make_user("admin"), next_path="/audit/")
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(3)  # the two, and the sign-in itself
    expect(rows.filter(has_text="ann@example.com")).to_contain_text("models: any RPM limit: none expires: never")
    expect(rows.filter(has_text="bob@example.com")).to_contain_text("roles changed")
    expect(rows.filter(has_text="ann@example.com")).to_contain_text("API key ci")

    page.get_by_label("Who").fill("ann@")
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("API key made")

    page.get_by_label("Who").fill("")
    page.get_by_label("From").fill((timezone.localtime(now) - timedelta(days=1)).strftime("%Y-%m-%d"))
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    expect(page.locator("table.data tbody")).not_to_contain_text("ann@example.com")
    with page.expect_navigation():
        page.get_by_label("Action").select_option("user.signin")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("signed in")
    expect(page.get_by_label("From")).to_have_value((timezone.localtime(now) - timedelta(days=1)).strftime("%Y-%m-%d"))


def test_a_forms_choices_read_lighter_than_its_field_names(make_user: Callable[..., User],
                                                           sign_in: Callable[..., Page]) -> None:
    """The roles of a person and the members of a team are choices: plain text beside their boxes, under the
    field's bold name."""
    member = make_user("member", email="ann@example.com")
    page = sign_in(make_user("admin"), next_path=f"/users/{member.pk}/")
    weight = "e => getComputedStyle(e).fontWeight"
    assert page.locator("label", has_text="E-mail").evaluate(weight) == "600"
    for choice in ("Admin", "Finance", "Member"):
        assert page.get_by_label(choice).locator("xpath=..").evaluate(weight) == "400", choice
    page.goto("/teams/")
    page.get_by_label("Name").fill("Research")
    page.get_by_label("ann@example.com").check()
    assert page.get_by_label("ann@example.com").locator("xpath=..").evaluate(weight) == "400"
