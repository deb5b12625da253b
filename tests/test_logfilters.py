"""A refused page is logged as one line, with who was refused and why, never with a traceback."""

import logging
import sys
from collections.abc import Callable

import pytest
from django.test import Client

from accounts.models import User
from aspweb.logfilters import OneLineRefusals


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.django_db
def test_a_page_refused_for_a_role_logs_one_line(client_as: Callable[[str], Client],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    client = client_as("member")
    user = User.objects.get(email="member@example.com")
    with caplog.at_level(logging.INFO):
        assert client.get("/audit/").status_code == 403
    [record] = _warnings(caplog)
    assert record.name == "django.request"
    assert record.exc_info is None and record.exc_text is None
    assert record.getMessage() == f"Forbidden (Permission denied): /audit/ for user {user.pk}: " \
                                  "This page is for admins."
    assert "Traceback" not in caplog.text


def test_other_errors_keep_their_traceback() -> None:
    try:
        raise RuntimeError("a fault")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error: %s",
                               ("/audit/",), exc_info)
    assert OneLineRefusals().filter(record)
    assert record.exc_info == exc_info
    assert record.getMessage() == "Internal Server Error: /audit/"
