"""Sign-in, sign-out, user management by admins, and the first-admin command.

Sign-ins checked with the test client's `login` hand it a request: the throttling backend refuses sign-ins
that come without one, since it could not count their address.
"""

from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.http import HttpRequest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent, User
from aspweb.roles import user_roles
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_sign_in_with_email_and_sign_out(make_user: Callable) -> None:
    make_user("member", email="Mia@Example.com".lower())
    client = Client()
    bad = client.post(reverse("login"), {"username": "mia@example.com", "password": "wrong"})
    assert bad.status_code == 200
    assert "Please enter a correct e-mail and password" in bad.content.decode()
    good = client.post(reverse("login"), {"username": "mia@example.com", "password": PASSWORD})
    assert good.status_code == 302 and good["Location"] == reverse("home")
    assert "mia@example.com" in client.get(reverse("home")).content.decode()
    client.post(reverse("logout"))
    assert client.get(reverse("home"))["Location"].startswith(reverse("login"))


def test_sign_in_returns_to_the_page_asked_for(make_user: Callable) -> None:
    make_user("admin")
    client = Client()
    response = client.get(reverse("provider_list"))
    assert response["Location"] == f"{reverse('login')}?next={reverse('provider_list')}"
    response = client.post(response["Location"], {"username": "admin@example.com", "password": PASSWORD,
                                                  "next": reverse("provider_list")})
    assert response["Location"] == reverse("provider_list")


def test_admin_creates_user_with_roles_and_generated_password(admin_client: Client) -> None:
    response = admin_client.post(reverse("user_add"), {"email": "New@Example.com", "name": "New",
                                                       "is_active": "on", "roles": ["Member", "Finance"],
                                                       "password": ""})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    password = response.context["password"]
    assert password and password in response.content.decode()
    user = User.objects.get(email="new@example.com")
    assert user_roles(user) == {"Member", "Finance"}
    assert Client().login(request=HttpRequest(), username="new@example.com", password=password)
    event = AuditEvent.objects.get(action="user.create")
    assert event.details == {"roles": ["Finance", "Member"]}
    assert password not in str(event.details)


def test_duplicate_email_and_weak_password_are_form_errors(admin_client: Client, make_user: Callable) -> None:
    make_user("member", email="taken@example.com")
    response = admin_client.post(reverse("user_add"), {"email": "TAKEN@example.com", "roles": ["Member"],
                                                       "password": ""})
    assert "A user with the e-mail taken@example.com already exists." in response.content.decode()
    response = admin_client.post(reverse("user_add"), {"email": "x@example.com", "roles": ["Member"],
                                                       "password": "123"})
    assert "This password is too short" in response.content.decode()
    assert not User.objects.filter(email="x@example.com").exists()


def test_admin_changes_roles_and_it_is_audited(admin_client: Client, make_user: Callable) -> None:
    user = make_user("member", email="m@example.com")
    admin_client.post(reverse("user_edit", args=[user.pk]), {"email": "m@example.com", "name": "M",
                                                             "is_active": "on", "roles": ["Finance"]})
    user = User.objects.get(pk=user.pk)
    assert user_roles(user) == {"Finance"}
    event = AuditEvent.objects.get(action="user.roles")
    assert event.details == {"added": ["Finance"], "removed": ["Member"]}
    assert event.actor.email == "admin@example.com"


def test_admin_cannot_remove_own_admin_role(make_user: Callable) -> None:
    me = make_user("admin")
    client = Client()
    client.force_login(me)
    response = client.post(reverse("user_edit", args=[me.pk]), {"email": me.email, "is_active": "on",
                                                                "roles": ["Member"]})
    assert "cannot remove your own Admin role" in response.content.decode()
    assert user_roles(User.objects.get(pk=me.pk)) == {"Admin"}


def test_admin_resets_password_with_a_chosen_one(admin_client: Client, make_user: Callable) -> None:
    user = make_user("member")
    response = admin_client.post(reverse("user_password", args=[user.pk]), {"password": "a-long-new-passphrase"})
    assert response.status_code == 200 and response.context["password"] is None
    assert Client().login(request=HttpRequest(), username=user.email, password="a-long-new-passphrase")
    assert not Client().login(request=HttpRequest(), username=user.email, password=PASSWORD)
    assert AuditEvent.objects.filter(action="user.password_reset", target_id=str(user.pk)).exists()


def test_inactive_user_cannot_sign_in(admin_client: Client, make_user: Callable) -> None:
    user = make_user("member", email="gone@example.com")
    admin_client.post(reverse("user_edit", args=[user.pk]), {"email": "gone@example.com", "roles": ["Member"]})
    assert not Client().login(request=HttpRequest(), username="gone@example.com", password=PASSWORD)


def test_superuser_counts_as_admin(make_user: Callable) -> None:
    assert user_roles(make_user("superuser")) == {"Admin"}
    assert user_roles(make_user("none")) == frozenset()


def test_audit_log_lists_and_filters(admin_client: Client, make_user: Callable) -> None:
    user = make_user("member", email="f@example.com")
    admin_client.post(reverse("user_password", args=[user.pk]), {"password": ""})
    html = admin_client.get(reverse("audit_list") + "?type=user").content.decode().split("<tbody>")[1]
    assert "<code>user.password_reset</code>" in html and "f@example.com" in html
    html = admin_client.get(reverse("audit_list") + "?type=user&actor=nobody").content.decode()
    assert "<code>user.password_reset</code>" not in html.split("<tbody>")[1]


def test_ensure_admin_from_environment_then_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASPWEB_ADMIN_EMAIL", "Boss@Example.com")
    monkeypatch.setenv("ASPWEB_ADMIN_PASSWORD", "a-long-admin-passphrase")
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    assert "Created the first admin: boss@example.com" in out.getvalue()
    assert "a-long-admin-passphrase" not in out.getvalue()
    assert Client().login(request=HttpRequest(), username="boss@example.com", password="a-long-admin-passphrase")
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    assert "already exists" in out.getvalue()
    assert User.objects.count() == 1


def test_ensure_admin_generates_and_prints_a_password_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASPWEB_ADMIN_EMAIL", raising=False)
    monkeypatch.delenv("ASPWEB_ADMIN_PASSWORD", raising=False)
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    password = out.getvalue().split("shown only this once")[1].split()[-1]
    assert Client().login(request=HttpRequest(), username="admin@localhost", password=password)
    assert user_roles(User.objects.get()) == {"Admin"}


def test_ensure_admin_rejects_a_bad_email(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASPWEB_ADMIN_EMAIL", "not-an-email")
    with pytest.raises(CommandError, match="not an e-mail address"):
        call_command("ensure_admin", stdout=StringIO())
