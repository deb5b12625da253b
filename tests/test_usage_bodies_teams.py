"""Prompt and answer logging per team (accounts/teams.py, providers/callbodies.py): a call logs its body when its
team says so (its API key's team, or the team picked in the playground), whatever its key and the global
setting say; the switch is on the team's form and in the config file, audited, and read on the event loop from
a row cache, with no query and no thread hop once warm."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import AuditEvent, Team, User
from accounts.teams import logging_teams, team_create, team_log_bodies_set
from aspweb import config, inline
from providers import callbodies, calls
from providers.adapters.base import ChatRequest, Message
from providers.models import Model
from tests.conftest import signed_in
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import call, chat_body, make_key, make_providers
from usage.models import CallBody, UsageRecord

CHAT = "/v1/chat/completions"


@pytest.fixture
def models(db: None, upstream: FakeUpstream) -> dict[str, Model]:
    return make_providers(upstream)


def _ask(key: str) -> UsageRecord:
    answer = call(CHAT, chat_body(messages=[{"role": "user", "content": "the kestrel report"}]), key=key)
    assert answer.status == 200, answer.content
    return UsageRecord.objects.get(request_id=answer.headers["x-request-id"])


def _logged(record: UsageRecord) -> bool:
    return CallBody.objects.filter(record=record).exists()


def test_a_keys_team_decides_for_its_calls(models: dict[str, Model], member_user: User) -> None:
    logging, quiet = team_create(name="Logging", log_bodies=True), team_create(name="Quiet")
    assert _logged(_ask(make_key(member_user, team=logging)[1]))
    assert not _logged(_ask(make_key(member_user, team=quiet)[1]))
    assert not _logged(_ask(make_key(member_user)[1]))  # no team, no key switch, no global setting
    assert _logged(_ask(make_key(member_user, team=quiet, log_bodies=True)[1]))  # the key's own switch still counts


def test_the_team_picked_in_the_playground_decides_for_its_calls(models: dict[str, Model], member_user: User) -> None:
    logging = team_create(name="Logging", members=[member_user], log_bodies=True)
    quiet = team_create(name="Quiet", members=[member_user])
    request = ChatRequest(model="fake-model-a", messages=(Message("user", "playground words"),))

    def played(team: Team | None) -> bool:
        caller = calls.Caller(source="playground", user=member_user, team_id=team.pk if team else None)
        _, record = calls.complete_chat(request, caller=caller, provider="local")
        return CallBody.objects.filter(record__request_id=record.request_id).exists()

    assert played(logging) and not played(quiet) and not played(None)


def test_a_team_switched_off_after_a_call_stops_logging_at_once(models: dict[str, Model], member_user: User,
                                                                 admin_user: User) -> None:
    team = team_create(name="Research", log_bodies=True)
    key = make_key(member_user, team=team)[1]
    assert _logged(_ask(key))
    assert team_log_bodies_set(team=team, on=False, actor=admin_user)
    assert not _logged(_ask(key))
    # A write that sends no signal drops the cached switches as well (aspweb/rowcache.py).
    Team.objects.filter(pk=team.pk).update(log_bodies=True)
    assert _logged(_ask(key))
    assert not team_log_bodies_set(team=Team.objects.get(pk=team.pk), on=True, actor=admin_user)  # no change
    event = AuditEvent.objects.get(action="team.log_bodies")
    assert event.actor == admin_user and event.details == {"log_bodies": {"from": True, "to": False}}


def test_the_check_reads_no_database_on_the_event_loop_once_warm(models: dict[str, Model],
                                                                 member_user: User) -> None:
    team = team_create(name="Research", log_bodies=True)
    key, _ = make_key(member_user, team=team)
    caller = calls.Caller(source="gateway", user=member_user, api_key=key, team_id=team.pk)
    logging_teams.forget()
    with inline.memory_only(), pytest.raises(inline.NeedsThread, match="team-logging"):
        callbodies.logged(caller)  # cold: the read belongs in a thread
    assert callbodies.logged(caller)  # read (in a thread, as inline_or_hop would)
    with CaptureQueriesContext(connection) as queries, inline.memory_only():
        assert callbodies.logged(caller)
        assert not callbodies.logged(calls.Caller(source="gateway", user=member_user, api_key=key,
                                                  team_id=team.pk + 1))
    assert queries.captured_queries == []


def test_a_warm_gateway_call_of_a_logging_team_makes_no_thread_hop_before_its_answer(
        models: dict[str, Model], member_user: User, hops: list[str]) -> None:
    team = team_create(name="Research", log_bodies=True)
    key = make_key(member_user, team=team)[1]
    assert _logged(_ask(key))
    hops.clear()
    record = _ask(key)
    assert _logged(record)
    assert not [hop for hop in hops if hop.endswith(("_admit_sync", ".prepare", ".resolve", ".logged"))], hops


def test_the_team_form_turns_it_on_and_off_and_says_so(models: dict[str, Model], admin_user: User) -> None:
    client = signed_in(admin_user)
    assert "Log prompts and answers" in client.get("/teams/").content.decode()
    assert client.post("/teams/", {"name": "Logged", "log_bodies": "on"}).status_code == 302
    assert client.post("/teams/", {"name": "Plain"}).status_code == 302
    logged, plain = Team.objects.get(name="Logged"), Team.objects.get(name="Plain")
    assert logged.log_bodies and not plain.log_bodies
    assert AuditEvent.objects.get(action="team.create", target_label="Logged").details["log_bodies"] is True
    assert "logs prompts and answers" in client.get("/teams/").content.decode()
    assert client.post(f"/teams/{logged.pk}/", {"name": "Logged"}).status_code == 302  # unticked
    assert not Team.objects.get(pk=logged.pk).log_bodies
    page = client.get(f"/teams/{plain.pk}/").content.decode()
    assert 'name="log_bodies"' in page and "checked" not in page.split('name="log_bodies"')[1].split(">")[0]
    assert client.post(f"/teams/{plain.pk}/", {"name": "Plain", "log_bodies": "on"}).status_code == 302
    assert Team.objects.get(pk=plain.pk).log_bodies
    changes = AuditEvent.objects.filter(action="team.log_bodies").order_by("id")
    assert [e.details["log_bodies"]["to"] for e in changes] == [False, True]


def _import(text: str) -> config.Report:
    return config.config_import(config.load_yaml(text, {}), actor="import_config")


def test_the_config_file_sets_the_switch_and_leaves_it_when_unsaid(db: None) -> None:
    report = _import("teams:\n  - {name: Research, log_bodies: true}\n  - {name: Ops}\n")
    assert report.created == ["team Research", "team Ops"]
    assert Team.objects.get(name="Research").log_bodies and not Team.objects.get(name="Ops").log_bodies
    assert not _import("teams:\n  - {name: Research}\n").changed  # left out: as it is
    assert Team.objects.get(name="Research").log_bodies
    report = _import("teams:\n  - {name: Research, log_bodies: false}\n  - {name: Ops, log_bodies: true}\n")
    assert report.updated == ["team Research (prompt logging)", "team Ops (prompt logging)"]
    assert not Team.objects.get(name="Research").log_bodies and Team.objects.get(name="Ops").log_bodies
    assert AuditEvent.objects.filter(action="team.log_bodies", actor_label="import_config").count() == 2
    exported = config.config_export()["teams"]
    assert {entry["name"]: entry["log_bodies"] for entry in exported} == {"Ops": True, "Research": False}
    assert not _import(config.dump_yaml({"teams": exported})).changed


@pytest.mark.parametrize("value", ['"yes"', "1", "[true]"])
def test_the_config_file_refuses_a_switch_that_is_not_true_or_false(db: None, value: Any) -> None:
    with pytest.raises(config.ConfigError) as caught:
        _import(f"teams:\n  - {{name: Research, log_bodies: {value}}}\n")
    assert any("teams[0] (Research).log_bodies: expected true or false" in e for e in caught.value.errors)
    assert not Team.objects.exists()
