"""The pages under their Content-Security-Policy: what used to be inline handlers still works from aspweb's
own script, and what the policy refuses is caught (the ``page`` fixture fails a test on any refusal)."""

from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, Dialog, Error, Page, expect

from accounts.models import AuditEvent, User
from budgets.models import Budget
from gateway.models import Route
from tests.e2e.conftest import collect_csp_violations


def test_markup_that_slipped_in_cannot_run_or_style(browser: Browser, live_server_url: str) -> None:
    """The policy is enforced, and the harness sees each refusal: an inline script, handler and style."""
    context = browser.new_context(base_url=live_server_url)
    page = context.new_page()
    violations = collect_csp_violations(page)
    response = page.goto("/login/")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    with page.expect_console_message(lambda message: "inline style" in message.text):
        page.evaluate("""() => document.body.insertAdjacentHTML("beforeend",
            '<img src="data:," onload="window.ran = true"><p id="styled" style="color: rgb(255, 0, 0)">styled</p>')""")
    with pytest.raises(Error, match="Content Security Policy"):
        page.add_script_tag(content="window.ran = true")
    assert page.evaluate("window.ran === undefined")
    assert page.evaluate("getComputedStyle(document.getElementById('styled')).color") != "rgb(255, 0, 0)"
    context.close()
    assert any("script-src" in text for text in violations), violations
    assert any("style-src" in text for text in violations), violations


def test_deleting_a_route_asks_first(make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    route = Route.objects.create(name="fast-chat")
    page = sign_in(make_user("admin"), next_path=f"/routes/{route.pk}/")
    questions: list[str] = []

    def answer(dialog: Dialog, accept: bool) -> None:
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("fast-chat")
    assert Route.objects.filter(pk=route.pk).exists()

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    with page.expect_navigation():
        page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Route fast-chat deleted.")).to_be_visible()
    assert questions == ["Delete route fast-chat?", "Delete route fast-chat?"]
    assert not Route.objects.filter(pk=route.pk).exists()


def test_deleting_a_budget_asks_first(make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    budget = Budget.objects.create(name="Team <monthly>", amount=10)
    page = sign_in(make_user("finance"), next_path=f"/budgets/{budget.pk}/")
    questions: list[str] = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    with page.expect_navigation():
        page.get_by_role("button", name="Delete").click()
    assert questions == ["Delete budget Team <monthly> and its alert history?"]
    assert not Budget.objects.filter(pk=budget.pk).exists()


def test_the_audit_log_filters_on_choice(make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    AuditEvent.objects.create(action="route.create", target_type="route", target_label="fast-chat")
    AuditEvent.objects.create(action="budget.create", target_type="budget", target_label="monthly")
    page = sign_in(make_user("admin"), next_path="/audit/")
    # The two events, and the sign-in itself.
    expect(page.locator("table.data tbody tr")).to_have_count(3)
    with page.expect_navigation():
        page.get_by_label("Object type").select_option("budget")
    assert "type=budget" in page.url
    expect(page.locator("table.data tbody tr")).to_have_count(1)
    expect(page.locator("table.data tbody")).to_contain_text("monthly")
