"""Resolved addresses cached between calls (providers/rowcaches.py): reused while nothing changes, never stale.

Each change below goes through the same code an admin's page or the config import uses (model saves
and deletes), and the very next resolution must see it.
"""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aspweb.rowcache import RowCache
from gateway import rowcaches as gateway_rowcaches
from gateway.models import Deployment, Route
from providers import calls, rowcaches
from providers.adapters.base import ChatRequest, Message
from providers.crypto import reveal
from providers.models import Model, Price, Provider

pytestmark = pytest.mark.django_db

CALLER = calls.Caller(source="cli")


@pytest.fixture
def model() -> Model:
    provider = Provider.objects.create(name="plans", kind="openai_compatible", base_url="http://127.0.0.1:9/v1",
                                       api_key="sk-plans-0001")
    model = Model.objects.create(provider=provider, name="m")
    Price.objects.create(model=model, input=Decimal("1"), output=Decimal("2"),
                         effective_from=timezone.now() - timedelta(days=1))
    return model


def _resolve(address: str = "plans/m") -> calls.Plan:
    return calls._resolve_sync(address)


def _queries(address: str = "plans/m") -> int:
    with CaptureQueriesContext(connection) as captured:
        _resolve(address)
    return len(captured)


def test_a_resolved_address_is_reused_without_queries(model: Model) -> None:
    assert _queries() >= 3  # provider, model, prices
    assert _queries() == 0
    first, second = _resolve(), _resolve()
    assert first.targets[0] is second.targets[0]


def test_a_change_made_by_another_process_counts_at_once(model: Model) -> None:
    """Another process (a management command, another worker) has caches of its own under the same names;
    its change is announced (a version file without Redis; with Redis this process's own announcement here,
    another process's in test_rowcache_bus.py)."""
    _resolve()
    assert _queries() == 0
    elsewhere = RowCache(rowcaches.resolutions.name, ttl=60.0)
    elsewhere._announce()  # what its changed() does, after its own commit
    assert _queries() == 2  # provider and model read again (the price versions have a store of their own)


@pytest.mark.parametrize("change", ["disable provider", "disable model", "rotate key", "new price", "delete model"])
def test_a_catalog_change_takes_effect_at_the_next_call(model: Model, change: str) -> None:
    assert _resolve().targets[0].connection.api_key == "sk-plans-0001"
    provider = model.provider
    if change == "disable provider":
        provider.enabled = False
        provider.save()
    elif change == "disable model":
        model.enabled = False
        model.save()
    elif change == "rotate key":
        provider.api_key = "sk-plans-0002"
        provider.save()
        assert _resolve().targets[0].connection.api_key == reveal(Provider.objects.get().api_key) == "sk-plans-0002"
        return
    elif change == "new price":
        Price.objects.create(model=model, input=Decimal("5"), output=Decimal("6"))
        assert _resolve().targets[0].price.input == Decimal("5")
        return
    else:
        model.delete()
        with pytest.raises(calls.CallError) as refused:
            _resolve()
        assert refused.value.code == "not_found"
        return
    with pytest.raises(calls.CallError) as refused:
        _resolve()
    assert refused.value.code == "disabled"


def test_an_entry_lasts_until_the_next_price_version(model: Model) -> None:
    Price.objects.create(model=model, input=Decimal("9"), output=Decimal("9"),
                         effective_from=timezone.now() + timedelta(seconds=30))
    resolution, keep_for = calls._resolve_uncached("plans/m")
    assert resolution.targets[0].price.input == Decimal("1")  # the scheduled version is not in force yet
    assert 25 < keep_for <= 30


def test_an_entry_without_scheduled_prices_lasts_the_ttl(model: Model) -> None:
    _, keep_for = calls._resolve_uncached("plans/m")
    assert keep_for is None
    rowcaches.resolutions.entries.clear()
    _resolve()
    _, expires_at, _ = rowcaches.resolutions.entries["plans/m"]
    assert expires_at - time.monotonic() <= rowcaches.resolutions.ttl


def test_a_route_keeps_its_deployments_and_orders_them_at_every_call(model: Model) -> None:
    other = Model.objects.create(provider=model.provider, name="n")
    Price.objects.create(model=other, input=Decimal("0.1"), output=Decimal("0.1"))
    route = Route.objects.create(name="cheap", strategy=Route.Strategy.WEIGHTED)
    Deployment.objects.create(route=route, model=model, weight=1)
    Deployment.objects.create(route=route, model=other, weight=1)
    firsts = [_resolve("cheap").targets[0].model.name for _ in range(4)]
    assert sorted(firsts) == ["m", "m", "n", "n"]  # round-robin goes on from the cached entry
    route.deployments.filter(model=other).get().delete()
    assert [t.model.name for t in _resolve("cheap").targets] == ["m"]


def test_prepare_reserves_with_the_cached_price(model: Model) -> None:
    request = ChatRequest(model="plans/m", messages=(Message("user", "hi"),))
    prepared = calls.prepare(request, caller=CALLER, record=calls.CallRecord())
    assert prepared.refused is None and prepared.plan.targets[0].price.input == Decimal("1")
    refused = calls.prepare(ChatRequest(model="plans/nope", messages=()), caller=CALLER, record=calls.CallRecord())
    assert refused.plan is None and refused.refused.code == "not_found"


# -- API keys -----------------------------------------------------------------------------------------


@pytest.fixture
def api_key(make_user: object) -> tuple[object, str]:
    from gateway import apikeys

    owner = make_user("member")
    return apikeys.api_key_create(name="cached", user=owner, actor=owner)


def test_a_checked_key_is_reused_without_queries(api_key: tuple[object, str]) -> None:
    from gateway import apikeys

    _, raw = api_key
    with CaptureQueriesContext(connection) as first:
        apikeys.api_key_authenticate(raw)
    with CaptureQueriesContext(connection) as second:
        assert apikeys.api_key_authenticate(raw).name == "cached"
    assert len(first) >= 1 and len(second) == 0


@pytest.mark.parametrize("change", ["revoke", "deactivate owner", "delete"])
def test_a_cached_key_is_refused_at_the_next_call_after_a_change(api_key: tuple[object, str], change: str) -> None:
    from gateway import apikeys

    key, raw = api_key
    apikeys.api_key_authenticate(raw)
    if change == "revoke":
        apikeys.api_key_revoke(key=key, actor=None)
    elif change == "deactivate owner":
        key.user.is_active = False
        key.user.save()
    else:
        key.delete()
    with pytest.raises(apikeys.KeyRefused):
        apikeys.api_key_authenticate(raw)


def test_a_wrong_key_is_not_cached(api_key: tuple[object, str]) -> None:
    from gateway import apikeys

    _, raw = api_key
    wrong = raw[:-1] + ("a" if raw[-1] != "a" else "b")
    for _ in range(2):
        with pytest.raises(apikeys.KeyRefused):
            apikeys.api_key_authenticate(wrong)
    assert all(value is not None for _, _, value in gateway_rowcaches.api_keys.entries.values())
    assert apikeys._hash(wrong) not in gateway_rowcaches.api_keys.entries


# -- hard budgets --------------------------------------------------------------------------------------


def test_reserving_under_no_hard_budget_costs_no_query_and_a_new_one_counts_at_once(model: Model) -> None:
    import uuid

    from budgets import services as budget_services
    from tests.budgets_support import make_budget

    def reserve() -> int:
        return budget_services.budget_reserve(request_id=uuid.uuid4(), provider=model.provider, model=model,
                                              user=None, api_key=None, cost=Decimal("1"), ttl=timedelta(minutes=5))

    make_budget("soft", amount=Decimal("100"), hard_limit=False)
    reserve()
    with CaptureQueriesContext(connection) as quiet:
        assert reserve() == 0
    assert len(quiet) == 0
    budget = make_budget("hard", amount=Decimal("100"), hard_limit=True, scope="model", model=model)
    assert reserve() == 1
    assert budget_services.period_reserved(budget.periods.get()) == Decimal("1")


# -- signed-in people -----------------------------------------------------------------------------------


def test_a_signed_in_page_reads_no_user_or_roles_once_cached(client_as: object) -> None:
    client = client_as("admin")
    assert client.get("/providers/").status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert client.get("/providers/").status_code == 200
    tables = " ".join(query["sql"] for query in second)
    assert "accounts_user" not in tables and "auth_group" not in tables


@pytest.mark.parametrize("change", ["role removed", "deactivated", "password changed"])
def test_a_change_to_a_cached_person_counts_at_the_next_request(client_as: object, change: str) -> None:
    from django.contrib.auth.models import Group

    from accounts.models import User
    from aspweb.roles import ADMIN

    client = client_as("admin")
    assert client.get("/providers/").status_code == 200
    person = User.objects.get(email="admin@example.com")
    if change == "role removed":
        person.groups.remove(Group.objects.get(name=ADMIN))
        assert client.get("/providers/").status_code == 403
        return
    if change == "deactivated":
        person.is_active = False
    else:
        person.set_password("another-long-passphrase")
    person.save()
    assert client.get("/providers/").status_code == 302  # signed out: to the sign-in page


def test_each_request_gets_its_own_copy_of_a_cached_person(make_user: object) -> None:
    from accounts.backends import CachedUserBackend

    person = make_user("member")
    backend = CachedUserBackend()
    first, second = backend.get_user(person.pk), backend.get_user(person.pk)
    assert first is not second and first == second
    first.name = "Changed in one request"
    assert second.name == "Member" and backend.get_user(person.pk).name == "Member"


# -- price versions in the ledger -------------------------------------------------------------------------


def test_the_ledger_prices_with_cached_versions_and_a_new_version_counts_at_once(model: Model) -> None:
    from usage import services as usage_services

    def record() -> object:
        return usage_services.usage_record_create(provider=model.provider, model=model, source="cli", status="ok",
                                                  input_tokens=1_000_000, output_tokens=0)

    assert record().cost == Decimal("1")
    with CaptureQueriesContext(connection) as quiet:
        record()
    assert not [query for query in quiet if "providers_price" in query["sql"]]
    Price.objects.create(model=model, input=Decimal("3"), output=Decimal("6"))
    assert record().cost == Decimal("3")


def test_an_unwritable_data_folder_falls_back_to_this_process(model: Model, settings: object, tmp_path: object,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from aspweb import inline
    from aspweb import rowcache as rowcache_module

    if not inline.cache_is_local():
        pytest.skip("with Redis, changes come by pub/sub, never through the data folder")
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    settings.DATA_DIR = blocked  # rowcache/ cannot be made under a file
    monkeypatch.setattr(rowcache_module, "_files_unusable", [])
    store = RowCache("fallback-test", ttl=60.0)
    first = store.version()
    assert first == store.version() and rowcache_module._files_unusable
    store.changed()
    assert store.version() != first


# -- sessions (the engine of both profiles) --------------------------------------------------------------

def _session_queries(client: object) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/providers/").status_code == 200
    return sum("django_session" in query["sql"] for query in captured)


def test_a_signed_in_page_reads_no_session_once_cached(client_as: object) -> None:
    client = client_as("admin")
    assert _session_queries(client) == 1
    assert _session_queries(client) == 0


def test_signing_out_in_another_process_ends_the_cached_session_at_once(client_as: object) -> None:
    from django.contrib.sessions.models import Session

    from accounts import sessions

    client = client_as("admin")
    assert _session_queries(client) == 1
    # The other process deletes the row, and its cache announces the change as its signal would.
    Session.objects.filter(session_key=client.session.session_key)._raw_delete("default")
    assert client.get("/providers/").status_code == 200  # still cached: nothing told this worker
    RowCache(sessions.sessions.name, ttl=60.0)._announce()
    assert client.get("/providers/").status_code == 302


def test_a_cached_session_ends_at_its_expiry(client_as: object, monkeypatch: object) -> None:
    from accounts import sessions

    client = client_as("admin")
    assert client.get("/providers/").status_code == 200
    later = timezone.now() + timedelta(days=400)
    monkeypatch.setattr(sessions.timezone, "now", lambda: later)
    assert client.get("/providers/").status_code == 302


def test_unknown_session_keys_are_not_cached(db: None) -> None:
    from django.test import Client

    from accounts import sessions

    client = Client()
    client.cookies["sessionid"] = "made-up-key-0123456789abcdef0123"
    assert client.get("/providers/").status_code == 302
    assert "made-up-key-0123456789abcdef0123" not in sessions.sessions.entries


def test_a_full_store_drops_expired_entries_first_then_everything() -> None:
    store = RowCache("test-most", ttl=60.0, most=3)
    store.get("short", lambda: ("s", 0.001))
    store.get("a", lambda: ("a", None))
    store.get("b", lambda: ("b", None))
    time.sleep(0.01)
    store.get("c", lambda: ("c", None))
    assert set(store.entries) == {"a", "b", "c"}
    store.get("d", lambda: ("d", None))
    assert set(store.entries) == {"d"}


def test_a_file_version_counts_changes_and_never_comes_back(settings: object, tmp_path: object,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Redis the version is the file's size: changes in the same clock tick still count, and a
    file's time going back (or standing still) cannot bring an old version back."""
    import os

    from aspweb import inline
    from aspweb import rowcache as rowcache_module

    if not inline.cache_is_local():
        pytest.skip("with Redis, changes come by pub/sub, never through the data folder")
    settings.DATA_DIR = tmp_path
    store = RowCache("count-test", ttl=60.0)
    seen = [store.version()]
    for _ in range(50):
        store._announce()
        os.utime(store._file(), ns=(0, 0))  # every change stamped with the same time
        seen.append(store.version())
    assert len(set(seen)) == len(seen)
    monkeypatch.setattr(rowcache_module, "_START_AFRESH_AT", 60)
    for _ in range(20):  # past the size at which the file starts afresh
        store._announce()
        seen.append(store.version())
    assert len(set(seen)) == len(seen) and os.path.getsize(store._file()) < 60
