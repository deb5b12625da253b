"""The role matrix: every URL of the app against every role.

A URL added without an entry in POLICY fails `test_every_url_has_a_policy`, so the matrix cannot fall
behind the code.
"""

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.teams import team_create
from budgets.models import Budget, Notification
from gateway.apikeys import api_key_create
from gateway.models import Deployment, Route
from playground.models import Answer, Conversation, Turn
from providers.models import Model, Provider
from usage.services import usage_record_create

ROLES = ["anonymous", "none", "member", "finance", "admin", "superuser"]
# Policies admitting more than admins, by the roles they admit. A policy ending in ":others" is checked
# on another member's object: a role that passes the check gets a 404, never the object.
ROLE_POLICIES = {
    "playground": {"member", "finance", "admin", "superuser"},
    "playground_send": {"member", "admin", "superuser"},
    "calls": {"member", "finance", "admin", "superuser"},
    "apikeys": {"member", "finance", "admin", "superuser"},
    "budgets": {"member", "finance", "admin", "superuser"},
    "budgets_manage": {"finance", "admin", "superuser"},
    "costs": {"finance", "admin", "superuser"},
    "my_usage": {"member", "finance", "admin", "superuser"},
    # Every signed-in person has notifications, and only ever sees their own.
    "notifications": {"none", "member", "finance", "admin", "superuser"},
}
# Roles that see other people's objects under a policy all the same: admins and finance see every call.
SEES_OTHERS = {"calls": {"finance", "admin", "superuser"}, "apikeys": {"admin", "superuser"},
               "budgets_manage": {"finance", "admin", "superuser"}, "budgets": {"finance", "admin", "superuser"}}

# url name -> (who may use it, HTTP method the matrix uses)
POLICY: dict[str, tuple[str, str]] = {
    "home": ("signed_in", "GET"),
    "login": ("public", "GET"),
    # Single sign-on's start and callback: public, and absent (404) while it is not set up, as here;
    # tests/test_accounts_sso.py signs in through them.
    "sso_start": ("public_when_set_up", "GET"),
    "sso_callback": ("public_when_set_up", "GET"),
    "logout": ("public", "POST"),
    # Probes for load balancers and orchestrators: no sign-in (tests/test_ops.py).
    "healthz": ("public", "GET"),
    "readyz": ("public", "GET"),
    # Scraped with a token or from allowed addresses, never by signing in: closed to every role here,
    # where neither is set (tests/test_ops.py covers who may scrape).
    "metrics": ("scrapers", "GET"),
    "user_list": ("admin", "GET"),
    "user_add": ("admin", "GET"),
    "user_edit": ("admin", "GET"),
    "user_password": ("admin", "GET"),
    "user_unlock": ("admin", "POST"),
    "audit_list": ("admin", "GET"),
    "team_list": ("admin", "GET"),
    "team_edit": ("admin", "GET"),
    "team_delete": ("admin", "POST"),
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
    "model_bulk_prices": ("admin", "GET"),
    "model_set_enabled": ("admin", "POST"),
    "model_detail": ("admin", "GET"),
    "call_list": ("calls", "GET"),
    "call_export": ("calls", "GET"),
    "call_detail": ("calls:others", "GET"),
    "usage_reprice": ("admin", "GET"),
    "dashboard": ("costs", "GET"),
    "dashboard_export": ("costs", "GET"),
    "my_usage": ("my_usage", "GET"),
    "my_usage_export": ("my_usage", "GET"),
    "playground": ("playground", "GET"),
    "playground_estimate": ("playground", "POST"),
    "playground_send": ("playground_send", "POST"),
    "playground_conversation": ("playground:others", "GET"),
    "playground_regenerate": ("playground_send:others", "POST"),
    "playground_rename": ("playground_send:others", "POST"),
    "playground_delete": ("playground_send:others", "POST"),
    "playground_stream": ("playground_send:others", "GET"),
    "playground_stop": ("playground_send:others", "POST"),
    "playground_code": ("playground", "POST"),
    "playground_cost": ("playground:others", "GET"),
    "playground_turn_version": ("playground:others", "GET"),
    "route_list": ("admin", "GET"),
    "route_add": ("admin", "GET"),
    "route_detail": ("admin", "GET"),
    "route_edit": ("admin", "GET"),
    "route_delete": ("admin", "POST"),
    "deployment_remove": ("admin", "POST"),
    "deployment_reset": ("admin", "POST"),
    # Making keys needs the admin's allowance, which fresh members and finance users do not have.
    "apikey_list": ("apikeys", "GET"),
    "apikey_add": ("admin", "GET"),
    "apikey_access": ("admin", "GET"),
    "apikey_revoke": ("apikeys:others", "POST"),
    # The matrix's budget is another member's user budget: members do not see it.
    "budget_list": ("budgets", "GET"),
    "budget_detail": ("budgets:others", "GET"),
    "budget_add": ("budgets_manage", "GET"),
    "budget_edit": ("budgets_manage:others", "GET"),
    "budget_delete": ("budgets_manage:others", "POST"),
    "budget_test_alert": ("budgets_manage:others", "POST"),
    "notification_list": ("signed_in", "GET"),
    "notification_bell": ("signed_in", "GET"),
    "notification_read_all": ("signed_in", "POST"),
    "notification_read": ("notifications:others", "POST"),
    "reconcile_index": ("costs", "GET"),
    "reconcile_day": ("costs", "GET"),
    "reconcile_settings": ("admin", "GET"),
    "reconcile_settings_delete": ("admin", "POST"),
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
    route = Route.objects.create(name="matrix-route")
    deployment = Deployment.objects.create(route=route, model=model)
    other = make_user("member", email="someone@example.com")
    call = usage_record_create(provider=provider, model=model, user=other, source="playground", status="ok")
    turn = Turn.objects.create(conversation=Conversation.objects.create(user=other, title="theirs"), prompt="Hi")
    answer = Answer.objects.create(turn=turn, model=model, model_address="matrix/m1")
    apikey, _ = api_key_create(name="theirs", user=other, actor=None)
    budget = Budget.objects.create(name="theirs", scope="user", user=other, amount=10)
    notification = Notification.objects.create(user=other, title="Theirs", body="Not yours.")
    team = team_create(name="Matrix", members=[other])
    reporting = Provider.objects.create(name="matrix-openai", kind="openai", base_url="http://127.0.0.1:9/v1")
    return {"reporting": reporting.pk,
            "apikey": apikey.pk, "conversation": turn.conversation_id, "answer": answer.pk, "turn": turn.pk,
            "provider": provider.pk, "model": model.pk, "user": other.pk, "kind": "openai", "route": route.pk,
            "deployment": deployment.pk, "call": call.request_id, "budget": budget.pk,
            "notification": notification.pk, "team": team.pk}


def _url(name: str, objects: dict[str, int | str]) -> str:
    if name in ("playground_stream", "playground_stop"):
        return reverse(name, kwargs={"pk": objects["answer"]})
    if name == "playground_turn_version":
        return reverse(name, kwargs={"pk": objects["turn"], "version": 1})
    if name.startswith("playground_") and name not in ("playground_estimate", "playground_send", "playground_code"):
        return reverse(name, kwargs={"pk": objects["conversation"]})
    kwargs = {
        "user_edit": {"pk": objects["user"]}, "user_password": {"pk": objects["user"]},
        "user_unlock": {"pk": objects["user"]},
        "provider_add": {"kind": objects["kind"]}, "model_detail": {"pk": objects["model"]},
        "model_set_enabled": {"pk": objects["model"]}, "model_bulk_prices": {"pk": objects["provider"]},
        "call_detail": {"request_id": objects["call"]}, "usage_reprice": {"pk": objects["model"]},
        "apikey_revoke": {"pk": objects["apikey"]}, "notification_read": {"pk": objects["notification"]},
        "team_edit": {"pk": objects["team"]}, "team_delete": {"pk": objects["team"]},
        "reconcile_day": {"pk": objects["reporting"], "day": "2026-11-02"},
        "reconcile_settings": {"pk": objects["reporting"]}, "reconcile_settings_delete": {"pk": objects["reporting"]},
    }.get(name)
    if kwargs is None and name.startswith("budget_") and name not in ("budget_list", "budget_add"):
        kwargs = {"pk": objects["budget"]}
    if kwargs is None and name.startswith("route_") and name not in ("route_list", "route_add"):
        kwargs = {"pk": objects["route"]}
    if kwargs is None and name.startswith("deployment_"):
        kwargs = {"pk": objects["deployment"]}
    if kwargs is None and ((name.startswith("provider_") and name not in ("provider_list", "provider_add_choose"))
                           or name == "model_add"):
        kwargs = {"pk": objects["provider"]}
    return reverse(name, kwargs=kwargs)


def _expected(policy: str, role: str) -> str:
    if policy == "public":
        return "allowed"
    if policy == "scrapers":
        return "forbidden"
    if policy == "public_when_set_up":
        return "not_found"
    if role == "anonymous":
        return "login"
    if policy == "signed_in":
        return "allowed"
    base, _, others = policy.partition(":")
    if base in ROLE_POLICIES:
        if role not in ROLE_POLICIES[base]:
            return "forbidden"
        return "not_found" if others and role not in SEES_OTHERS.get(base, ()) else "allowed"
    return "allowed" if role in ("admin", "superuser") else "forbidden"


def _outcome(response) -> str:
    if response.status_code == 403:
        return "forbidden"
    if response.status_code == 302 and response["Location"].startswith(reverse("login") + "?next="):
        return "login"
    if response.status_code in (200, 302):
        return "allowed"
    if response.status_code == 404:
        return "not_found"
    return f"status {response.status_code}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(POLICY))
def test_role_matrix(name: str, role: str, objects: dict, client_as: Callable[[str], Client]) -> None:
    policy, method = POLICY[name]
    client = client_as(role)
    url = _url(name, objects)
    response = client.post(url) if method == "POST" else client.get(url)
    assert _outcome(response) == _expected(policy, role), f"{role} {method} {url}"
    if response.status_code == 403 and policy != "scrapers":
        assert b"You do not have access to this page" in response.content


@pytest.mark.parametrize(
    ("role", "visible", "hidden"),
    [
        ("admin", ["Calls", "API keys", "Budgets", "Reconciliation", "Providers", "Users", "Teams", "Audit log"], []),
        ("member", ["Calls", "API keys"], ["Budgets", "Reconciliation", "Providers", "Users", "Teams", "Audit log"]),
        ("finance", ["Calls", "API keys", "Budgets", "Reconciliation"], ["Providers", "Users", "Teams", "Audit log"]),
        ("none", [], ["Calls", "API keys", "Budgets", "Reconciliation", "Providers", "Users", "Teams",
                      "Audit log"]),
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
