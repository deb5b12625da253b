"""Budgets scoped to a team, a tag or an end user: hard limits refuse at the gateway and in the playground's
call path, spend is charged exactly, alerts fire as for other scopes, a team's limit holds under concurrency
on PostgreSQL, and the form and config file name such budgets."""

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connections

from accounts.models import Team, User
from accounts.teams import team_create
from budgets import evaluation
from budgets.forms import BudgetForm
from budgets.models import AlertEvent, Budget, Reservation
from tests import gateway_support
from tests.budgets_support import (
    ON_POSTGRESQL,
    SQLITE_REASON,
    ensure_role_groups,
    make_budget,
    make_model,
    period_of,
    spend,
)
from tests.fakes.upstream import FakeUpstream
from usage.models import UsageRecord

CHAT = "/v1/chat/completions"


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


def _worst_case(output_tokens: int = 50) -> Decimal:
    """The fake model's worst case for gateway_support's one-line prompt: its bound (9 bytes, one message's
    allowance of 32 and the request's 256) at $1 per 1M, plus the output cap at $2 per 1M."""
    return ((9 + 32 + 256) + output_tokens * 2) / Decimal(1_000_000)


@pytest.mark.django_db
@pytest.mark.parametrize("scope", ["team", "tag", "end_user"])
def test_a_hard_limit_on_a_team_tag_or_end_user_refuses_only_its_calls(
        scope: str, upstream: FakeUpstream, make_user: Callable[..., User]) -> None:
    gateway_support.make_providers(upstream)
    team = team_create(name="Research")
    target = {"team": {"team": team}, "tag": {"tag": "nightly"}, "end_user": {"end_user": "cust-1"}}[scope]
    make_budget(scope=scope, amount=Decimal("0.000001"), hard_limit=True, **target)
    _, in_team = gateway_support.make_key(make_user("member"), team=team)
    _, outside = gateway_support.make_key(make_user("member", email="out@example.com"))
    covered = {"team": (in_team, {}), "tag": (outside, {"x-aspweb-tags": "Nightly,other"}),
               "end_user": (outside, {"x-aspweb-end-user": "cust-1"})}[scope]
    refused = gateway_support.call(CHAT, gateway_support.chat_body(max_tokens=50), key=covered[0], headers=covered[1])
    assert refused.status == 429 and refused.json["error"]["code"] == "budget_exceeded"
    assert {"team": "team Research", "tag": "tag nightly", "end_user": "end user cust-1"}[scope] in \
        refused.json["error"]["message"]
    assert not upstream.requests
    # The same call outside the scope goes through.
    other = {"team": (outside, {}), "tag": (outside, {"x-aspweb-tags": "daily"}),
             "end_user": (outside, {"x-aspweb-end-user": "cust-2"})}[scope]
    assert gateway_support.call(CHAT, gateway_support.chat_body(max_tokens=50), key=other[0],
                                headers=other[1]).status == 200


@pytest.mark.django_db
@pytest.mark.parametrize("scope", ["team", "tag", "end_user"])
def test_a_budget_on_a_team_tag_or_end_user_is_charged_its_calls_and_alerts(scope: str,
                                                                          make_user: Callable[..., User]) -> None:
    make_user("finance")
    model = make_model()
    team = team_create(name="Ops")
    target = {"team": {"team": team}, "tag": {"tag": "batch"}, "end_user": {"end_user": "acme"}}[scope]
    hard = make_budget("Hard", scope=scope, amount=Decimal(1), hard_limit=True, **target)
    soft = make_budget("Soft", scope=scope, amount=Decimal(1), **target)
    covered = {"team": {"team_id": team.pk}, "tag": {"tags": ("batch", "x")}, "end_user": {"end_user": "acme"}}[scope]
    outside = {"team": {}, "tag": {"tags": ("x",)}, "end_user": {"end_user": "other"}}[scope]
    spend(model, "0.3", **covered)
    spend(model, "0.9", **outside)
    spend(model, "0.25", **covered)
    assert period_of(hard).spent == Decimal("0.55")  # charged in each record's transaction
    fired = [e for e in evaluation.budgets_evaluate() if e.budget_id in (hard.pk, soft.pk)]
    assert period_of(soft).spent == Decimal("0.55")  # the evaluation's sum over the rollups
    assert sorted((e.budget.name, e.threshold) for e in fired) == [("Hard", 50), ("Soft", 50)]
    assert AlertEvent.objects.filter(budget=soft, threshold=50).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not ON_POSTGRESQL, reason=SQLITE_REASON)
def test_forty_concurrent_calls_from_two_keys_of_a_team_stay_within_its_hard_limit(
        upstream: FakeUpstream, make_user: Callable[..., User]) -> None:
    ensure_role_groups()
    gateway_support.make_providers(upstream)
    team = team_create(name="Research")
    secrets = [gateway_support.make_key(make_user("member", email=f"m{n}@example.com"), team=team)[1]
               for n in range(2)]
    _, outsider = gateway_support.make_key(make_user("member", email="out@example.com"))
    worst = _worst_case()
    budget = make_budget(scope="team", team=team, amount=worst * 12, hard_limit=True)
    upstream.usage = {"input_tokens": 9 + 32 + 256, "output_tokens": 50}  # every call costs its worst case
    upstream.chunk_delay = 0.01
    callers = 40
    start = threading.Barrier(callers + 4)
    statuses: list[int] = []
    others: list[int] = []
    errors: list[BaseException] = []

    def caller(n: int, secret: str, into: list[int]) -> None:
        try:
            start.wait()
            answer = gateway_support.call(CHAT, gateway_support.chat_body(max_tokens=50), key=secret)
            into.append(answer.status)
            if answer.status == 429:
                assert answer.json["error"]["code"] == "budget_exceeded"
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=caller, args=(n, secrets[n % 2], statuses)) for n in range(callers)]
    threads += [threading.Thread(target=caller, args=(n, outsider, others)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert others == [200] * 4  # calls of no team are not held against it
    assert len(statuses) == callers and statuses.count(200) == 12 and statuses.count(429) == callers - 12
    period = period_of(budget)
    in_team = UsageRecord.objects.filter(team=team, status="ok")
    assert period.spent == sum(record.cost for record in in_team) == budget.amount
    assert period.reserved == 0 and not Reservation.objects.exists()


@pytest.mark.django_db
def test_the_form_asks_the_scopes_target_and_normalises_a_tag() -> None:
    team = team_create(name="Research")
    base = {"name": "b", "period": "monthly", "amount": "10", "thresholds": "50"}
    form = BudgetForm({**base, "scope": "tag", "tag": "  Nightly ", "team": team.pk, "end_user": "x"})
    assert form.is_valid(), form.errors
    budget = form.save()
    assert (budget.tag, budget.team, budget.end_user) == ("nightly", None, "")
    assert BudgetForm({**base, "scope": "tag", "tag": "a,b"}).errors["tag"]
    assert BudgetForm({**base, "scope": "end_user"}).errors["end_user"]
    assert BudgetForm({**base, "scope": "team"}).errors["team"]
    form = BudgetForm({**base, "name": "t", "scope": "team", "team": team.pk})
    assert form.is_valid() and form.save().target_label == "team Research"


@pytest.mark.django_db
def test_budgets_of_teams_tags_and_end_users_in_the_config_file(make_user: Callable[..., User]) -> None:
    from aspweb import config

    make_user("member", email="ann@example.com")
    text = """
teams:
  - name: Research
    members: [ann@example.com]
budgets:
  - {name: Research, scope: team, target: research, amount: 100, hard_limit: true}
  - {name: Nightly, scope: tag, target: Nightly, amount: 5}
  - {name: Acme, scope: end_user, target: acme-1, amount: 7}
"""
    report = config.config_import(config.load_yaml(text, {}), actor=None)
    assert report.created == ["team Research", "budget Research", "budget Nightly", "budget Acme"]
    team = Team.objects.get()
    assert [u.email for u in team.members.all()] == ["ann@example.com"]
    assert Budget.objects.get(name="Research").team == team
    assert Budget.objects.get(name="Nightly").tag == "nightly"
    assert Budget.objects.get(name="Acme").end_user == "acme-1"
    exported = config.config_export()
    assert exported["teams"] == [{"name": "Research", "members": ["ann@example.com"], "log_bodies": False}]
    assert {b["name"]: b["target"] for b in exported["budgets"]} == {"Research": "Research", "Nightly": "nightly",
                                                                     "Acme": "acme-1"}
    again = config.config_import(config.load_yaml(config.dump_yaml(exported), {}), actor=None)
    assert not again.changed
    with pytest.raises(config.ConfigError) as caught:
        config.config_import(config.load_yaml("teams:\n  - {name: X, members: [nobody@example.com]}\n"
                                              "budgets:\n  - {name: Y, scope: team, target: Nobody, amount: 1}\n",
                                              {}), actor=None)
    assert any("nobody@example.com" in e for e in caught.value.errors)
    assert any("no team 'Nobody'" in e for e in caught.value.errors)


@pytest.mark.django_db
def test_members_see_their_teams_budgets_and_no_tag_or_end_user_budgets(make_user: Callable[..., User]) -> None:
    from budgets.services import budgets_visible_to

    ann = make_user("member", email="ann@example.com")
    mine, theirs = team_create(name="Mine", members=[ann]), team_create(name="Theirs")
    make_budget("Mine", scope="team", team=mine)
    make_budget("Theirs", scope="team", team=theirs)
    make_budget("Tag", scope="tag", tag="x")
    make_budget("Customer", scope="end_user", end_user="c")
    make_budget("All")
    assert sorted(b.name for b in budgets_visible_to(ann)) == ["All", "Mine"]
    assert len(budgets_visible_to(make_user("finance"))) == 5
