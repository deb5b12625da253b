"""The Users page (search, roles as the role matrix counts them), and the words of refusals and form errors."""

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from aspweb.roles import ADMIN, FINANCE, MEMBER, people
from tests.conftest import PASSWORD
from tests.gateway_support import make_key

pytestmark = pytest.mark.django_db


def _emails(html: str) -> list[str]:
    return re.findall(r'<td><a class="truncate" href="/users/\d+/" title="[^"]*">([^<]+)</a></td>', html)


def test_the_users_page_searches_emails_and_names(admin_client: Client, make_user: Callable[..., User]) -> None:
    make_user("member", email="ann@example.com")
    User.objects.create_user("bob@corp.example", PASSWORD, name="Annabel Lee")
    make_user("finance", email="carl@example.com")
    assert _emails(admin_client.get(reverse("user_list")).content.decode()) == [
        "admin@example.com", "ann@example.com", "bob@corp.example", "carl@example.com"]
    html = admin_client.get(reverse("user_list"), {"q": " ANN "}).content.decode()
    assert _emails(html) == ["ann@example.com", "bob@corp.example"]
    assert "2 users matching “ANN”" in html and 'value="ANN"' in html
    html = admin_client.get(reverse("user_list"), {"q": "<nobody>"}).content.decode()
    assert _emails(html) == [] and "No user's e-mail or name holds “&lt;nobody&gt;”." in html


def test_a_superuser_shows_as_an_admin(admin_client: Client, make_user: Callable[..., User]) -> None:
    boss = make_user("superuser", email="boss@example.com")
    html = admin_client.get(reverse("user_list"), {"q": "boss"}).content.decode()
    row = html.split("<tbody>", 1)[1].split("</tr>", 1)[0]
    assert '<span class="badge">Admin</span>' in row and ">none<" not in row and "superuser" in row
    boss.groups.add(Group.objects.get(name=ADMIN))  # an Admin as well: one badge still
    row = admin_client.get(reverse("user_list"), {"q": "boss"}).content.decode().split("<tbody>", 1)[1]
    assert row.split("</tr>", 1)[0].count('<span class="badge">Admin</span>') == 1


@pytest.mark.parametrize(("roles", "words"), [
    ((ADMIN,), "admins"),
    ((FINANCE, ADMIN), "finance or admins"),
    ((MEMBER, ADMIN, FINANCE), "members, admins or finance"),
])
def test_roles_read_as_a_list_of_people(roles: tuple[str, ...], words: str) -> None:
    assert people(roles) == words


def test_a_refusal_names_who_may_see_the_page(client_as: Callable[[str], Client]) -> None:
    response = client_as("none").get(reverse("apikey_list"))
    assert response.status_code == 403
    assert "This page is for admins, finance or members." in response.content.decode()
    response = client_as("member").get(reverse("dashboard"))
    assert response.status_code == 403 and "This page is for admins or finance." in response.content.decode()


def test_an_invalid_address_is_named(admin_client: Client, make_user: Callable[..., User]) -> None:
    response = admin_client.post(reverse("user_add"), {"email": "ann@@example", "roles": ["Member"], "password": ""})
    assert "“ann@@example” is not a valid e-mail address." in response.content.decode()
    assert "Enter a valid email address." not in response.content.decode()
    response = Client().post(reverse("login"), {"username": "ann at example", "password": "x"})
    assert "“ann at example” is not a valid e-mail address." in response.content.decode()


def test_key_counts_read_one_api_key_and_two_api_keys(admin_client: Client) -> None:
    make_key(name="one")
    assert "1 live API key, everyone's" in admin_client.get(reverse("apikey_list")).content.decode()
    make_key(name="two")
    assert "2 live API keys, everyone's" in admin_client.get(reverse("apikey_list")).content.decode()
    assert "2 API keys, everyone's" in admin_client.get(reverse("apikey_list"), {"all": "1"}).content.decode()


def _forms() -> list[type]:
    import importlib
    import inspect
    import pkgutil

    from django import forms

    found = []
    for app in ("accounts", "budgets", "playground", "providers", "usage"):
        for module in pkgutil.walk_packages(importlib.import_module(app).__path__, f"{app}."):
            if ".migrations" in module.name or ".management" in module.name:
                continue
            for _, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
                if issubclass(cls, forms.BaseForm) and cls.__module__.startswith(app):
                    found.append(cls)
    return found


def test_no_help_text_holds_literal_backticks() -> None:
    from django.apps import apps

    texts = {f"{model.__name__}.{field.name}": str(getattr(field, "help_text", ""))
             for model in apps.get_models() for field in model._meta.get_fields()}
    forms = _forms()
    assert len(forms) > 5
    texts |= {f"{form.__name__}.{name}": str(field.help_text) for form in forms
              for name, field in form.base_fields.items()}
    assert [name for name, text in texts.items() if "`" in text] == []


def test_the_users_page_writes_sign_in_times_as_the_other_pages_do(admin_client: Client) -> None:
    """"just now" and "3 hours ago" with the exact time in the title, as keys and providers write them; not
    humanize's "now" or "2 days, 3 hours ago"."""
    User.objects.create_user("old@example.com", PASSWORD, last_login=timezone.now() - timedelta(days=2, hours=3))
    html = admin_client.get(reverse("user_list")).content.decode()
    assert ">just now</time>" in html and ">2 days ago</time>" in html and "UTC\">" in html
    assert "hours ago" not in html


def test_the_user_form_says_e_mail_as_the_sign_in_page_does(admin_client: Client) -> None:
    html = admin_client.get(reverse("user_add")).content.decode()
    assert re.search(r"<label[^>]*>E-mail", html) and not re.search(r"<label[^>]*>Email", html)


def test_a_label_names_an_input_or_no_id_at_all(admin_client: Client, make_user: Callable[..., User]) -> None:
    """A multiple choice (roles, a team's members) has no one input to point at: its name is a label without
    `for`, not one pointing at an empty id, while each choice is labelled by its own box."""
    member = make_user("member")
    for path in (reverse("user_edit", args=[member.pk]), reverse("user_add"), reverse("team_list")):
        page = admin_client.get(path).content.decode()
        assert 'for=""' not in page, path
        ids = set(re.findall(r'\bid="([^"]+)"', page))
        assert set(re.findall(r'\bfor="([^"]+)"', page)) <= ids, path
    assert re.search(r"<label>Roles</label>", admin_client.get(reverse("user_edit", args=[member.pk])).content.decode())
