"""Sign-in throttling: per account and per client address, its message, its cool-off, unlocking, the audit log."""

from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, User
from tests.conftest import PASSWORD
from tests.test_settings import _run as run_manage

pytestmark = pytest.mark.django_db

LIMIT = 10
ACCOUNT_LOCKED = "Too many failed sign-ins for this account. Try again in 15 minutes."
ADDRESS_LOCKED = "Too many failed sign-ins from your network address. Try again in 15 minutes."
ORDINARY = "Please enter a correct e-mail and password"


@pytest.fixture(autouse=True)
def _limits(settings: object) -> None:
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def _sign_in(email: str, password: str, address: str = "203.0.113.7", **headers: str) -> tuple[Client, object]:
    client = Client(REMOTE_ADDR=address, **headers)
    return client, client.post(reverse("login"), {"username": email, "password": password})


def _signed_in(client: Client) -> bool:
    return client.get(reverse("home")).status_code == 200


def _fail(email: str, times: int, address: str = "203.0.113.7") -> object:
    for _ in range(times):
        _, response = _sign_in(email, "wrong-password", address)
    return response


def test_wrong_passwords_lock_the_account_and_then_the_right_one_is_refused(member_user: User) -> None:
    response = _fail(member_user.email, LIMIT - 1)
    assert response.status_code == 200 and ORDINARY in response.content.decode()

    response = _fail(member_user.email, 1)
    assert response.status_code == 429 and ACCOUNT_LOCKED in response.content.decode()

    # From another address too: the account is locked, whoever asks.
    client, response = _sign_in(member_user.email, PASSWORD, address="198.51.100.2")
    assert response.status_code == 429
    assert ACCOUNT_LOCKED in response.content.decode() and ORDINARY not in response.content.decode()
    assert '<form method="post"' in response.content.decode()  # the sign-in page, with its form error
    assert not _signed_in(client)


def test_an_e_mail_typed_with_capitals_is_the_same_account(member_user: User) -> None:
    """E-mails are stored in lower case; a phone's capital first letter must not make the right password
    "incorrect", nor count failures apart from the account the admin unlocks."""
    client, _ = _sign_in("  Member@Example.COM ", PASSWORD)
    assert _signed_in(client)

    for n, typed in enumerate(("MEMBER@example.com", "Member@example.com") * (LIMIT // 2)):
        _, response = _sign_in(typed, "wrong-password", address=f"198.51.100.{n}")  # one address each
    assert response.status_code == 429 and ACCOUNT_LOCKED in response.content.decode()
    assert AuditEvent.objects.filter(action="user.signin_failed", target_label="member@example.com").count() == LIMIT


def test_an_address_is_throttled_across_accounts(member_user: User) -> None:
    for n in range(LIMIT):
        _fail(f"guess{n}@example.com", 1)

    client, response = _sign_in(member_user.email, PASSWORD)
    assert response.status_code == 429 and ADDRESS_LOCKED in response.content.decode()
    assert not _signed_in(client)

    # A forwarded-for header from the client itself is not believed.
    client, response = _sign_in(member_user.email, PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99")
    assert response.status_code == 429 and not _signed_in(client)

    client, response = _sign_in(member_user.email, PASSWORD, address="198.51.100.2")
    assert response.status_code == 302 and _signed_in(client)


def test_the_lock_ends_after_a_cool_off_without_a_try(member_user: User) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        _fail(member_user.email, LIMIT)
        clock.shift(timedelta(minutes=14))
        # A try during the lock is refused and starts the cool-off again.
        assert _sign_in(member_user.email, PASSWORD)[1].status_code == 429
        clock.shift(timedelta(minutes=14))
        assert _sign_in(member_user.email, PASSWORD)[1].status_code == 429
        clock.shift(timedelta(minutes=15, seconds=1))
        client, response = _sign_in(member_user.email, PASSWORD)
    assert response.status_code == 302 and _signed_in(client)


def test_an_admin_unlocks_an_account(admin_client: Client, member_user: User, finance_user: User) -> None:
    _fail(member_user.email, LIMIT)
    assert _sign_in(member_user.email, PASSWORD, address="198.51.100.2")[1].status_code == 429
    html = admin_client.get(reverse("user_list")).content.decode()
    assert html.count(">locked</span>") == 1 and reverse("user_unlock", args=[member_user.pk]) in html

    response = admin_client.post(reverse("user_unlock", args=[member_user.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("user_list")
    html = admin_client.get(reverse("user_list")).content.decode()
    assert "may sign in again" in html and ">locked</span>" not in html
    event = AuditEvent.objects.get(action="user.unlock")
    assert event.target_id == str(member_user.pk) and event.actor_label == "admin@example.com"

    client, response = _sign_in(member_user.email, PASSWORD, address="198.51.100.2")
    assert response.status_code == 302 and _signed_in(client)


def test_only_admins_unlock_and_only_by_post(client_as: Callable[[str], Client], member_user: User) -> None:
    url = reverse("user_unlock", args=[member_user.pk])
    assert client_as("finance").post(url).status_code == 403
    assert client_as("admin").get(url).status_code == 405


def test_the_command_line_unlocks_an_account(member_user: User) -> None:
    _fail(member_user.email, LIMIT)
    assert _sign_in(member_user.email, PASSWORD, address="198.51.100.2")[1].status_code == 429
    call_command("axes_reset_username", member_user.email, stdout=StringIO())
    client, response = _sign_in(member_user.email, PASSWORD, address="198.51.100.2")
    assert response.status_code == 302 and _signed_in(client)


def test_sign_ins_failures_and_lockouts_are_audited_without_passwords(member_user: User) -> None:
    _fail(member_user.email, LIMIT + 2)
    _sign_in(member_user.email, PASSWORD, address="198.51.100.2")
    failures = AuditEvent.objects.filter(action="user.signin_failed")
    # Refused tries, the right password's among them, are failed sign-ins too.
    assert failures.count() == LIMIT + 3
    assert {(e.actor_label, e.target_type, e.target_label) for e in failures} == {
        ("203.0.113.7", "user", member_user.email), ("198.51.100.2", "user", member_user.email)}
    lockout = AuditEvent.objects.get(action="user.lockout")  # once, when the lock began
    assert lockout.target_label == member_user.email
    assert lockout.details == {"address": "203.0.113.7", "minutes": 15}
    assert not AuditEvent.objects.filter(action="user.signin").exists()

    User.objects.filter(pk=member_user.pk).update(email="other@example.com")
    client, _ = _sign_in("other@example.com", PASSWORD, address="198.51.100.3")
    assert _signed_in(client)
    signin = AuditEvent.objects.get(action="user.signin")
    assert signin.actor_id == member_user.pk and signin.target_id == str(member_user.pk)
    assert signin.details == {"address": "198.51.100.3"}
    logged = " ".join(f"{e.actor_label} {e.target_label} {e.details}" for e in AuditEvent.objects.all())
    assert "wrong-password" not in logged and PASSWORD not in logged


@pytest.mark.parametrize("name", ["ASPWEB_SIGNIN_FAILURE_LIMIT", "ASPWEB_SIGNIN_COOLOFF_MINUTES"])
def test_a_limit_below_one_stops_start_up(name: str, tmp_path: Path) -> None:
    result = run_manage(["manage.py", "check"], {name: "0"}, tmp_path)
    assert result.returncode != 0 and name in result.stderr and "must be at least 1" in result.stderr


def test_the_django_admin_sign_in_is_throttled_alike(make_user: Callable[..., User]) -> None:
    user = make_user("superuser")
    _fail(user.email, LIMIT)
    client = Client(REMOTE_ADDR="198.51.100.2")
    response = client.post(reverse("admin:login"), {"username": user.email, "password": PASSWORD})
    assert ACCOUNT_LOCKED in response.content.decode()
    assert client.get(reverse("admin:index")).status_code == 302
