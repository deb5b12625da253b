"""Playground streams under a hard limit: an answer opened twice before its first token (a double open, or an
EventSource reconnecting fast) reserves once, for the stream that won its claim, and a stream closed before
it began gives its reservation back, instead of holding the worst case until the reservation expires."""

import asyncio
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.test import RequestFactory

from accounts.models import User
from budgets import holds
from budgets.models import Budget
from playground import views
from playground.models import Answer
from providers.models import Model
from tests.budgets_support import ensure_role_groups, held, make_budget, period_of
from tests.fakes.upstream import FakeUpstream
from tests.playground_support import REPLY, answers_of, make_catalog, send_data
from tests.test_playground_stream import Stream, _asgi_get, _session_cookie, run_asgi, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def member(make_user: Callable[..., User]) -> User:
    ensure_role_groups()  # an earlier transactional test's flush emptied them
    return make_user("member")


@pytest.fixture
def model(upstream: FakeUpstream) -> Model:
    return make_catalog(upstream)[0]


@pytest.fixture
def budget(db: None) -> Budget:
    return make_budget(amount=Decimal(10), hard_limit=True)


@pytest.fixture
def reserved_for(monkeypatch: pytest.MonkeyPatch) -> list[uuid.UUID]:
    """The request id of every call that was given a reservation, as the call path asks for them."""
    made: list[uuid.UUID] = []
    reserve = holds.budget_reserve

    def spy(**kwargs: object) -> int:
        count = reserve(**kwargs)
        if count:
            made.append(kwargs["request_id"])
        return count

    monkeypatch.setattr(holds, "budget_reserve", spy)
    return made


def _open_at_once(cookie: str, answer: Answer, streams: int) -> list[Stream]:
    path = f"/playground/answers/{answer.pk}/stream/"

    async def together() -> list[Stream]:
        return await asyncio.gather(*(_asgi_get(path, cookie) for _ in range(streams)))

    return run_asgi(together)


@pytest.mark.parametrize("keep", [True, False], ids=["stored request", "request built by the stream"])
def test_an_answer_opened_twice_at_once_reserves_once_and_keeps_nothing(
    member: User, model: Model, budget: Budget, upstream: FakeUpstream, reserved_for: list[uuid.UUID], keep: bool
) -> None:
    upstream.chunk_delay = 0.02  # both are open before the first token
    [answer] = answers_of(send(member, send_data(model), keep=keep).pk)

    results = _open_at_once(_session_cookie(member), answer, streams=2)

    # One call, which both streams follow to its end.
    assert [result.text for result in results] == [REPLY, REPLY]
    assert len(upstream.requests) == 1
    answer.refresh_from_db()
    assert answer.status == Answer.Status.OK
    assert reserved_for == [answer.request_id]  # the winner's call, once; the other stream held nothing
    assert not held()
    period = period_of(budget)
    assert (period.spent, period.reserved) == (answer.cost, 0)


def test_a_stream_closed_before_its_first_event_gives_its_reservation_back(
    member: User, model: Model, budget: Budget, upstream: FakeUpstream
) -> None:
    [answer] = answers_of(send(member, send_data(model)).pk)
    request = RequestFactory().get("/")
    request.user = member
    claim = views._claim(request, answer.pk)
    assert len(held(claim.record.request_id)) == 1
    assert period_of(budget).reserved > 0

    views._AnswerEvents(claim).close()  # the browser left as the response began

    assert not held()
    assert period_of(budget).reserved == 0
    answer.refresh_from_db()
    assert answer.status == Answer.Status.PENDING and upstream.requests == []


def test_a_stored_answer_is_claimed_once_though_its_reservation_needs_the_database(
    local_cache: None, settings: Any, tmp_path: Path, member: User, model: Model, budget: Budget,
    upstream: FakeUpstream, reserved_for: list[uuid.UUID]
) -> None:
    # With everything cached, the claim is made on the event loop; the reservation then needs the database,
    # and a claim made before finding that out would be counted again in the thread: the stream would lose
    # its own answer. The thread is asked for before the claim.
    settings.DATA_DIR = tmp_path  # version files of its own: other processes' writes drop nothing it caches
    [first] = answers_of(send(member, send_data(model)).pk)
    [second] = answers_of(send(member, send_data(model)).pk)
    cookie = _session_cookie(member)
    _open_at_once(cookie, first, streams=1)  # the session, the person, the model and the budgets are cached now

    [result] = _open_at_once(cookie, second, streams=1)

    assert "".join(result.deltas) == REPLY
    first.refresh_from_db()
    second.refresh_from_db()
    assert reserved_for == [first.request_id, second.request_id]
    assert not held()
