"""Teams: the services every writer of teams uses (pages, config file, single sign-on)."""

import threading
from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from accounts.models import AuditEvent, Team, User
from accounts.teams import team_create, team_members_set, user_teams_sync

pytestmark = pytest.mark.django_db


def test_a_team_is_created_with_its_members_and_audited(make_user: Callable[..., User]) -> None:
    admin, ann = make_user("admin"), make_user("member", email="ann@example.com")
    team = team_create(name="  Data   science ", members=[ann], actor=admin)
    assert team.name == "Data science" and list(team.members.all()) == [ann]
    event = AuditEvent.objects.get(action="team.create")
    assert event.actor == admin and event.details == {"members": ["ann@example.com"]}


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "DATA SCIENCE"])
def test_a_bad_or_taken_name_is_refused(name: str) -> None:
    team_create(name="Data science")
    with pytest.raises(ValidationError):
        team_create(name=name)
    assert Team.objects.count() == 1


def test_members_are_set_exactly(make_user: Callable[..., User]) -> None:
    ann, bob, cid = (make_user("member", email=f"{n}@example.com") for n in ("ann", "bob", "cid"))
    team = team_create(name="Ops", members=[ann, bob])
    assert team_members_set(team=team, users=[bob, cid]) == (["cid@example.com"], ["ann@example.com"])
    assert set(team.members.all()) == {bob, cid}
    assert team_members_set(team=team, users=[cid, bob]) == ([], [])
    assert AuditEvent.objects.filter(action="team.members").count() == 1


def test_a_person_can_be_in_several_teams(make_user: Callable[..., User]) -> None:
    ann = make_user("member")
    team_create(name="A", members=[ann])
    team_create(name="B", members=[ann])
    assert [t.name for t in ann.teams.all()] == ["A", "B"]


def test_user_teams_sync_sets_exactly_the_named_teams_creating_missing_ones(make_user: Callable[..., User]) -> None:
    ann = make_user("member")
    ops = team_create(name="Ops", members=[ann])
    team_create(name="Research")
    assert user_teams_sync(user=ann, team_names=["research", "Sales", "sales ", ""]) == (
        ["Research", "Sales"], ["Ops"])
    assert [t.name for t in ann.teams.all()] == ["Research", "Sales"]
    assert Team.objects.count() == 3 and not ops.members.exists()
    assert user_teams_sync(user=ann, team_names=["SALES", "Research"]) == ([], [])
    assert user_teams_sync(user=ann, team_names=[]) == ([], ["Research", "Sales"])
    assert not ann.teams.exists()
    assert AuditEvent.objects.filter(action="user.teams").count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_sign_ins_create_a_missing_team_once(make_user: Callable[..., User]) -> None:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")
    people = [make_user("member", email=f"p{i}@example.com") for i in range(6)]
    barrier = threading.Barrier(len(people))
    errors: list[BaseException] = []

    def sign_in(user: User) -> None:
        try:
            barrier.wait()
            user_teams_sync(user=user, team_names=["New team"])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_in, args=(u,)) for u in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    team = Team.objects.get()
    assert team.members.count() == len(people)
