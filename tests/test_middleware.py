"""The middleware runs on the event loop under ASGI (aspweb/middleware.py): an async view is reached, and
its response leaves, without a thread hop for any middleware; the hops that remain are needed ones."""

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import AsyncClient

from accounts.models import User
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

MIDDLEWARE_MODULES = ("django.middleware", "django.contrib.sessions.middleware", "django.contrib.auth.middleware",
                      "django.contrib.messages.middleware", "whitenoise", "csp", "aspweb.middleware")


def test_every_middleware_is_the_event_loop_kind() -> None:
    assert all(path.startswith(("aspweb.middleware.", "django_htmx.")) for path in settings.MIDDLEWARE)


def test_an_async_view_costs_no_middleware_hop(hops: list[str]) -> None:
    response = async_to_sync(AsyncClient().get)("/v1/openapi.json")
    assert response.status_code == 200
    # What remains is Django's handler itself: its request_started and request_finished signals.
    assert hops and not [hop for hop in hops if hop.startswith(MIDDLEWARE_MODULES)], hops
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"


def test_signing_in_saves_the_session(hops: list[str]) -> None:
    """Signing in changes the session: the session middleware hops to save it, and the next request,
    signed in, sees it."""
    client = AsyncClient()
    assert async_to_sync(client.get)("/login/").status_code == 200
    User.objects.create_user("mw@example.com", PASSWORD, name="Mw")
    signed_in = async_to_sync(client.post)("/login/", {"username": "mw@example.com", "password": PASSWORD})
    assert signed_in.status_code == 302
    assert any(hop.endswith("SessionMiddleware.process_response") for hop in hops), hops
    home = async_to_sync(client.get)("/")
    assert home.status_code == 200 and b"mw@example.com" in home.content


def test_static_files_are_served_from_the_event_loop(hops: list[str]) -> None:
    response = async_to_sync(AsyncClient().get)(settings.STATIC_URL + "js/playground.js")
    assert response.status_code == 200
    assert not [hop for hop in hops if "whitenoise" in hop or "StaticFiles" in hop], hops


def test_a_message_from_a_sync_view_is_shown_once(make_user: object) -> None:
    admin, member = make_user("superuser"), make_user("member")
    client = AsyncClient()
    client.force_login(admin)
    saved = async_to_sync(client.post)(f"/users/{member.pk}/", {
        "email": member.email, "name": "Renamed", "is_active": "on"})
    assert saved.status_code == 302
    listing = async_to_sync(client.get)("/users/")
    assert f"{member.email} saved.".encode() in listing.content
    again = async_to_sync(client.get)("/users/")
    assert f"{member.email} saved.".encode() not in again.content


def test_deploy_checks_find_the_security_middleware_by_class(settings: object) -> None:
    from aspweb.checks import required_middleware

    assert required_middleware() == []
    settings.MIDDLEWARE = [path for path in settings.MIDDLEWARE
                           if not path.endswith(("SecurityMiddleware", "CsrfViewMiddleware"))]
    assert sorted(warning.id for warning in required_middleware()) == ["aspweb.security.W001", "aspweb.security.W003"]
