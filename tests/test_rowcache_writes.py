"""Writes that send no model signal still drop cached rows (aspweb/rowcache.py): a queryset's update(),
bulk_update(), bulk_create() and delete() move the version of every row cache that follows its model.

The caches and their models are read from what `RowCache.follow` registered, so a cache or model followed later
is covered here without a new test (and fails loudly until `ROW_OF` can make one of its rows).
"""

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.db.models import F
from django.utils import timezone

from accounts.models import Team, User
from aspweb import rowcache
from budgets.models import Budget
from gateway import apikeys
from gateway import rowcaches as gateway_rowcaches
from gateway.models import ApiKey, Deployment, Route
from providers import rowcaches
from providers.models import Model, Price, PriceTier, Provider
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import OPENAI_MODEL, call, chat_body, make_key, make_providers

pytestmark = pytest.mark.django_db


def _provider() -> Provider:
    return Provider.objects.create(name="writes", kind="openai_compatible", base_url="http://127.0.0.1:9/v1",
                                   api_key="sk-writes-0001")


def _model() -> Model:
    return Model.objects.create(provider=_provider(), name="m")


def _price() -> Price:
    return Price.objects.create(model=_model(), input=Decimal("1"), output=Decimal("2"))


def _user() -> User:
    return User.objects.create_user("writes@example.com", "a-long-enough-passphrase")


def _membership() -> Any:
    user = _user()
    user.groups.add(Group.objects.create(name="writes"))
    return User.groups.through.objects.get(user=user)


# One saved row of each followed model, by its label.
ROW_OF: dict[str, Callable[[], Any]] = {
    "providers.Provider": _provider,
    "providers.Model": _model,
    "providers.Price": _price,
    "providers.PriceTier": lambda: PriceTier.objects.create(price=_price(), above=1000, input=Decimal("2"),
                                                            output=Decimal("4")),
    "gateway.Route": lambda: Route.objects.create(name="writes"),
    "gateway.Deployment": lambda: Deployment.objects.create(route=Route.objects.create(name="writes"),
                                                              model=_model()),
    "gateway.ApiKey": lambda: make_key(name="writes")[0],
    "accounts.User": _user,
    "accounts.Team": lambda: Team.objects.create(name="writes"),
    "auth.Group": lambda: Group.objects.create(name="writes"),
    "accounts.User_groups": _membership,
    "budgets.Budget": lambda: Budget.objects.create(name="writes", amount=Decimal("10")),
    "sessions.Session": lambda: Session.objects.create(session_key="w" * 32, session_data="",
                                                       expire_date=timezone.now() + timedelta(days=1)),
}

FOLLOWED = sorted((store.name, model._meta.label, write)
                  for model, stores in rowcache.followers().items() for store, _ in stores
                  for write in ("update", "bulk_update", "bulk_create", "delete"))


def _store(name: str) -> rowcache.RowCache:
    return next(store for stores in rowcache.followers().values() for store, _ in stores if store.name == name)


def _model_of(label: str) -> Any:
    return next(model for model in rowcache.followers() if model._meta.label == label)


def _write(model: Any, row: Any, write: str) -> None:
    """`write` of `row` through a queryset, changing nothing a store reads, so that only the write counts."""
    rows = model.objects.filter(pk=row.pk)
    if write == "update":
        rows.update(**{model._meta.pk.name: F(model._meta.pk.name)})
    elif write == "bulk_update":
        field = next(field.name for field in model._meta.concrete_fields if not field.primary_key)
        model.objects.bulk_update([row], [field])
    elif write == "bulk_create":
        model.objects.bulk_create([row])
    else:
        rows.delete()


def test_every_followed_model_is_covered() -> None:
    assert {label for _, label, _ in FOLLOWED} == set(ROW_OF)
    stores = {name for name, _, _ in FOLLOWED}
    assert {"catalog", "api-keys", "price-versions", "budgets", "users", "sessions"} <= stores


@pytest.mark.parametrize(("store_name", "label", "write"), FOLLOWED)
def test_a_queryset_write_drops_every_store_that_follows_its_model(store_name: str, label: str, write: str) -> None:
    store, model = _store(store_name), _model_of(label)
    row = ROW_OF[label]()
    if write == "bulk_create":
        model.objects.filter(pk=row.pk).delete()  # put back below, as a bulk write
    before = store.version()
    assert before is not None
    store.get("probe", lambda: ("cached", None))
    assert store.get("probe", lambda: ("not read", None)) == "cached"
    _write(model, row, write)
    assert store.version() != before
    assert store.get("probe", lambda: ("read again", None)) == "read again"


def test_a_write_that_touches_no_row_keeps_the_stores() -> None:
    before = rowcaches.resolutions.version()
    assert Model.objects.filter(pk=-1).update(enabled=False) == 0
    assert Model.objects.filter(pk=-1).delete()[0] == 0
    assert Model.objects.bulk_create([]) == []
    assert rowcaches.resolutions.version() == before


def test_a_key_s_last_use_keeps_the_checked_keys(db: None) -> None:
    """The gateway writes a key's last use once a minute per key: dropping every worker's checked keys for
    it would send most calls back to the database."""
    key, raw = make_key(name="writes")
    apikeys.api_key_authenticate(raw)
    before = gateway_rowcaches.api_keys.version()
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    assert gateway_rowcaches.api_keys.version() == before
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now(), revoked_at=timezone.now())
    assert gateway_rowcaches.api_keys.version() != before


def _users_probe() -> Any:
    from accounts.backends import users

    users.get("probe", lambda: ("cached", None))
    assert users.get("probe", lambda: ("not read", None)) == "cached"
    return lambda: users.get("probe", lambda: ("read again", None))


@pytest.mark.parametrize("write", ["add", "remove", "set", "clear", "reverse add", "reverse clear", "through delete",
                                   "base manager update", "related manager update"])
def test_related_and_many_to_many_managers_drop_the_people_cached(write: str) -> None:
    user, group = _user(), Group.objects.create(name="writes")
    if write in ("remove", "clear", "reverse clear", "through delete"):
        user.groups.add(group)
    probe = _users_probe()
    if write == "add":
        user.groups.add(group)
    elif write == "remove":
        user.groups.remove(group)
    elif write == "set":
        user.groups.set([group])
    elif write == "clear":
        user.groups.clear()
    elif write == "reverse add":
        group.user_set.add(user)
    elif write == "reverse clear":
        group.user_set.clear()
    elif write == "through delete":
        User.groups.through.objects.filter(user=user).delete()
    elif write == "base manager update":
        User._meta.base_manager.filter(pk=user.pk).update(name="renamed")
    else:
        group.user_set.add(user)
        probe = _users_probe()
        group.user_set.update(name="renamed")  # the people of a group, through its many-to-many manager
    assert probe() == "read again"


def test_the_system_check_finds_a_queryset_write_that_would_skip_the_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db.models import QuerySet

    from aspweb.checks import writes_tell_row_caches

    assert writes_tell_row_caches() == []

    class Quiet(QuerySet):
        def update(self, **values: Any) -> int:  # a write that would not tell the caches
            return 0

    monkeypatch.setattr(Budget.objects, "get_queryset", lambda: Quiet(Budget))
    errors = writes_tell_row_caches()
    assert [error.id for error in errors] == ["aspweb.E003"] and "Quiet.update of budgets.Budget" in errors[0].msg


def test_the_ledger_s_bulk_writes_tell_no_store() -> None:
    from usage.models import UsageRecord

    assert UsageRecord not in rowcache.followers()


# -- the gateway --------------------------------------------------------------------------------------


def test_a_model_disabled_by_a_queryset_update_is_refused_at_the_next_call(upstream: FakeUpstream) -> None:
    model = make_providers(upstream)[OPENAI_MODEL]
    _, raw = make_key()
    assert call("/v1/chat/completions", chat_body(), key=raw).status == 200  # now cached
    Model.objects.filter(pk=model.pk).update(enabled=False)
    answer = call("/v1/chat/completions", chat_body(), key=raw)
    assert answer.status == 403 and answer.json["error"]["code"] == "model_disabled"


def test_models_disabled_through_their_provider_s_manager_are_refused_at_the_next_call(upstream: FakeUpstream) -> None:
    model = make_providers(upstream)[OPENAI_MODEL]
    _, raw = make_key()
    assert call("/v1/chat/completions", chat_body(), key=raw).status == 200
    model.provider.models.update(enabled=False)
    assert call("/v1/chat/completions", chat_body(), key=raw).status == 403


def test_a_key_revoked_by_a_queryset_update_is_refused_at_the_next_call(upstream: FakeUpstream) -> None:
    make_providers(upstream)
    key, raw = make_key()
    assert call("/v1/chat/completions", chat_body(), key=raw).status == 200
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    assert call("/v1/chat/completions", chat_body(), key=raw).status == 401
