"""The role matrix: every URL of the app against every role.

A URL added without an entry in POLICY fails `test_every_url_has_a_policy`, so the matrix cannot fall
behind the code.
"""

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from providers.models import Model, Provider

ROLES = ["anonymous", "none", "member", "finance", "admin", "superuser"]

# url name -> (who may use it, HTTP method the matrix uses)
POLICY: dict[str, tuple[str, str]] = {
    "home": ("signed_in", "GET"),
    "login": ("public", "GET"),
    "logout": ("public", "POST"),
    "user_list": ("admin", "GET"),
    "user_add": ("admin", "GET"),
    "user_edit": ("admin", "GET"),
    "user_password": ("admin", "GET"),
    "audit_list": ("admin", "GET"),
    "provider_list": ("admin", "GET"),
    "provider_add_choose": ("admin", "GET"),
    "provider_add": ("admin", "GET"),
    "provider_detail": ("admin", "GET"),
    "provider_edit": ("admin", "GET"),
    "provider_set_enabled": ("admin", "POST"),
    "provider_delete": ("admin", "GET"),
    "provider_test": ("admin", "POST"),
    "provider_sync": ("admin", "POST"),
    "model_add": ("admin", "GET"),
    "model_detail": ("admin", "GET"),
}


def _app_url_names(patterns: list, namespace: str = "") -> set[str]:
    names = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.app_name == "admin":  # Django admin: staff permissions, tested on its own
                continue
            names |= _app_url_names(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(pattern.name)
    return names


def test_every_url_has_a_policy() -> None:
    assert _app_url_names(get_resolver().url_patterns) == set(POLICY)


@pytest.fixture
def objects(db: None, make_user: Callable) -> dict[str, int | str]:
    provider = Provider.objects.create(name="matrix", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="m1")
    other = make_user("member", email="someone@example.com")
    return {"provider": provider.pk, "model": model.pk, "user": other.pk, "kind": "openai"}


def _url(name: str, objects: dict[str, int | str]) -> str:
    kwargs = {
        "user_edit": {"pk": objects["user"]}, "user_password": {"pk": objects["user"]},
        "provider_add": {"kind": objects["kind"]}, "model_detail": {"pk": objects["model"]},
    }.get(name)
    if kwargs is None and ((name.startswith("provider_") and name not in ("provider_list", "provider_add_choose"))
                           or name == "model_add"):
        kwargs = {"pk": objects["provider"]}
    return reverse(name, kwargs=kwargs)


def _expected(policy: str, role: str) -> str:
    if policy == "public":
        return "allowed"
    if role == "anonymous":
        return "login"
    if policy == "signed_in":
        return "allowed"
    return "allowed" if role in ("admin", "superuser") else "forbidden"


def _outcome(response) -> str:
    if response.status_code == 403:
        return "forbidden"
    if response.status_code == 302 and response["Location"].startswith(reverse("login") + "?next="):
        return "login"
    if response.status_code in (200, 302):
        return "allowed"
    return f"status {response.status_code}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(POLICY))
def test_role_matrix(name: str, role: str, objects: dict, client_as: Callable[[str], Client]) -> None:
    policy, method = POLICY[name]
    client = client_as(role)
    url = _url(name, objects)
    response = client.post(url) if method == "POST" else client.get(url)
    assert _outcome(response) == _expected(policy, role), f"{role} {method} {url}"
    if response.status_code == 403:
        assert b"You do not have access to this page" in response.content


@pytest.mark.parametrize(
    ("role", "visible", "hidden"),
    [
        ("admin", ["Providers", "Users", "Audit log"], []),
        ("member", [], ["Providers", "Users", "Audit log"]),
        ("finance", [], ["Providers", "Users", "Audit log"]),
    ],
)
def test_navigation_shows_each_role_only_what_it_may_use(role: str, visible: list[str], hidden: list[str],
                                                         client_as: Callable[[str], Client]) -> None:
    html = client_as(role).get(reverse("home")).content.decode()
    nav = html.split('<nav aria-label="Main">', 1)[1].split("</nav>", 1)[0]
    for label in visible:
        assert f">{label}</a>" in nav
    for label in hidden:
        assert f">{label}</a>" not in nav


def test_django_admin_is_for_staff_only(client_as: Callable[[str], Client]) -> None:
    assert client_as("admin").get("/django-admin/").status_code == 302  # group admin is not staff
    assert client_as("superuser").get("/django-admin/").status_code == 200
