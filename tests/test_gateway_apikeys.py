"""API keys: their format and storage, checking them, the command, and the pages that issue and revoke them."""

import hashlib
import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, User
from gateway import apikeys
from gateway.models import ApiKey, Deployment, Route
from providers.models import Model
from tests.conftest import PASSWORD
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import make_key, make_providers
from tests.usage_support import write
from usage.services import day_start, ledger_timezone

KEY_PATTERN = re.compile(r"^ask-[a-z0-9]{8}[A-Za-z0-9]{40}$")


def test_a_key_is_shown_once_and_stored_as_a_hash(db: None, member_user: User) -> None:
    key, raw = make_key(member_user, allowed_models=["b/x", "a/*", "b/x"], rpm_limit=5)
    assert KEY_PATTERN.match(raw)
    assert key.prefix == raw[:12] and key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    stored = ApiKey.objects.filter(pk=key.pk).values()[0]
    assert raw not in str(stored)
    assert key.allowed_models == ["a/*", "b/x"]
    assert make_key()[1] != raw
    event = AuditEvent.objects.get(action="apikey.create", target_id=str(key.pk))
    assert raw not in str(event.details) and event.details["owner"] == member_user.email


def test_authenticate_accepts_the_key_and_refuses_lookalikes(db: None, member_user: User) -> None:
    key, raw = make_key(member_user)
    assert apikeys.api_key_authenticate(raw) == key
    for wrong, words in [(None, "No API key"), ("", "No API key"), ("sk-abc", "not an aspweb API key"),
                         (raw[:-1], "Malformed API key: .* this one is 51"), ("ask-nope", "Malformed .* this one is 8"),
                         (raw[:4] + "Z" + raw[5:], "Malformed API key: after ask-"),
                         (raw[:-1] + "-", "Malformed API key: after ask-"),
                         (raw[:-1] + ("A" if raw[-1] != "A" else "B"), "Unknown API key"),
                         ("ask-zzzzzzzz" + raw[12:], "Unknown API key")]:
        with pytest.raises(apikeys.KeyRefused, match=words) as refused:
            apikeys.api_key_authenticate(wrong)
        # The words name no part of the key sent, and never claim a key that starts with ask- does not.
        assert not wrong or wrong[4:] not in refused.value.message
        assert "start with" not in refused.value.message or not (wrong or "").startswith("ask-")


def test_revoked_expired_and_ownerless_keys(db: None, member_user: User) -> None:
    key, raw = make_key(member_user, expires_at=timezone.now() + timedelta(days=1))
    assert apikeys.key_status(key) == "active"
    assert apikeys.api_key_revoke(key=key, actor=None) and not apikeys.api_key_revoke(key=key, actor=None)
    assert apikeys.key_status(key) == "revoked"
    with pytest.raises(apikeys.KeyRefused, match="revoked"):
        apikeys.api_key_authenticate(raw)
    old, old_raw = make_key(expires_at=timezone.now() + timedelta(days=1))
    ApiKey.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(apikeys.KeyRefused, match="expired"):
        apikeys.api_key_authenticate(old_raw)
    assert apikeys.key_status(ApiKey.objects.get(pk=old.pk)) == "expired"
    # An application's key has no owner and stays usable.
    app, app_raw = make_key(None)
    assert apikeys.api_key_authenticate(app_raw) == app


def test_last_used_is_written_at_most_once_a_minute(db: None, django_assert_num_queries: Callable,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    key, raw = make_key()
    with django_assert_num_queries(2):  # the lookup, and the first write
        apikeys.api_key_authenticate(raw)
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    with django_assert_num_queries(0):  # the key is in the worker's row cache, and was used just now
        apikeys.api_key_authenticate(raw)
    later = first + timedelta(minutes=2)
    monkeypatch.setattr(apikeys.timezone, "now", lambda: later)
    with django_assert_num_queries(1):  # a minute on: the write
        apikeys.api_key_authenticate(raw)
    assert ApiKey.objects.get(pk=key.pk).last_used_at == later


@pytest.mark.parametrize(("allowed", "address", "expected"), [
    ([], "any/thing", True),
    (["local/a"], "local/a", True),
    (["local/a"], "local/b", False),
    (["local/*"], "local/b", True),
    (["local/*"], "localx/b", False),
    (["fast-chat"], "fast-chat", True),
    (["local/*"], "fast-chat", False),
])
def test_key_allows(allowed: list[str], address: str, expected: bool) -> None:
    assert apikeys.key_allows(ApiKey(allowed_models=allowed), address) is expected


# -- the command ---------------------------------------------------------------------------------------


def test_command_creates_lists_and_revokes(db: None, member_user: User) -> None:
    out, err = StringIO(), StringIO()
    call_command("apikey", "create", "--user", member_user.email.upper(), "--name", "ci", "--models",
                 "local/*, claude/x", "--rpm", "10", "--expires-days", "30", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert KEY_PATTERN.match(raw) and raw not in err.getvalue()
    key = apikeys.api_key_authenticate(raw)
    assert key.user == member_user and key.allowed_models == ["claude/x", "local/*"] and key.rpm_limit == 10
    assert timedelta(days=29) < key.expires_at - timezone.now() <= timedelta(days=30)

    listing = StringIO()
    call_command("apikey", "list", stdout=listing)
    assert key.prefix in listing.getvalue() and member_user.email in listing.getvalue()
    assert raw not in listing.getvalue()

    revoked = StringIO()
    call_command("apikey", "revoke", key.prefix, stdout=revoked)
    assert "Revoked" in revoked.getvalue()
    with pytest.raises(apikeys.KeyRefused):
        apikeys.api_key_authenticate(raw)
    listing = StringIO()
    call_command("apikey", "list", stdout=listing)
    assert key.prefix not in listing.getvalue()
    call_command("apikey", "list", "--all", stdout=listing)
    assert f"{key.prefix}\trevoked" in listing.getvalue()


def test_command_refuses_what_it_cannot_do(db: None) -> None:
    with pytest.raises(CommandError, match="no user"):
        call_command("apikey", "create", "--user", "nobody@example.com", "--name", "x", stdout=StringIO(),
                     stderr=StringIO())
    with pytest.raises(CommandError, match="--rpm must be at least 1"):
        call_command("apikey", "create", "--name", "x", "--rpm", "0", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="--tpm must be at most 1,000,000,000"):
        call_command("apikey", "create", "--name", "x", "--tpm", str(2**63), stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="no key"):
        call_command("apikey", "revoke", "ask-00000000", stdout=StringIO())


# -- the pages -----------------------------------------------------------------------------------------


@pytest.fixture
def gateway_models(db: None, upstream: FakeUpstream) -> dict:
    return make_providers(upstream)


def _new_key(page: str) -> str:
    match = re.search(r'<code class="secret" id="new-key">([^<]+)</code>', page)
    assert match, "the new key is not on the page"
    return match.group(1)


def test_an_admin_issues_a_key_for_someone_and_it_is_shown_once(admin_client: Client, member_user: User,
                                                                 gateway_models: dict) -> None:
    form = admin_client.get(reverse("apikey_add")).content.decode()
    assert 'value="local/*"' in form and 'value="claude/fake-model-a"' in form
    response = admin_client.post(reverse("apikey_add"), {
        "name": "billing app", "user": member_user.pk, "allowed_models": ["local/*"], "rpm_limit": "60",
        "tpm_limit": "", "expires_at": (timezone.localtime() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"),
    })
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    raw = _new_key(response.content.decode())
    key = apikeys.api_key_authenticate(raw)
    assert (key.name, key.user, key.allowed_models, key.rpm_limit, key.tpm_limit) == (
        "billing app", member_user, ["local/*"], 60, None)
    assert key.created_by.email == "admin@example.com"
    listing = admin_client.get(reverse("apikey_list")).content.decode()
    assert key.prefix in listing and "billing app" in listing and raw not in listing


def test_the_form_refuses_a_past_expiry_and_unknown_models(admin_client: Client, gateway_models: dict) -> None:
    response = admin_client.post(reverse("apikey_add"), {
        "name": "x", "allowed_models": ["nowhere/*"],
        "expires_at": (timezone.localtime() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
    })
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "expires_at" in errors and "allowed_models" in errors
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("rpm_limit", "99999999999999999999999", "Enter a number from 1 to 1,000,000."),
    ("rpm_limit", "0", "Enter a number from 1 to 1,000,000."),
    ("tpm_limit", "9223372036854775808", "Enter a number from 1 to 1,000,000,000."),
    ("tpm_limit", "2147483648", "Enter a number from 1 to 1,000,000,000."),
])
def test_a_limit_past_its_range_is_refused_by_the_form_not_the_database(admin_client: Client, gateway_models: dict,
                                                                       field: str, value: str, message: str) -> None:
    """A limit too large for the column was a 500 on saving; it is a form error naming the range."""
    response = admin_client.post(reverse("apikey_add"), {"name": "big", field: value})
    assert response.status_code == 200
    assert response.context["form"].errors[field] == [message]
    assert not ApiKey.objects.exists()


def test_the_list_writes_large_limits_with_separators(admin_client: Client, gateway_models: dict) -> None:
    make_key(name="busy", rpm_limit=100_000, tpm_limit=1_000_000_000)
    listing = admin_client.get(reverse("apikey_list")).content.decode()
    assert "100,000 req/min" in listing and "1,000,000,000 tokens/min" in listing


def test_members_make_keys_only_when_an_admin_allowed_it(admin_client: Client, client_as: Callable[[str], Client],
                                                         gateway_models: dict) -> None:
    member = client_as("member")
    person = User.objects.get(email="member@example.com")
    assert member.get(reverse("apikey_add")).status_code == 403
    assert 'href="/apikeys/add/"' not in member.get(reverse("apikey_list")).content.decode()

    response = admin_client.post(reverse("apikey_access"), {"user": person.pk, "allowed": "1"})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="apikey.self_service", details__allowed=True).exists()
    page = member.get(reverse("apikey_add")).content.decode()
    assert 'name="user"' not in page  # no owner to choose: the key is theirs
    # An owner slipped into the form is ignored.
    other = User.objects.create_user("other@example.com", PASSWORD)
    response = member.post(reverse("apikey_add"), {"name": "laptop", "user": other.pk})
    key = apikeys.api_key_authenticate(_new_key(response.content.decode()))
    assert key.user == person and key.created_by == person

    admin_client.post(reverse("apikey_access"), {"user": person.pk, "allowed": "0"})
    for wrong in ("abc", "", str(person.pk + 1000)):
        assert admin_client.post(reverse("apikey_access"), {"user": wrong, "allowed": "1"}).status_code == 404
    assert member.get(reverse("apikey_add")).status_code == 403
    assert apikeys.key_status(ApiKey.objects.get(pk=key.pk)) == "active"  # stopping keeps existing keys


def test_people_see_and_revoke_only_their_own_keys(client_as: Callable[[str], Client], db: None) -> None:
    member = client_as("member")
    person = User.objects.get(email="member@example.com")
    mine, _ = make_key(person, name="mine")
    theirs, _ = make_key(User.objects.create_user("x@example.com", PASSWORD), name="theirs")
    page = member.get(reverse("apikey_list")).content.decode()
    assert mine.prefix in page and theirs.prefix not in page
    assert member.post(reverse("apikey_revoke", args=[theirs.pk])).status_code == 404
    assert member.post(reverse("apikey_revoke", args=[mine.pk])).status_code == 302
    assert apikeys.key_status(ApiKey.objects.get(pk=mine.pk)) == "revoked"
    assert apikeys.key_status(ApiKey.objects.get(pk=theirs.pk)) == "active"
    listed = f"<code class=\"key-prefix\">{mine.prefix}…</code>"
    assert listed not in member.get(reverse("apikey_list")).content.decode()
    assert listed in member.get(reverse("apikey_list") + "?all=1").content.decode()


def test_an_admin_revokes_any_key_and_it_is_audited(admin_client: Client, member_user: User) -> None:
    key, raw = make_key(member_user)
    response = admin_client.post(reverse("apikey_revoke", args=[key.pk]), follow=True)
    assert "revoked" in response.content.decode()
    assert AuditEvent.objects.filter(action="apikey.revoke", target_id=str(key.pk)).exists()
    with pytest.raises(apikeys.KeyRefused):
        apikeys.api_key_authenticate(raw)


# -- the example shown with a new key ------------------------------------------------------------------


def test_the_example_names_a_model_the_key_may_use(gateway_models: dict) -> None:
    # Unrestricted: a priced model (local/fake-model-b has no price), in the gateway's naming.
    assert apikeys.example_model(make_key()[0]) == "claude/fake-model-a"
    # Restricted: one of its own, a priced one first; a named model or route before a whole provider's.
    assert apikeys.example_model(make_key(allowed_models=["local/*"])[0]) == "local/fake-model-a"
    assert apikeys.example_model(make_key(allowed_models=["local/fake-model-b"])[0]) == "local/fake-model-b"
    route = Route.objects.create(name="fast-chat")
    # A route with no deployment answers nothing: it is never the example.
    assert apikeys.example_model(make_key(allowed_models=["claude/*", "fast-chat"])[0]) == "claude/fake-model-a"
    assert apikeys.example_model(make_key(allowed_models=["fast-chat"])[0]) is None
    Deployment.objects.create(route=route, model=gateway_models["claude/fake-model-a"])
    assert apikeys.example_model(make_key(allowed_models=["claude/*", "fast-chat"])[0]) == "fast-chat"
    # Nothing it may use is enabled: the page falls back to the placeholder.
    Model.objects.filter(provider__name="local").update(enabled=False)
    assert apikeys.example_model(make_key(allowed_models=["local/*", "gone/x"])[0]) is None


def test_the_new_key_page_fills_the_example_with_a_real_model(admin_client: Client, gateway_models: dict) -> None:
    page = admin_client.post(reverse("apikey_add"), {"name": "x", "allowed_models": ["local/*"]}).content.decode()
    raw = _new_key(page)
    assert '"model": "local/fake-model-a"' in page and f"Bearer {raw}" in page
    assert "PROVIDER/MODEL" not in page and 'data-copy="new-key"' in page and "js/copy.js" in page
    Model.objects.update(enabled=False)
    page = admin_client.post(reverse("apikey_add"), {"name": "y"}).content.decode()
    assert '"model": "PROVIDER/MODEL"' in page


def test_the_list_shows_each_keys_spend_this_month_in_its_one_query(admin_client: Client, gateway_models: dict,
                                                                    django_assert_num_queries: Callable) -> None:
    priced, unpriced = gateway_models["claude/fake-model-a"], gateway_models["local/fake-model-b"]
    busy, _ = make_key(name="busy")
    free, _ = make_key(name="free")
    make_key(name="idle")
    month = timezone.localtime(timezone.now(), ledger_timezone()).date().replace(day=1)
    write(priced, api_key=busy, input_tokens=1_000_000, output_tokens=0)  # $1 at $1 per 1M input tokens
    write(priced, api_key=busy, input_tokens=250_000, output_tokens=250_000)  # $0.25 + $0.50
    write(priced, api_key=busy, input_tokens=9_000_000, output_tokens=0,  # last month's
          created_at=day_start(month) - timedelta(minutes=1))
    write(unpriced, api_key=free, input_tokens=100)

    spent = {key.name: (key.spent, key.unpriced) for key in apikeys.with_spend_since(ApiKey.objects.all(), month)}
    assert spent == {"busy": (Decimal("1.75"), 0), "free": (0, 1), "idle": (0, 0)}

    admin_client.get(reverse("apikey_list"))  # the signed-in person and their rights, cached from now on
    with CaptureQueriesContext(connection) as first:
        page = admin_client.get(reverse("apikey_list")).content.decode()
    rows = {name: re.search(rf'<tr>\s*<td><span class="truncate" title="{name}">{name}</span><br>.*?</tr>', page,
                            re.S).group(0) for name in spent}
    assert '<td class="num">$1.75</td>' in rows["busy"]
    assert '<td class="num">$0.00<br><small class="warn">+ 1 unpriced call</small></td>' in rows["free"]
    assert '<td class="num">$0.00</td>' in rows["idle"]
    assert f"Spent in {month:%B}" in page
    listing = [q["sql"] for q in first.captured_queries if '"gateway_apikey"' in q["sql"].split("WHERE")[0]]
    assert len(listing) == 1 and "usage_dailyapikeyusage" in listing[0]

    for n in range(5):  # more keys, more calls: not one query more
        write(priced, api_key=make_key(name=f"more {n}")[0])
    with django_assert_num_queries(len(first.captured_queries)):
        page = admin_client.get(reverse("apikey_list")).content.decode()
    assert page.count('<td class="num">$') == 8


def test_the_list_shows_when_each_key_was_last_used(admin_client: Client, gateway_models: dict) -> None:
    used, _ = make_key(name="used")
    make_key(name="idle")
    ApiKey.objects.filter(pk=used.pk).update(last_used_at=timezone.now() - timedelta(hours=3, minutes=5))
    page = admin_client.get(reverse("apikey_list")).content.decode()
    assert "<th>Last used</th>" in page
    rows = {name: re.search(rf'<tr>\s*<td><span class="truncate" title="{name}">{name}</span><br>.*?</tr>', page,
                            re.S).group(0) for name in ("used", "idle")}
    assert re.search(r'<time datetime="[^"]+" title="[^"]+">3 hours ago</time>', rows["used"])
    assert "<td>never</td>" in rows["idle"] and "ago" not in rows["idle"]
