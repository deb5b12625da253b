"""Sign-in throttling as a person meets it on the real sign-in page, served by uvicorn."""

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from accounts.models import User
from tests.conftest import PASSWORD


@pytest.mark.console_errors(r"status of 429 \(Too Many Requests\)")
def test_a_locked_account_is_told_when_to_try_again(make_user: Callable[..., User], sign_in: Callable[..., Page],
                                                    settings: object) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    user = make_user("member")
    for _ in range(2):
        with pytest.raises(AssertionError, match="Please enter a correct e-mail and password"):
            sign_in(user, password="not-the-password")
    locked = re.escape("Too many failed sign-ins for this account. Try again in 15 minutes.")
    with pytest.raises(AssertionError, match=locked):
        sign_in(user, password="not-the-password")
    with pytest.raises(AssertionError, match="Too many failed sign-ins for this account"):
        sign_in(user, password=PASSWORD)


def _box(page: Page, selector: str) -> dict[str, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not shown"
    return box


@pytest.mark.parametrize("width", [1280, 390])
def test_the_sign_in_page_is_a_centred_card_with_full_width_inputs(page: Page, make_user: Callable[..., User],
                                                                 width: int) -> None:
    user = make_user("member")
    page.set_viewport_size({"width": width, "height": 800})
    page.goto("/login/")
    card, form = _box(page, "section.card"), _box(page, "section.card form")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # In the middle of the window, within a pixel.
    assert abs(card["x"] + card["width"] / 2 - width / 2) <= 1
    for label, field in (("E-mail", "id_username"), ("Password", "id_password")):
        box, label_box = _box(page, f"#{field}"), _box(page, f"label[for={field}]")
        expect(page.locator(f"label[for={field}]")).to_contain_text(label)
        # As wide as the card's form, the label above it.
        assert abs(box["width"] - form["width"]) <= 1 and box["width"] > 250, (field, box, form)
        assert label_box["y"] + label_box["height"] <= box["y"]
    assert abs(_box(page, "form button[type=submit]")["width"] - form["width"]) <= 1

    page.get_by_label("E-mail").fill(user.email)
    page.get_by_label("Password").fill("not-the-password")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    error = page.get_by_role("alert")
    expect(error).to_contain_text("Please enter a correct e-mail and password")
    # Shown in a box of its own, in the card, above the fields.
    assert page.locator(".errors").evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    box = _box(page, ".errors")
    assert form["x"] <= box["x"] and box["y"] < _box(page, "#id_username")["y"]
