"""The browser harness itself: static files and HTMX load, data committed in the test reaches the server."""

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from accounts.models import User


@pytest.mark.parametrize("path", ["/static/django_htmx/htmx-2.min.js", "/static/css/app.css"])
def test_static_files_are_served(page: Page, path: str) -> None:
    response = page.request.get(path)
    assert response.status == 200
    assert len(response.body()) > 1000


def test_htmx_runs_on_a_signed_in_page(make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    page = sign_in(make_user("admin"))
    # The user was created by this test: the server saw the committed row.
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Admin")
    assert page.evaluate("typeof htmx === 'undefined' ? null : htmx.version").startswith("2.")


def test_wrong_password_is_reported_by_sign_in(make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    with pytest.raises(AssertionError, match="Please enter a correct e-mail and password"):
        sign_in(make_user("member"), password="not-the-password")
