"""What the budget tests share: a priced model nobody calls, spending an exact amount through the ledger,
budgets, a loopback webhook receiver, and the clock in the ledger's time zone."""

import ipaddress
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import Group
from django.utils import timezone

from aspweb import redisclients
from aspweb.roles import ROLES
from budgets import evaluation, holds, redisholds
from budgets.models import Budget, BudgetPeriod, Reservation
from providers.models import Model, Price, Provider
from usage import services as usage_services
from usage.models import UsageRecord

ON_POSTGRESQL = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
SQLITE_REASON = ("SQLite serialises writers with a database lock; the race this guards against exists only on "
                 "PostgreSQL")


def ensure_role_groups() -> None:
    """The role groups come from a migration, and the flush after an earlier transactional test empties
    them; tests of their own transactions that need a role put them back."""
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def local(*args: int) -> datetime:
    """An instant given as wall-clock time in settings.TIME_ZONE."""
    return datetime(*args, tzinfo=ZoneInfo(settings.TIME_ZONE))


def make_model(name: str = "m1", provider: str = "p1") -> Model:
    """A model at $1 input and $2 output per 1M tokens, on a provider at a dead address."""
    provider_row, _ = Provider.objects.get_or_create(name=provider, kind="openai_compatible",
                                                     base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider_row, name=name)
    Price.objects.create(model=model, effective_from=datetime(2020, 1, 1, tzinfo=ZoneInfo("UTC")),
                         input=Decimal("1"), output=Decimal("2"))
    return model


def spend(model: Model, amount: str | Decimal, *, when: datetime | None = None, **fields: Any) -> UsageRecord:
    """Write a usage record that costs exactly `amount` dollars (input tokens at $1 per 1M)."""
    tokens = int(Decimal(amount) * 1_000_000)
    return usage_services.usage_record_create(provider=model.provider, model=model, source="cli", status="ok",
                                              created_at=when, input_tokens=tokens, **fields)


def make_budget(name: str = "Team", **fields: Any) -> Budget:
    fields.setdefault("amount", Decimal("1"))
    return Budget.objects.create(name=name, **fields)


def period_of(budget: Budget, when: datetime | None = None) -> BudgetPeriod:
    """The budget's period row, its `reserved` read from where hard limits are held (Redis or the row)."""
    period = BudgetPeriod.objects.get(budget=budget, start=budget.span_at(when or timezone.now()).start)
    period.reserved = holds.period_reserved(period)
    return period


def held(request_id: uuid.UUID | None = None) -> list[Decimal]:
    """What calls hold (one amount per period held), of one call or of all, where hard limits are held."""
    if not holds.holds_in_redis():
        reservations = Reservation.objects.all() if request_id is None else Reservation.objects.filter(
            request_id=request_id)
        return list(reservations.order_by("period_id").values_list("amount", flat=True))
    client = redisclients.sync_client()
    keys = [redisholds.hold_key(request_id)] if request_id is not None else client.zrange(
        f"{settings.CACHE_KEY_PREFIX}:{{budgets}}:expiring", 0, -1)
    return [redisholds.amount(value) for key in keys for value in client.hvals(key)]


def evaluated(budget: Budget, when: datetime | None = None) -> BudgetPeriod:
    """The budget's period once every budget was evaluated at `when`, as after usage (a soft budget's spend
    follows the ledger then, not at each record)."""
    evaluation.budgets_evaluate(now=when)
    return period_of(budget, when)


class Receiver:
    """A webhook receiver on loopback: records each POST's JSON and answers with the scripted statuses in
    turn (the last one repeats)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [200])
        self.posts: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/s3cr3t-token"

    def __enter__(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.posts.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                           "host": self.headers.get("Host"), "json": json.loads(body)})
                    receiver.times.append(time.monotonic())
                    status = receiver.statuses[min(len(receiver.posts), len(receiver.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"try later")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def allow_loopback_webhooks(settings: Any) -> None:
    """Webhooks go only to public addresses; the loopback receivers here are the operator's exception."""
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


class FakeDNS:
    """socket.getaddrinfo for the names in `answers`: each name's answers (addresses separated by commas) are
    given out in turn, the last one repeating, as a rebinding DNS server would. IP literals and localhost
    resolve as usual and other names fail, so that no test asks a real DNS server."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = {name: list(addresses) for name, addresses in answers.items()}
        self.asked: list[str] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in self.answers:
            self.asked.append(name)
            queue = self.answers[name]
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
            return [(socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET,
                     socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 0)))
                    for address in answer.split(",")]
        if name != "localhost" and not _is_ip(name):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.real(host, port, *args, **kwargs)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False
    return True


def fake_dns(monkeypatch: Any, answers: dict[str, list[str]]) -> FakeDNS:
    dns = FakeDNS(answers)
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    return dns


# A public address that no test connects to (example.com's, once).
PUBLIC_IP = "93.184.215.14"


@contextmanager
def receiver(statuses: list[int] | None = None) -> Iterator[Receiver]:
    with Receiver(statuses) as running:
        yield running
