"""Sign-in throttling as a person meets it on the real sign-in page, served by uvicorn."""

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page

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
