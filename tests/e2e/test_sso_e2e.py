"""Single sign-on as a person meets it: headless Chromium on aspweb's sign-in page, off to an OpenID provider
running on loopback (tests/fakes/oidc.py, Authlib's authorization server, RS256-signed ID tokens), its own
sign-in form, and back."""

from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from accounts.models import AuditEvent, User
from aspweb.roles import ADMIN, FINANCE, MEMBER, user_roles
from tests.conftest import PASSWORD
from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, Account, FakeOpenIDProvider


@pytest.fixture
def provider(settings: object) -> Iterator[FakeOpenIDProvider]:
    with FakeOpenIDProvider() as fake:
        settings.SSO_ISSUER = fake.issuer
        settings.SSO_CLIENT_ID = CLIENT_ID
        settings.SSO_CLIENT_SECRET = CLIENT_SECRET
        settings.SSO_SCOPES = "openid email profile groups"
        settings.SSO_GROUPS_CLAIM = "groups"
        settings.SSO_GROUP_ROLES = [("aspweb-admins", ADMIN), ("finance", FINANCE), ("staff", MEMBER)]
        settings.SSO_GROUP_TEAMS = [("eng-platform", "Platform"), ("data", "Data science")]
        settings.SSO_DEFAULT_ROLES = []
        settings.SSO_NAME = "Acme ID"
        settings.SSO_EMAIL_DOMAINS = []
        settings.PASSWORD_SIGNIN = True
        yield fake


def sign_in_at_provider(page: Page, provider: FakeOpenIDProvider, account: Account, next_path: str = "") -> None:
    page.goto("/login/" + (f"?next={next_path}" if next_path else ""))
    with page.expect_navigation():
        page.get_by_role("link", name="Sign in with Acme ID").click()
    assert page.url.startswith(provider.issuer + "/authorize?"), page.url
    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible()
    page.get_by_label("Username").fill(account.username)
    page.get_by_label("Password").fill(account.password)
    with page.expect_navigation():
        page.get_by_role("button", name="Continue").click()


def ann(groups: list[str]) -> Account:
    return Account(username="ann", password="ann-at-the-provider", email="ann@example.com", name="Ann Lee",
                   groups=groups)


@pytest.mark.console_errors(r"status of 403 \(Forbidden\)")
def test_the_first_sign_in_creates_the_user_and_groups_give_roles_and_teams(
        page: Page, provider: FakeOpenIDProvider) -> None:
    account = provider.add_account(ann(["finance", "eng-platform"]))
    sign_in_at_provider(page, provider, account, next_path="/usage/")
    assert urlsplit(page.url).path == "/usage/"
    user = User.objects.get(email="ann@example.com")
    assert user_roles(user) == {FINANCE} and user.name == "Ann Lee"
    assert list(user.teams.values_list("name", flat=True)) == ["Platform"]
    assert page.goto("/users/").status == 403  # finance, not admin

    # The provider moves Ann; her next sign-in follows.
    page.context.clear_cookies()
    account.groups = ["aspweb-admins", "data"]
    sign_in_at_provider(page, provider, account, next_path="/users/")
    assert urlsplit(page.url).path == "/users/"
    expect(page.get_by_role("cell", name="ann@example.com")).to_be_visible()
    user = User.objects.get(email="ann@example.com")
    assert user_roles(user) == {ADMIN}
    assert list(user.teams.values_list("name", flat=True)) == ["Data science"]
    assert AuditEvent.objects.filter(action="user.signin", actor=user).count() == 2


@pytest.mark.console_errors(r"status of 400 \(Bad Request\)")
@pytest.mark.parametrize("knob", ["sign_with_rogue_key", "audience", "expired"])
def test_a_token_aspweb_cannot_trust_leaves_the_person_signed_out(page: Page, provider: FakeOpenIDProvider,
                                                                  knob: str) -> None:
    setattr(provider, knob, "another-application" if knob == "audience" else True)
    account = provider.add_account(ann(["aspweb-admins"]))
    sign_in_at_provider(page, provider, account)
    assert urlsplit(page.url).path == "/login/sso/callback/"
    expect(page.get_by_role("alert")).to_contain_text("Signing in with Acme ID failed. Try again.")
    expect(page.get_by_role("link", name="Sign in with Acme ID")).to_be_visible()
    page.goto("/")
    assert urlsplit(page.url).path == "/login/"
    assert not User.objects.exists()
    assert AuditEvent.objects.filter(action="user.signin_failed").count() == 1


@pytest.mark.console_errors(r"status of 403 \(Forbidden\)")
def test_someone_in_no_mapped_group_is_told_why(page: Page, provider: FakeOpenIDProvider) -> None:
    account = provider.add_account(ann(["contractors"]))
    sign_in_at_provider(page, provider, account)
    expect(page.get_by_role("alert")).to_contain_text("in none of the groups that give a role in aspweb")


def test_with_password_sign_in_off_only_the_break_glass_superuser_uses_a_password(
        page: Page, provider: FakeOpenIDProvider, settings: object, make_user: Callable[..., User]) -> None:
    settings.PASSWORD_SIGNIN = False
    member = make_user("member")
    root = User.objects.create_superuser("root@example.com", PASSWORD)
    page.goto("/login/")
    expect(page.get_by_role("link", name="Sign in with Acme ID")).to_be_visible()
    expect(page.get_by_label("E-mail")).to_be_hidden()  # folded away under the break-glass summary
    page.get_by_text("Break-glass sign-in (superusers only)").click()
    for user in (member, root):
        page.get_by_label("E-mail").fill(user.email)
        page.get_by_label("Password").fill(PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in", exact=True).click()
        if user is member:
            expect(page.get_by_role("alert")).to_contain_text("Password sign-in is turned off")
            expect(page.get_by_label("E-mail")).to_be_visible()  # the form stays open with its error
    assert urlsplit(page.url).path == "/"
