"""The ledger's journal on disk (usage/journalfile.py), a serving process's way of recording a call without Redis:
its record is written to a file of the process before the answer leaves and committed right after; the
segments of a process that died in between are replayed by the next process to start, once. Through the
gateway served by uvicorn, on both databases."""

import asyncio
import json
import re
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from aspweb.handler import ASGIHandler
from tests import gateway_support
from tests.budgets_support import make_budget, period_of
from tests.fakes.upstream import FakeUpstream
from usage import journal, journalfile, writer
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)  # the server answers from its own threads


@pytest.fixture
def on_disk(settings: Any, tmp_path: Path) -> Any:
    settings.USAGE_WRITE_BEHIND = True
    settings.USAGE_JOURNAL = "file"
    settings.DATA_DIR = tmp_path
    yield settings
    journalfile.close()


@pytest.fixture
def key(upstream: FakeUpstream, make_user: Any) -> str:
    gateway_support.make_providers(upstream)
    return gateway_support.make_key(make_user("member"))[1]




def _segments() -> list[Path]:
    return sorted(journalfile.directory().glob(f"*{journalfile.SUFFIX}"))


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _start_a_process() -> None:
    """What a serving process does as it starts (the ASGI lifespan's start-up)."""
    async def lifespan() -> None:
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[dict] = []

        async def receive() -> dict:
            return messages.pop(0)

        async def send(message: dict) -> None:
            sent.append(message)

        await ASGIHandler()({"type": "lifespan"}, receive, send)
        assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    thread = threading.Thread(target=asyncio.run, args=(lifespan(),))  # a loop of its own, as uvicorn's
    thread.start()
    thread.join(30)


def test_a_call_is_answered_once_its_record_is_on_disk_and_committed_right_after(
        on_disk: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = gateway_support.writes_held_back(monkeypatch)
    with gateway_support.live_server() as base:
        answer = gateway_support.live_chat(base, key)
        # Answered, with its cost, while its record waits in the process's segment and nothing is committed.
        assert answer.status_code == 200
        assert not UsageRecord.objects.exists() and journal.pending() == 1
        [segment] = _segments()
        [entry] = _lines(segment)
        assert UUID(entry["request_id"]).hex in answer.json()["id"]
        gate.set()
        gateway_support.until(lambda: UsageRecord.objects.exists() and journal.pending() == 0,
                              "the record was not committed")
        # Committed: the segment is emptied, not grown.
        assert segment.stat().st_size == 0
    record = UsageRecord.objects.get()
    assert record.cost == Decimal(answer.headers["x-aspweb-cost"]) > 0 and record.status == "ok"


def test_the_records_of_a_process_that_died_after_answering_are_written_by_the_next_to_start_once(
        on_disk: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    budget = make_budget(amount=Decimal(10), hard_limit=True)
    # The process dies after each answer: its records are on disk, never written.
    monkeypatch.setattr(writer._Writer, "enqueue", lambda self, fields, entry_id=None: None)
    with gateway_support.live_server() as base:
        answers = [gateway_support.live_chat(base, key, user=f"person-{n}") for n in range(3)]
        assert [answer.status_code for answer in answers] == [200, 200, 200]
        # While its process lives, a segment is its writer's: nobody replays it.
        assert journal.replay() == 0 and len(_lines(_segments()[0])) == 3
    costs = sorted(Decimal(answer.headers["x-aspweb-cost"]) for answer in answers)
    journalfile.close()  # the process is gone: its segment stays, no longer locked
    assert not UsageRecord.objects.exists() and len(_segments()) == 1

    _start_a_process()

    assert sorted(UsageRecord.objects.values_list("cost", flat=True)) == costs
    assert _segments() == [] and journal.replay() == 0
    # The provider's id of each answer came through the file, as every other field.
    upstream_ids = set(UsageRecord.objects.values_list("upstream_id", flat=True))
    assert len(upstream_ids) == 3 and all(re.fullmatch(r"chatcmpl-fake\d{8}", i) for i in upstream_ids)
    assert period_of(budget).spent == sum(costs)  # charged once


def test_an_entry_whose_record_is_in_the_ledger_already_adds_nothing(
        on_disk: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "remove", lambda entry_ids: None)  # the process died between commit and removal
    with gateway_support.live_server() as base:
        assert gateway_support.live_chat(base, key).status_code == 200
        gateway_support.until(UsageRecord.objects.exists, "the record was not committed")
    journalfile.close()
    assert len(_lines(_segments()[0])) == 1

    assert journal.replay() == 0

    assert UsageRecord.objects.count() == 1 and _segments() == []


def test_a_torn_last_line_is_not_an_entry(on_disk: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer._Writer, "enqueue", lambda self, fields, entry_id=None: None)
    with gateway_support.live_server() as base:
        assert gateway_support.live_chat(base, key).status_code == 200
    journalfile.close()
    [segment] = _segments()
    whole = segment.read_bytes()
    segment.write_bytes(whole + whole[: len(whole) // 2])  # died inside its second write

    assert journal.replay() == 1

    assert UsageRecord.objects.count() == 1 and _segments() == []


def test_a_full_segment_is_followed_by_another_and_deleted_once_its_records_are_committed(
        on_disk: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journalfile, "SEGMENT_BYTES", 100)
    log = journalfile.journal()
    first = [log.append(b'{"n": %d, "padding": "%s"}' % (n, b"x" * 40)) for n in range(2)]
    second = log.append(b'{"n": 2}')
    assert len(_segments()) == 2 and log.waiting() == 3

    log.remove(first)

    [left] = _segments()  # the full one went; the current one still holds its entry
    assert _lines(left) == [{"n": 2}]
    log.remove([second])
    assert left.exists() and left.stat().st_size == 0 and log.waiting() == 0
    log.close()
    assert _segments() == []


def test_when_the_disk_refuses_the_record_is_committed_before_the_answer(
        on_disk: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: Any, entry: bytes) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journalfile.FileJournal, "append", full)
    with gateway_support.live_server() as base:
        answer = gateway_support.live_chat(base, key)
        assert answer.status_code == 200
        assert UsageRecord.objects.get().cost == Decimal(answer.headers["x-aspweb-cost"])


def test_a_caller_cancelled_while_its_record_is_journalled_still_has_it_committed(
        on_disk: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client gone while its call's record is being written (after an embeddings answer's last byte): the
    record is still journalled, then committed; the caller sees its cancellation after."""
    from asgiref.sync import async_to_sync

    from aspweb.inline import NeedsThread, running_inline
    from tests.budgets_support import make_model
    from tests.usage_support import spec

    model = make_model()
    monkeypatch.setattr(writer, "serving", lambda: True)  # as in a serving process, whose loop outlives requests
    original = writer._priced
    seen: dict[str, Any] = {}

    def cancel_meanwhile(fields: dict[str, Any]) -> Any:
        if running_inline():
            raise NeedsThread("priced in a thread, where the caller can be cancelled meanwhile")
        seen["loop"].call_soon_threadsafe(seen["task"].cancel)
        threading.Event().wait(0.2)
        return original(fields)

    monkeypatch.setattr(writer, "_priced", cancel_meanwhile)

    async def go() -> None:
        seen["loop"] = asyncio.get_running_loop()
        seen["task"] = asyncio.ensure_future(writer.usage_record_write(**spec(model, input_tokens=11)))
        with pytest.raises(asyncio.CancelledError):
            await seen["task"]
        await writer.writer_drain()

    async_to_sync(go)()
    assert UsageRecord.objects.get().input_tokens == 11
    assert journal.pending() == 0
