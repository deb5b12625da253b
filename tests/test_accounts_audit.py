"""The audit log: its details in plain words, its filters and pages, and the sign-ins and sign-outs in it."""

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import audit
from accounts.models import AuditEvent, User
from accounts.views import AUDIT_PAGE_SIZE
from gateway import apikeys
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _rows(html: str) -> list[str]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for row in body.split("<tr>")[1:]]


def _details(event: AuditEvent) -> str:
    return "; ".join(f"{label}: {words}" for label, words in audit.describe(event))


# -- plain words ---------------------------------------------------------------------------------------


def test_a_new_key_reads_in_plain_words(admin_user: User) -> None:
    key, _ = apikeys.api_key_create(name="ci", user=None, actor=admin_user, rpm_limit=60,
                                    expires_at=datetime(2031, 5, 4, 3, 2, 1, 123456, tzinfo=UTC))
    event = AuditEvent.objects.get(action="apikey.create", target_id=str(key.pk))
    # Stored without the microseconds, shown in the server's time zone without seconds.
    assert event.details["expires_at"] == "2031-05-04T03:02:01+00:00"
    expires = timezone.localtime(datetime(2031, 5, 4, 3, 2, tzinfo=UTC)).strftime("%Y-%m-%d %H:%M")
    assert _details(event) == f"owner: an application; models: any; RPM limit: 60; TPM limit: none; expires: {expires}"


@pytest.mark.parametrize(("details", "words"), [
    ({"models": ["local/*", "fast-chat"]}, "models: local/*, fast-chat"),
    ({"rpm_limit": {"from": None, "to": 60}}, "RPM limit: none → 60"),
    ({"roles": ["Finance"]}, "roles: Finance"),
    ({"roles": []}, "roles: none"),
    ({"added": ["Finance"], "removed": ["Member"]}, "added: Finance; removed: Member"),
    ({"is_active": {"from": True, "to": False}}, "active: yes → no"),
    ({"fields": ["base_url", "max_retries"]}, "changed: base URL, max retries"),
    ({"input": "1.250000000000", "amount": "1234.5"}, "input: $1.25 per 1M tokens; amount: $1,234.50"),
    ({"tiers": [{"above": "200000", "input": "2.5", "output": None}]},
     "tiers: above 200,000 tokens: input $2.50 per 1M tokens, output none"),
    ({"since": "2025-05-01T00:00:00+00:00", "until": ""}, "since: {may}; until: no end"),
    ({"ok": False}, "connection works: no"),
    ({"name": "²", "amount": "NaN", "since": "2025-13-45T99:99"}, "name: ²; amount: —; since: 2025-13-45T99:99"),
])
def test_details_read_without_python_reprs(details: dict, words: str) -> None:
    may = timezone.localtime(datetime(2025, 5, 1, tzinfo=UTC)).strftime("%Y-%m-%d %H:%M")
    text = _details(AuditEvent(action="x", details=details))
    assert text == words.format(may=may)
    assert not re.search(r"\[|\]|None|True|False|'|\d{2}:\d{2}:\d{2}", text)


def test_the_page_shows_words_not_reprs(admin_client: Client, make_user: Callable[..., User]) -> None:
    user = make_user("member", email="m@example.com")
    admin_client.post(reverse("user_edit", args=[user.pk]), {"email": "m@example.com", "name": "Emma",
                                                             "roles": ["Finance"]})
    html = admin_client.get(reverse("audit_list")).content.decode()
    rows = _rows(html)
    assert any("roles changed" in row and "added: Finance removed: Member" in row for row in rows), rows
    assert any("user changed" in row and "name: Member → Emma" in row and "active: yes → no" in row for row in rows)
    assert "[&#x27;" not in html and "None" not in html


# -- filters and pages ---------------------------------------------------------------------------------


@pytest.fixture
def events(db: None) -> dict[str, AuditEvent]:
    now = timezone.now()
    made = {
        "old": AuditEvent.objects.create(actor_label="ann@example.com", action="route.create", target_type="route",
                                         target_label="fast-chat", created_at=now - timedelta(days=10)),
        "budget": AuditEvent.objects.create(actor_label="bob@example.com", action="budget.create",
                                            target_type="budget", target_label="monthly",
                                            created_at=now - timedelta(days=3)),
        "route": AuditEvent.objects.create(actor_label="ann@example.com", action="route.delete", target_type="route",
                                           target_label="slow-chat", created_at=now - timedelta(days=1)),
    }
    return made


def _listed(client: Client, query: str, status: int = 200) -> list[str]:
    response = client.get(reverse("audit_list") + query)
    assert response.status_code == status
    return [row.split(" ", 2)[2] if row[:4].isdigit() else row for row in _rows(response.content.decode())]


def _day(event: AuditEvent, shift: int = 0) -> str:
    return (timezone.localtime(event.created_at).date() + timedelta(days=shift)).isoformat()


def test_filters_by_actor_action_object_and_days(admin_client: Client, events: dict[str, AuditEvent]) -> None:
    everything = _listed(admin_client, "")
    assert len(everything) == 3 and everything[0].startswith("ann@example.com route deleted")

    assert [r.split()[0] for r in _listed(admin_client, "?actor=ANN@")] == ["ann@example.com"] * 2
    assert len(_listed(admin_client, "?action=route.create")) == 1
    assert [r.split()[0] for r in _listed(admin_client, "?type=budget")] == ["bob@example.com"]
    assert len(_listed(admin_client, "?actor=ann&type=route&action=route.delete")) == 1
    days = f"?since={_day(events['budget'])}&until={_day(events['budget'])}"
    assert [r.split()[0] for r in _listed(admin_client, days)] == ["bob@example.com"]
    assert len(_listed(admin_client, f"?since={_day(events['budget'])}")) == 2
    assert len(_listed(admin_client, f"?until={_day(events['old'])}")) == 1
    assert _listed(admin_client, "?actor=nobody") == ["No event matches these filters."]


@pytest.mark.parametrize(("query", "error"), [
    ("?since=yesterday", "Enter a valid date."),
    ("?since=2025-05-02&until=2025-05-01", "The last day (2025-05-01) comes before the first (2025-05-02)."),
    ("?type=spaceship", "Select a valid choice."),
])
def test_bad_filters_are_form_errors(admin_client: Client, events: dict[str, AuditEvent], query: str,
                                     error: str) -> None:
    response = admin_client.get(reverse("audit_list") + query)
    assert response.status_code == 400 and error in response.content.decode()


def test_pages_keep_the_filters(admin_client: Client) -> None:
    AuditEvent.objects.bulk_create([AuditEvent(actor_label="ann@example.com", action="route.update",
                                               target_type="route", target_label=f"r{n}")
                                    for n in range(AUDIT_PAGE_SIZE + 5)])
    AuditEvent.objects.create(actor_label="bob@example.com", action="budget.create", target_type="budget")
    html = admin_client.get(reverse("audit_list") + "?type=route").content.decode()
    assert len(_rows(html)) == AUDIT_PAGE_SIZE
    assert f"Page 1 of 2 ({AUDIT_PAGE_SIZE + 5} events)" in html
    older = re.search(r'<a href="([^"]+)">Older</a>', html).group(1).replace("&amp;", "&")
    assert "type=route" in older and "page=2" in older
    second = _rows(admin_client.get(reverse("audit_list") + older).content.decode())
    assert len(second) == 5 and all("route" in row for row in second)


# -- sign-ins and sign-outs ----------------------------------------------------------------------------


def test_signing_in_and_out_is_recorded(make_user: Callable[..., User]) -> None:
    user = make_user("member")
    client = Client(REMOTE_ADDR="198.51.100.4")
    client.post(reverse("login"), {"username": user.email, "password": "wrong-password"})
    client.post(reverse("login"), {"username": user.email, "password": PASSWORD})
    client.post(reverse("logout"))
    client.post(reverse("logout"))  # a second sign-out ends nobody's session
    events = list(AuditEvent.objects.order_by("created_at", "id").values_list("action", "actor_label", "details"))
    assert events == [("user.signin_failed", "198.51.100.4", {"address": "198.51.100.4"}),
                      ("user.signin", user.email, {"address": "198.51.100.4"}),
                      ("user.signout", user.email, {"address": "198.51.100.4"})]
    failed = AuditEvent.objects.get(action="user.signin_failed")
    assert failed.target_label == user.email  # the e-mail tried
    assert "wrong-password" not in str(AuditEvent.objects.values_list())


def test_sign_in_events_are_filtered_by_action(admin_client: Client, make_user: Callable[..., User]) -> None:
    user = make_user("member")
    Client().post(reverse("login"), {"username": user.email, "password": "wrong-password"})
    rows = _listed(admin_client, "?action=user.signin_failed")
    assert len(rows) == 1 and "sign-in failed" in rows[0] and user.email in rows[0]
    assert 'value="user.signin_failed">sign-in failed (user.signin_failed)</option>' in admin_client.get(
        reverse("audit_list")).content.decode()


@pytest.mark.parametrize("query", ["?since=0001-01-01&until=9999-12-31", "?until=9999-12-31", "?since=0001-01-01",
                                   "?page=999", "?page=x", "?actor=" + "a" * 300])
@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_extreme_filters_are_no_500(admin_client: Client, events: dict[str, AuditEvent], query: str, zone: str,
                                    settings: object) -> None:
    settings.TIME_ZONE = zone
    response = admin_client.get(reverse("audit_list") + query)
    assert response.status_code == (400 if "a" * 300 in query else 200)
    # No bound at the calendar's ends; a page past the last is the last; a refused filter filters nothing.
    assert len(_rows(response.content.decode())) == len(events)
