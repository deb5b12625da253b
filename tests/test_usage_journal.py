"""The ledger's journal (usage/journal.py), the production profile's way of recording a call: its record is in
Redis before the answer leaves and committed right after; a worker that dies in between loses nothing, since
the replay writes what was journalled and never committed, once. Against the real Redis and PostgreSQL of
the PostgreSQL + Redis suite, through the gateway served by uvicorn."""

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError

from budgets import redisholds
from providers.models import Model
from tests import gateway_support
from tests.budgets_support import held, make_budget, period_of
from tests.fakes.upstream import FakeUpstream
from usage import journal, writer
from usage.models import UsageRecord

pytestmark = [
    pytest.mark.skipif(not settings.REDIS_URL, reason="the ledger's journal lives in Redis (the production profile)"),
    pytest.mark.django_db(transaction=True),  # the server answers from its own threads: data is committed
]


@pytest.fixture
def behind(settings: Any) -> Any:
    settings.USAGE_WRITE_BEHIND = True
    journal.remove([entry_id.decode() for entry_id, _ in
                    journal.redisclients.sync_client().xrange(journal.stream())])  # what earlier runs left
    return settings


@pytest.fixture
def key(upstream: FakeUpstream, make_user: Any) -> str:
    gateway_support.make_providers(upstream)
    return gateway_support.make_key(make_user("member"))[1]




def test_a_call_is_answered_once_its_record_is_journalled_and_committed_right_after(
        behind: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = gateway_support.writes_held_back(monkeypatch)
    with gateway_support.live_server() as base:
        answer = gateway_support.live_chat(base, key)
        # Answered, with its cost, while its record waits in the journal and nothing is committed yet.
        assert answer.status_code == 200
        assert not UsageRecord.objects.exists() and journal.pending() == 1
        cost = Decimal(answer.headers["x-aspweb-cost"])
        gate.set()
        gateway_support.until(lambda: UsageRecord.objects.exists() and journal.pending() == 0,
                              "the record was not committed")
    record = UsageRecord.objects.get()
    assert record.request_id.hex in answer.json()["id"]
    assert record.cost == cost > 0 and record.status == "ok" and record.source == "gateway"


def test_the_records_of_a_worker_that_died_after_answering_are_replayed_once(
        behind: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    budget = make_budget(amount=Decimal(10), hard_limit=True)
    # The worker dies after each answer: its records are journalled, never written.
    monkeypatch.setattr(writer._Writer, "enqueue", lambda self, fields, entry_id=None: None)
    with gateway_support.live_server() as base:
        answers = [gateway_support.live_chat(base, key, user=f"person-{n}") for n in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert not UsageRecord.objects.exists() and journal.pending() == 3
    costs = sorted(Decimal(answer.headers["x-aspweb-cost"]) for answer in answers)
    assert len(held()) == 3  # their holds wait too

    assert journal.replay(grace_seconds=60) == 0  # younger than the grace period: the writer may still be at it
    assert journal.replay(grace_seconds=0) == 3

    assert sorted(UsageRecord.objects.values_list("cost", flat=True)) == costs
    assert journal.pending() == 0 and journal.replay(grace_seconds=0) == 0
    # The provider's id of each answer came through the journal, as every other field.
    upstream_ids = set(UsageRecord.objects.values_list("upstream_id", flat=True))
    assert len(upstream_ids) == 3 and all(re.fullmatch(r"chatcmpl-fake\d{8}", i) for i in upstream_ids)
    # Charged once, to the period row and to Redis; the holds given back.
    period = period_of(budget)
    assert period.spent == sum(costs) and held() == []
    assert redisholds.counters(period.pk) == (sum(costs), Decimal(0))


def test_an_entry_whose_record_is_in_the_ledger_already_is_dropped_without_a_second_record(
        behind: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "remove", lambda entry_ids: None)  # a worker died between commit and removal
    with gateway_support.live_server() as base:
        assert gateway_support.live_chat(base, key).status_code == 200
        gateway_support.until(UsageRecord.objects.exists, "the record was not committed")
    monkeypatch.undo()
    assert journal.pending() == 1

    assert journal.replay(grace_seconds=0) == 0

    assert UsageRecord.objects.count() == 1 and journal.pending() == 0


def test_an_entry_names_rows_by_id_and_carries_no_secret(behind: Any, key: str) -> None:
    model = Model.objects.get(name="fake-model-a", provider__name="local")
    fields = {"provider": model.provider, "model": model, "source": "gateway", "status": "ok",
              "reported_cost": Decimal("0.0000012345"), "input_tokens": 3}
    entry = json.loads(journal.encode(fields))
    assert entry == {"provider_id": model.provider_id, "model_id": model.pk, "source": "gateway", "status": "ok",
                     "reported_cost": "0.0000012345", "input_tokens": 3}
    assert "sk-upstream" not in journal.encode(fields).decode()


def test_when_redis_does_not_answer_the_record_is_committed_before_the_answer(
        behind: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreachable(fields: dict) -> str:
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(journal, "append", unreachable)
    with gateway_support.live_server() as base:
        answer = gateway_support.live_chat(base, key)
        assert answer.status_code == 200
        assert UsageRecord.objects.get().cost == Decimal(answer.headers["x-aspweb-cost"])
    assert journal.pending() == 0
