"""The playground's calls count for the team the person picks: their only team by default, one of theirs when
they have several, none when they have none; never a team they are not in."""

from collections.abc import Callable

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import User
from accounts.teams import team_create
from playground.models import Answer
from providers.models import Model
from tests.fakes.upstream import FakeUpstream
from tests.playground_support import answers_of, make_catalog, send_data
from tests.test_playground_stream import send, stream
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


@pytest.fixture
def catalog(upstream: FakeUpstream) -> tuple[Model, Model]:
    return make_catalog(upstream)


@pytest.fixture
def member(make_user: Callable[..., User]) -> User:
    return make_user("member")


@pytest.mark.parametrize("keep", [True, False])  # the request pending in the cache, or built from the database
def test_a_persons_only_team_is_the_default(member: User, catalog: tuple[Model, Model], keep: bool) -> None:
    team = team_create(name="Research", members=[member])
    client = Client()
    client.force_login(member)
    page = client.get("/playground/").content.decode()
    assert 'name="team"' in page and f'<option value="{team.pk}" selected>Research</option>' in page
    turn = send(member, send_data(catalog[0], team=team.pk), keep=keep)
    stream(member, answers_of(turn.pk)[0])
    assert UsageRecord.objects.get().team == team
    assert turn.conversation.team == team


def test_the_picked_team_of_several_counts_the_calls_and_stays_with_the_conversation(
        member: User, catalog: tuple[Model, Model]) -> None:
    team_create(name="Alpha", members=[member])
    beta = team_create(name="Beta", members=[member])
    first = send(member, send_data(catalog[0], team=beta.pk))
    stream(member, answers_of(first.pk)[0])
    client = Client()
    client.force_login(member)
    page = client.get(f"/playground/c/{first.conversation_id}/").content.decode()
    assert f'<option value="{beta.pk}" selected>Beta</option>' in page
    second = send(member, send_data(catalog[0], team="", conversation=first.conversation_id))  # "No team"
    stream(member, answers_of(second.pk)[0])
    assert [r.team for r in UsageRecord.objects.order_by("created_at", "id")] == [beta, None]


def test_a_team_one_is_not_in_is_refused(member: User, catalog: tuple[Model, Model],
                                         make_user: Callable[..., User]) -> None:
    team_create(name="Mine", members=[member])
    theirs = team_create(name="Theirs", members=[make_user("member", email="x@example.com")])
    client = Client()
    client.force_login(member)
    response = client.post("/playground/send/", send_data(catalog[0], team=theirs.pk), headers={"HX-Request": "true"})
    assert response.status_code in (200, 400) and "Select a valid choice" in response.content.decode()
    assert not UsageRecord.objects.exists() and not Answer.objects.exists()


def test_without_a_team_there_is_no_choice_and_no_team(member: User, catalog: tuple[Model, Model]) -> None:
    client = Client()
    client.force_login(member)
    assert 'name="team"' not in client.get("/playground/").content.decode()
    turn = send(member, send_data(catalog[0]))
    stream(member, answers_of(turn.pk)[0])
    assert UsageRecord.objects.get().team is None
