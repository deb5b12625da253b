"""Shared fixtures: one user per role, clients signed in as them, and a fake upstream on loopback."""

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref import sync
from django.contrib.auth.models import Group
from django.test import Client

from accounts.models import User
from aspweb.roles import ADMIN, FINANCE, MEMBER
from tests.fakes.reports import FakeReports
from tests.fakes.upstream import FakeUpstream

PASSWORD = "correct-horse-battery-staple"

# Role name -> groups; "superuser" has no group and is an admin through is_superuser; "none" has no role.
ROLE_GROUPS: dict[str, tuple[str, ...]] = {
    "admin": (ADMIN,),
    "superuser": (),
    "finance": (FINANCE,),
    "member": (MEMBER,),
    "none": (),
}


@pytest.fixture(autouse=True)
def _test_settings(settings: object) -> None:
    # Tests that need a real worker opt out explicitly.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    # Password hashing is deliberately slow; tests create a user per role per case.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Budgets evaluate as usage commits, not on a timer thread: tests that wait for the timer set their own.
    settings.BUDGET_EVALUATE_SECONDS = 0
    # Records are committed before their calls answer, so that a test reads the ledger right after a call;
    # tests of the production profile's journal (test_usage_journal.py) turn it back on.
    settings.USAGE_WRITE_BEHIND = False


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(role: str = "member", email: str | None = None) -> User:
        user = User.objects.create_user(email or f"{role}@example.com", PASSWORD, name=role.title(),
                                        is_superuser=role == "superuser", is_staff=role == "superuser")
        user.groups.add(*Group.objects.filter(name__in=ROLE_GROUPS[role]))
        return user

    return make


@pytest.fixture
def admin_user(make_user: Callable[..., User]) -> User:
    return make_user("admin")


@pytest.fixture
def member_user(make_user: Callable[..., User]) -> User:
    return make_user("member")


@pytest.fixture
def finance_user(make_user: Callable[..., User]) -> User:
    return make_user("finance")


def signed_in(user: User) -> Client:
    """A test client signed in as `user`."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def client_as(make_user: Callable[..., User]) -> Callable[[str], Client]:
    """client_as("admin") -> a test client signed in as a fresh user with that role."""

    def make(role: str) -> Client:
        return Client() if role == "anonymous" else signed_in(make_user(role))

    return make


@pytest.fixture
def admin_client(client_as: Callable[[str], Client]) -> Client:
    return client_as("admin")


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def reports_server() -> Iterator[FakeReports]:
    """Fake OpenAI and Anthropic organisation usage and cost report APIs and OpenRouter's generation stats
    (reconciliation)."""
    with FakeReports() as fake:
        yield fake


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The functions handed to sync_to_async meanwhile (thread hops), as module.qualname."""
    seen: list[str] = []
    original = sync.SyncToAsync.__init__

    def recording(self: sync.SyncToAsync, func: object, *args: object, **kwargs: object) -> None:
        target = getattr(func, "__func__", func)
        seen.append(f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}")
        original(self, func, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__init__", recording)
    yield seen


@pytest.fixture(autouse=True)
def _budget_holds_forgotten(settings: Any) -> None:
    """Hard limits held in Redis outlive a test's database: each test starts without them, as its database
    starts without period rows (whose ids a new test database gives again)."""
    if settings.BUDGET_HOLDS == "redis":
        from aspweb import redisclients

        client = redisclients.sync_client()
        keys = list(client.scan_iter(match=f"{settings.CACHE_KEY_PREFIX}:{{budgets}}:*", count=1000))
        if keys:
            client.delete(*keys)


class Clock:
    """A settable stand-in for `gateway.ratelimit.clock`."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# A whole minute: rate-limit windows are whole minutes of wall-clock time.
MINUTE_START = 1_700_000_040.0


@pytest.fixture
def minute(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Rate-limit counting 15 s into one minute that does not end unless the test moves the clock: a test
    that counts calls against a per-minute limit cannot cross into a new window halfway and see a 200 where
    a 429 is due."""
    from django.core.cache import cache

    from gateway import ratelimit

    cache.clear()
    fixed = Clock(MINUTE_START + 15)
    monkeypatch.setattr(ratelimit, "clock", fixed)
    return fixed


@pytest.fixture
def database_holds(settings: Any) -> None:
    """Hard limits held by the budget period rows (the embedded default's way), whatever the suite runs with."""
    settings.BUDGET_HOLDS = "database"


@pytest.fixture
def local_cache(settings: object) -> None:
    """The embedded default's cache (this process's own memory), whatever the suite runs with."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture(scope="session", autouse=True)
def _row_caches_listening() -> None:
    """With Redis, row caches trust nothing (and cache nothing) until this process's subscription is
    confirmed (aspweb/rowcache_bus.py): wait for it once, so that tests see what a running worker sees."""
    from aspweb import inline, rowcache_bus

    if inline.cache_is_local():
        return
    deadline = time.monotonic() + 10
    while rowcache_bus.version("tests") is None:
        assert time.monotonic() < deadline, "the row caches' Redis subscription was not confirmed within 10 s"
        time.sleep(0.01)


@pytest.fixture(scope="session", autouse=True)
def _no_connections_left_behind(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Threads of live servers and ledger writers keep their PostgreSQL connections to the test database
    after their tests: closed here, before the database is dropped, which PostgreSQL refuses while they
    are open."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
