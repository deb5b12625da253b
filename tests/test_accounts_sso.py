"""Single sign-on (accounts/sso.py) against a real OpenID provider on loopback (tests/fakes/oidc.py): the
code flow through Django's test client and the provider's own sign-in form, with real signed ID tokens.
The browser version of the same flow is tests/e2e/test_sso_e2e.py."""

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from accounts import sso
from accounts.models import AuditEvent, Team, User
from aspweb.roles import ADMIN, FINANCE, MEMBER, user_roles
from tests.conftest import PASSWORD
from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, Account, FakeOpenIDProvider
from tests.test_settings import _run

pytestmark = pytest.mark.django_db

GROUP_ROLES = [("aspweb-admins", ADMIN), ("finance", FINANCE), ("staff", MEMBER)]
GROUP_TEAMS = [("eng-platform", "Platform"), ("/data/science", "Data science")]


@pytest.fixture
def provider(settings: object) -> Iterator[FakeOpenIDProvider]:
    with FakeOpenIDProvider() as fake:
        settings.SSO_ISSUER = fake.issuer
        settings.SSO_CLIENT_ID = CLIENT_ID
        settings.SSO_CLIENT_SECRET = CLIENT_SECRET
        settings.SSO_SCOPES = "openid email profile groups"
        settings.SSO_GROUPS_CLAIM = "groups"
        settings.SSO_GROUP_ROLES = GROUP_ROLES
        settings.SSO_GROUP_TEAMS = GROUP_TEAMS
        settings.SSO_DEFAULT_ROLES = []
        settings.SSO_NAME = "Acme ID"
        settings.SSO_EMAIL_DOMAINS = []
        settings.PASSWORD_SIGNIN = True
        yield fake


def sso_sign_in(client: Client, provider: FakeOpenIDProvider, account: Account, next_path: str = "") -> object:
    """Press "Sign in with ...", sign in at the provider, follow it back; the callback's response."""
    start = client.get("/login/sso/" + (f"?next={next_path}" if next_path else ""))
    assert start.status_code == 302, start.content
    authorize = start["Location"]
    assert authorize.startswith(provider.issuer + "/authorize?")
    answer = requests.post(authorize, data={"username": account.username, "password": account.password},
                           allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/login/sso/callback/"
    return client.get(f"{back.path}?{back.query}")


def ann(groups: list[str], **fields: object) -> Account:
    return Account(username="ann", password="ann-at-the-provider", email="Ann@Example.com", name="Ann Lee",
                   groups=groups, **fields)


def test_the_first_sign_in_creates_the_user_with_roles_and_teams_from_groups(provider: FakeOpenIDProvider) -> None:
    account = provider.add_account(ann(["finance", "eng-platform", "/data/science", "unmapped"]))
    client = Client()
    response = sso_sign_in(client, provider, account, next_path="/usage/")
    assert response.status_code == 302 and response["Location"] == "/usage/"
    user = User.objects.get(email="ann@example.com")
    assert user.name == "Ann Lee" and not user.has_usable_password()
    assert user_roles(user) == {FINANCE}
    assert set(user.teams.values_list("name", flat=True)) == {"Platform", "Data science"}
    assert client.get("/").status_code == 200
    signin = AuditEvent.objects.get(action="user.signin")
    assert signin.actor == user and signin.details["method"] == "single sign-on"
    assert AuditEvent.objects.get(action="user.create").actor_label == "Acme ID"
    roles = AuditEvent.objects.get(action="user.roles")
    assert roles.details["added"] == [FINANCE] and roles.actor_label == "Acme ID"


def test_roles_and_teams_follow_the_groups_at_every_sign_in(provider: FakeOpenIDProvider) -> None:
    account = provider.add_account(ann(["finance", "eng-platform"]))
    assert sso_sign_in(Client(), provider, account).status_code == 302
    account.groups = ["aspweb-admins", "staff", "/data/science"]
    assert sso_sign_in(Client(), provider, account).status_code == 302
    user = User.objects.get(email="ann@example.com")
    assert user_roles(user) == {ADMIN, MEMBER}
    assert list(user.teams.values_list("name", flat=True)) == ["Data science"]
    assert Team.objects.filter(name="Platform").exists()  # a team outlives its last member
    changed = AuditEvent.objects.filter(action="user.roles").order_by("created_at", "id").last()
    assert changed.details == {"added": [ADMIN, MEMBER], "removed": [FINANCE], "source": "groups"}


def test_an_existing_password_user_is_the_same_account_by_e_mail(provider: FakeOpenIDProvider,
                                                                 make_user: object) -> None:
    existing = make_user("member", email="ann@example.com")
    account = provider.add_account(ann(["aspweb-admins"]))
    assert sso_sign_in(Client(), provider, account).status_code == 302
    assert User.objects.count() == 1
    existing.refresh_from_db()
    assert user_roles(existing) == {ADMIN} and existing.check_password(PASSWORD)


def test_no_role_from_the_groups_is_refused_and_audited(provider: FakeOpenIDProvider) -> None:
    account = provider.add_account(ann(["unmapped"]))
    client = Client()
    response = sso_sign_in(client, provider, account)
    assert response.status_code == 403
    assert "none of the groups that give a role" in response.content.decode()
    assert client.get("/").status_code == 302  # not signed in
    failed = AuditEvent.objects.get(action="user.signin_failed")
    assert failed.details["reason"] == "refused" and failed.target_label == "ann@example.com"


def test_default_roles_admit_people_whose_provider_sends_no_groups(provider: FakeOpenIDProvider,
                                                                  settings: object) -> None:
    settings.SSO_DEFAULT_ROLES = [MEMBER]
    account = provider.add_account(ann([]))
    assert sso_sign_in(Client(), provider, account).status_code == 302
    assert user_roles(User.objects.get(email="ann@example.com")) == {MEMBER}


def test_without_a_groups_claim_roles_are_kept_in_aspweb(provider: FakeOpenIDProvider, settings: object) -> None:
    settings.SSO_GROUPS_CLAIM = ""
    settings.SSO_DEFAULT_ROLES = [MEMBER]
    account = provider.add_account(ann(["aspweb-admins", "eng-platform"]))  # sent, but not read
    assert sso_sign_in(Client(), provider, account).status_code == 302
    user = User.objects.get(email="ann@example.com")
    assert user_roles(user) == {MEMBER} and not user.teams.exists()
    user.groups.set([Group.objects.get(name=FINANCE)])  # an admin makes her finance in aspweb
    assert sso_sign_in(Client(), provider, account).status_code == 302
    assert set(user.groups.values_list("name", flat=True)) == {FINANCE}


def test_a_nested_claim_can_hold_the_groups(provider: FakeOpenIDProvider, settings: object) -> None:
    settings.SSO_GROUPS_CLAIM = "realm_access.roles"
    account = provider.add_account(ann(["staff"], extra_claims={"realm_access": {"roles": ["finance"]}}))
    assert sso_sign_in(Client(), provider, account).status_code == 302
    assert user_roles(User.objects.get(email="ann@example.com")) == {FINANCE}


def test_only_the_allowed_e_mail_domains_sign_in(provider: FakeOpenIDProvider, settings: object) -> None:
    settings.SSO_EMAIL_DOMAINS = ["acme.example"]
    account = provider.add_account(ann(["staff"]))
    response = sso_sign_in(Client(), provider, account)
    assert response.status_code == 403 and "only addresses at acme.example" in response.content.decode()
    account.email = "ann@ACME.example"
    assert sso_sign_in(Client(), provider, account).status_code == 302


def test_a_deactivated_user_is_refused(provider: FakeOpenIDProvider, make_user: object) -> None:
    user = make_user("member", email="ann@example.com")
    user.is_active = False
    user.save()
    account = provider.add_account(ann(["staff"]))
    response = sso_sign_in(Client(), provider, account)
    assert response.status_code == 403 and "deactivated" in response.content.decode()


def test_an_unverified_e_mail_is_refused(provider: FakeOpenIDProvider) -> None:
    account = provider.add_account(ann(["staff"], email_verified=False))
    response = sso_sign_in(Client(), provider, account)
    assert response.status_code == 403 and "not verified" in response.content.decode()
    assert not User.objects.exists()


@pytest.mark.parametrize(("knob", "reason"), [
    ("sign_with_rogue_key", "bad_signature"),
    ("audience", "invalid_claim: Invalid claim: 'aud'"),
    ("expired", "expired_token"),
])
def test_a_token_that_fails_validation_signs_nobody_in(provider: FakeOpenIDProvider, knob: str, reason: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    setattr(provider, knob, "someone-else" if knob == "audience" else True)
    account = provider.add_account(ann(["aspweb-admins"]))
    client = Client()
    with caplog.at_level(logging.DEBUG):
        response = sso_sign_in(client, provider, account)
    assert response.status_code == 400
    assert "Signing in with Acme ID failed" in response.content.decode()
    assert provider.tokens_issued == 1  # the provider did answer; aspweb refused what it sent
    assert not User.objects.exists()
    assert client.get("/").status_code == 302
    failed = AuditEvent.objects.get(action="user.signin_failed")
    assert failed.details["reason"].startswith(reason), failed.details
    assert CLIENT_SECRET not in caplog.text and CLIENT_SECRET not in str(failed.details)
    # No token (a JWT starts "eyJ"), nor the PKCE verifier Authlib logs at DEBUG, reaches the logs.
    assert "eyJ" not in caplog.text and "code_verifier" not in caplog.text.lower()


def test_a_callback_without_the_sessions_state_is_refused(provider: FakeOpenIDProvider) -> None:
    account = provider.add_account(ann(["staff"]))
    first = Client()
    start = first.get("/login/sso/")
    answer = requests.post(start["Location"], data={"username": "ann", "password": account.password},
                           allow_redirects=False, timeout=10)
    back = urlsplit(answer.headers["Location"])
    # Another browser (an attacker's) cannot finish someone else's sign-in.
    response = Client().get(f"{back.path}?{back.query}")
    assert response.status_code == 400
    assert AuditEvent.objects.get(action="user.signin_failed").details["reason"] == "mismatching_state"
    assert not User.objects.exists()


def test_a_wrong_client_secret_is_refused_by_the_provider_and_never_repeated(provider: FakeOpenIDProvider,
                                                                            settings: object) -> None:
    settings.SSO_CLIENT_SECRET = "not-the-registered-secret"
    account = provider.add_account(ann(["staff"]))
    response = sso_sign_in(Client(), provider, account)
    assert response.status_code == 400 and provider.tokens_issued == 0
    failed = AuditEvent.objects.get(action="user.signin_failed")
    assert failed.details["reason"] == "invalid_client"
    assert "not-the-registered-secret" not in response.content.decode() + str(failed.details)


def test_the_provider_saying_no_is_a_clear_error(provider: FakeOpenIDProvider) -> None:
    client = Client()
    start = client.get("/login/sso/")
    state = dict(parse_qsl(urlsplit(start["Location"]).query))["state"]
    response = client.get(f"/login/sso/callback/?error=access_denied&state={state}")
    assert response.status_code == 400 and "Signing in with Acme ID failed" in response.content.decode()
    assert AuditEvent.objects.get(action="user.signin_failed").details["reason"] == "access_denied"


def test_an_unreachable_provider_is_a_clear_error(settings: object) -> None:
    settings.SSO_ISSUER = "http://127.0.0.1:9"  # the discard port: nothing listens
    settings.SSO_CLIENT_ID, settings.SSO_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    response = Client().get("/login/sso/")
    assert response.status_code == 502 and "could not be reached" in response.content.decode()


def test_single_sign_on_is_absent_unless_set_up(settings: object) -> None:
    settings.SSO_ISSUER = ""
    assert Client().get("/login/sso/").status_code == 404
    assert Client().get("/login/sso/callback/?code=x&state=y").status_code == 404
    assert "Sign in with" not in Client().get("/login/").content.decode()


def test_the_sign_in_page_offers_the_provider_and_keeps_next(provider: FakeOpenIDProvider) -> None:
    page = Client().get("/login/?next=/usage/").content.decode()
    assert "Sign in with Acme ID" in page and 'href="/login/sso/?next=/usage/"' in page
    assert CLIENT_SECRET not in page


def test_an_off_site_next_is_dropped(provider: FakeOpenIDProvider) -> None:
    account = provider.add_account(ann(["staff"]))
    response = sso_sign_in(Client(), provider, account, next_path="https://evil.example.com/")
    assert response.status_code == 302 and response["Location"] == "/"


def test_password_sign_in_off_leaves_only_the_break_glass_superuser(provider: FakeOpenIDProvider,
                                                                   settings: object, make_user: object) -> None:
    settings.PASSWORD_SIGNIN = False
    member = make_user("member")
    root = User.objects.create_superuser("root@example.com", PASSWORD)
    refused = Client().post("/login/", {"username": member.email, "password": PASSWORD})
    assert refused.status_code == 200
    assert "Password sign-in is turned off. Sign in with Acme ID instead." in refused.content.decode()
    assert AuditEvent.objects.get(action="user.signin_failed").details["reason"] == "password sign-in is off"
    # A wrong password still reads as one: the refusal above tells only someone who knows the password.
    wrong = Client().post("/login/", {"username": member.email, "password": "nope"})
    assert "Please enter a correct e-mail and password" in wrong.content.decode()
    glass = Client()
    assert glass.post("/login/", {"username": root.email, "password": PASSWORD}).status_code == 302
    assert glass.get("/").status_code == 200
    member.is_staff = True  # one the Django admin would let in
    member.save()
    admin_site = Client().post("/django-admin/login/", {"username": member.email, "password": PASSWORD})
    assert admin_site.status_code == 200 and "Password sign-in is turned off" in admin_site.content.decode()
    page = Client().get("/login/").content.decode()
    assert "Break-glass sign-in" in page


def test_unknown_roles_in_the_mapping_are_refused_by_the_checks(settings: object) -> None:
    settings.SSO_ISSUER = "http://127.0.0.1:9"
    settings.SSO_GROUP_ROLES = [("admins", "Owner")]
    errors = sso.check_configuration()
    assert [e.id for e in errors] == ["accounts.E001"] and "'Owner'" in errors[0].msg
    with pytest.raises(ImproperlyConfigured, match="not a role"):
        sso.client()


def test_role_groups_exist(db: None) -> None:
    # The mapping adds people to the role groups the migrations create; a missing one would be skipped silently.
    assert set(Group.objects.values_list("name", flat=True)) >= {ADMIN, FINANCE, MEMBER}


# -- configuration by environment, read as a starting process reads it ------------------------------------

SSO_ENV = {"ASPWEB_SSO_ISSUER": "https://login.example.com/realms/acme/", "ASPWEB_SSO_CLIENT_ID": "aspweb",
           "ASPWEB_SSO_CLIENT_SECRET": "s3cret-from-the-provider"}


def test_the_environment_configures_single_sign_on(tmp_path: Path) -> None:
    env = {**SSO_ENV, "ASPWEB_SSO_GROUP_ROLES": "aspweb-admins=Admin, /eng/platform=Member,a=b=Finance",
           "ASPWEB_SSO_GROUP_TEAMS": "/eng/platform=Platform", "ASPWEB_SSO_DEFAULT_ROLES": "Member",
           "ASPWEB_PASSWORD_SIGNIN": "false"}
    code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE']='aspweb.settings'; django.setup(); "
            "from django.conf import settings as s; print(repr((s.SSO_ISSUER, s.SSO_GROUP_ROLES, s.SSO_GROUP_TEAMS, "
            "s.SSO_DEFAULT_ROLES, s.PASSWORD_SIGNIN, s.SSO_GROUPS_CLAIM)))")
    result = _run(["-c", code], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr((
        "https://login.example.com/realms/acme",
        [("aspweb-admins", "Admin"), ("/eng/platform", "Member"), ("a=b", "Finance")],
        [("/eng/platform", "Platform")], ["Member"], False, "groups"))


@pytest.mark.parametrize(("env", "message"), [
    ({**SSO_ENV, "ASPWEB_SSO_GROUP_ROLES": "aspweb-admins"}, "ASPWEB_SSO_GROUP_ROLES must be a comma-separated list"),
    ({"ASPWEB_SSO_ISSUER": "https://login.example.com"}, "ASPWEB_SSO_CLIENT_ID and ASPWEB_SSO_CLIENT_SECRET"),
    ({**SSO_ENV, "ASPWEB_SSO_SCOPES": "email profile"}, "ASPWEB_SSO_SCOPES must include openid"),
    ({"ASPWEB_PASSWORD_SIGNIN": "false"}, "ASPWEB_PASSWORD_SIGNIN=false needs single sign-on"),
    ({**SSO_ENV, "ASPWEB_SSO_GROUP_ROLES": "admins=Owner"}, "maps 'admins' to 'Owner', which is not a role"),
])
def test_a_bad_configuration_stops_start_up_by_name(env: dict[str, str], message: str, tmp_path: Path) -> None:
    result = _run(["manage.py", "check"], env, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "s3cret-from-the-provider" not in result.stderr + result.stdout
