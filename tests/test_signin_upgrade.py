"""Upgrading keeps people signed in: a session names its backend by dotted path, and the backend's rename
must not end the sessions signed in before it."""

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_a_session_signed_in_under_the_old_backend_name_stays_signed_in(make_user: object) -> None:
    user = make_user("member")
    client = Client()
    client.force_login(user, backend="accounts.backends.CachedUserBackend")
    session = client.session
    session[BACKEND_SESSION_KEY] = "accounts.backends.KeptUserBackend"  # as stored before the rename
    session.save()

    response = client.get(reverse("home"))

    assert response.status_code == 200
    assert response.wsgi_request.user == user


def test_the_old_backend_name_signs_nobody_in(make_user: object) -> None:
    from accounts.backends import KeptUserBackend

    user = make_user("member")
    user.set_password("a long passphrase 1")
    user.save()
    assert KeptUserBackend().authenticate(None, username=user.email, password="a long passphrase 1") is None
    assert settings.AUTHENTICATION_BACKENDS.index("accounts.backends.KeptUserBackend") > \
        settings.AUTHENTICATION_BACKENDS.index("accounts.backends.CachedUserBackend")
