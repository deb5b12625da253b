"""Single sign-on with OpenID Connect: the authorization code flow (with PKCE) against the company's identity
provider, configured by environment (settings.SSO_*, listed in the README).

The protocol is Authlib's Django client: it discovers the provider from its
`/.well-known/openid-configuration`, keeps state and nonce in the session, exchanges the code, and validates
the ID token (signature against the provider's published keys, fetched again when an unknown key id shows
up; issuer, audience, expiry, nonce, at_hash). Authlib is chosen over mozilla-django-oidc and django-allauth
because it is a protocol library rather than an account system: it leaves the users, roles and audit log to
aspweb, and it brings no models, migrations or URL sets of its own. Nothing here reads a token itself: it
gets the ID token's claims from Authlib once they are validated, or an error.

What a sign-in does with those claims (`sso_sign_in`): the person is found by e-mail address, or created on
their first sign-in without a usable password; their roles, and their teams, are set from the groups in the
groups claim, at every sign-in, so that a change at the provider lands at the next sign-in. A sign-in that
leaves someone with no role is refused. Tokens are never stored, logged, or shown.
"""

from dataclasses import dataclass
from functools import cache
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.django_client import OAuth
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from joserfc.errors import JoseError

from aspweb.roles import ROLES

from .audit import audit_log
from .models import User
from .teams import user_teams_sync

# What can go wrong between aspweb and the provider: the protocol (a state that does not match, an error
# the provider answered), the token (signature, claims) or the network.
SSO_ERRORS = (AuthlibBaseError, JoseError, requests.RequestException, ValueError)
# Seconds a provider's and aspweb's clocks may disagree when checking a token's times.
CLOCK_LEEWAY_SECONDS = 120
NETWORK_TIMEOUT_SECONDS = 10


class SignInRefused(Exception):
    """A valid sign-in that aspweb turns away; the message is for the person."""


def enabled() -> bool:
    return bool(settings.SSO_ISSUER)


def password_allowed(user: User) -> bool:
    """Password sign-in, when turned off, is left to superusers: the break-glass account for when the
    identity provider is down or misconfigured."""
    return settings.PASSWORD_SIGNIN or user.is_superuser


def _check_roles() -> list[str]:
    problems = []
    for group, role in settings.SSO_GROUP_ROLES:
        if role not in ROLES:
            problems.append(f"ASPWEB_SSO_GROUP_ROLES maps {group!r} to {role!r}, which is not a role "
                            f"({', '.join(ROLES)}).")
    for role in settings.SSO_DEFAULT_ROLES:
        if role not in ROLES:
            problems.append(f"ASPWEB_SSO_DEFAULT_ROLES names {role!r}, which is not a role ({', '.join(ROLES)}).")
    return problems


@register()
def check_configuration(**kwargs: Any) -> list[Error]:
    return [Error(problem, id="accounts.E001") for problem in _check_roles()]


@cache
def _client(issuer: str, client_id: str, client_secret: str, scopes: str) -> Any:
    """One Authlib client per configuration (tests change it), which caches the provider's metadata and keys."""
    oauth = OAuth()
    return oauth.register(
        "sso", client_id=client_id, client_secret=client_secret,
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": scopes, "code_challenge_method": "S256", "default_timeout": NETWORK_TIMEOUT_SECONDS},
    )


def failure_reason(error: Exception) -> str:
    """What failed, for the audit log, in the library's fixed words: a token error names its claim or says
    its signature did not match ("invalid_claim: Invalid claim: 'aud'"); a protocol error gives its code
    ("mismatching_state", or the provider's, "invalid_client"); none repeats a token, a code or the secret."""
    if isinstance(error, JoseError):
        return str(error)[:200]
    if isinstance(error, AuthlibBaseError):
        return str(error.error or type(error).__name__)[:200]
    return type(error).__name__


def client() -> Any:
    problems = _check_roles()
    if problems:
        raise ImproperlyConfigured(" ".join(problems))
    return _client(settings.SSO_ISSUER, settings.SSO_CLIENT_ID, settings.SSO_CLIENT_SECRET, settings.SSO_SCOPES)


def redirect_to_provider(request: HttpRequest, callback_url: str) -> HttpResponse:
    return client().authorize_redirect(request, callback_url)


def claims_from_callback(request: HttpRequest) -> dict[str, Any]:
    """The validated ID token's claims, from the provider's redirect back; raises one of SSO_ERRORS."""
    app = client()
    # Authlib checks the issuer by default, and the audience only through `azp`: a token for another client
    # that names aspweb as its authorized party would pass. Name aspweb's client id as the audience to hold.
    claims_options = {"iss": {"essential": True, "values": [app.load_server_metadata().get("issuer")]},
                      "aud": {"essential": True, "value": app.client_id}}
    token = app.authorize_access_token(request, claims_options=claims_options, leeway=CLOCK_LEEWAY_SECONDS)
    claims = token.get("userinfo")
    if claims is None:  # Authlib validates an ID token only when the flow asked for one (scope openid)
        raise ValueError("the provider sent no ID token")
    return dict(claims)


@dataclass(frozen=True)
class Mapped:
    roles: frozenset[str]
    teams: frozenset[str]


def _claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name, or by a dotted path into nested claims (Keycloak's `realm_access.roles`); a name
    that holds dots itself (Auth0's `https://example.com/groups`) is taken whole first."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def groups_of(claims: dict[str, Any]) -> frozenset[str]:
    """The groups claim: a list of names (or ids, Entra ID's), or one name; missing means none."""
    value = _claim(claims, settings.SSO_GROUPS_CLAIM)
    if isinstance(value, str):
        return frozenset([value])
    if isinstance(value, list):
        return frozenset(str(item) for item in value if isinstance(item, str | int))
    return frozenset()


def map_groups(groups: frozenset[str]) -> Mapped:
    roles = {role for group, role in settings.SSO_GROUP_ROLES if group in groups} | set(settings.SSO_DEFAULT_ROLES)
    teams = {team for group, team in settings.SSO_GROUP_TEAMS if group in groups}
    return Mapped(roles=frozenset(roles), teams=frozenset(teams))


def _email(claims: dict[str, Any]) -> str:
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise SignInRefused(f"{settings.SSO_NAME} sent no e-mail address for this account; aspweb needs one "
                            "(the email scope and claim).")
    if claims.get("email_verified") is False:
        raise SignInRefused(f"{settings.SSO_NAME} says this account's e-mail address is not verified.")
    email = email.strip().lower()
    domains = [domain.lower() for domain in settings.SSO_EMAIL_DOMAINS]
    if domains and email.rpartition("@")[2] not in domains:
        raise SignInRefused(f"aspweb admits only addresses at {', '.join(domains)}.")
    return email


def _roles_follow(user: User, wanted: frozenset[str]) -> None:
    current = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    added, removed = wanted - current, current - wanted
    user.groups.remove(*Group.objects.filter(name__in=removed))
    user.groups.add(*Group.objects.filter(name__in=added))
    if added or removed:
        audit_log(settings.SSO_NAME, "user.roles", user, added=sorted(added), removed=sorted(removed),
                  source="groups")


def _user_for(email: str, name: str) -> tuple[User, bool]:
    """The account with this e-mail (locked for the sign-in), created if new; and whether it was."""
    user = User.objects.select_for_update().filter(email__iexact=email).first()
    if user is not None:
        if name and user.name != name:
            user.name = name
            user.save(update_fields=["name"])
        return user, False
    try:
        with transaction.atomic():
            user = User.objects.create_user(email, password=None, name=name)
    except IntegrityError:  # the same person's sign-in in another tab created them just now
        return User.objects.select_for_update().get(email__iexact=email), False
    audit_log(settings.SSO_NAME, "user.create", user, source="single sign-on")
    return user, True


def sso_sign_in(*, claims: dict[str, Any]) -> User:
    """The person these validated claims name, created if new, with roles and teams from their groups.
    Raises SignInRefused when aspweb turns them away (after their roles followed their groups).

    With no groups claim configured (a provider that sends none, such as Google), roles and teams are kept
    in aspweb: a new person gets the default roles, and nothing changes them at sign-in."""
    email = _email(claims)
    raw_name = claims.get("name")
    name = raw_name.strip()[:150] if isinstance(raw_name, str) else ""
    follows_groups = bool(settings.SSO_GROUPS_CLAIM)
    mapped = map_groups(groups_of(claims) if follows_groups else frozenset())
    with transaction.atomic():
        user, created = _user_for(email, name)
        if not user.is_active:
            raise SignInRefused("This account is deactivated in aspweb. Ask an admin.")
        if follows_groups or created:
            _roles_follow(user, mapped.roles)
        # Only when some group maps to a team: otherwise teams are kept by hand (or the config file).
        if follows_groups and settings.SSO_GROUP_TEAMS:
            user_teams_sync(user=user, team_names=mapped.teams)
        has_role = user.is_superuser or user.groups.filter(name__in=ROLES).exists()
    if not has_role:
        raise SignInRefused(f"Your {settings.SSO_NAME} account is in none of the groups that give a role in "
                            "aspweb. Ask an admin." if follows_groups else "Your account has no role in aspweb. "
                            "Ask an admin.")
    return user
