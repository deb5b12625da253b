"""The team pages (admins only), keys that belong to a team, a call's page and what members see of their
teams: their own calls and their teams' totals, never other people's calls."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, Team, User
from accounts.teams import team_create
from gateway import apikeys
from gateway.models import ApiKey
from providers.models import Model, Price, Provider
from tests.conftest import signed_in
from tests.usage_support import write

pytestmark = pytest.mark.django_db


@pytest.fixture
def model() -> Model:
    provider = Provider.objects.create(name="p", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="m")
    Price.objects.create(model=model, effective_from=datetime(2024, 1, 1, tzinfo=UTC), input=Decimal(1),
                         output=Decimal(2))
    return model


@pytest.mark.parametrize("role", ["finance", "member", "none", "anonymous"])
def test_only_admins_open_the_team_pages(client_as: Callable[[str], Client], role: str) -> None:
    team = team_create(name="Ops")
    client = client_as(role)
    for response in (client.get(reverse("team_list")), client.get(reverse("team_edit", args=[team.pk])),
                     client.post(reverse("team_list"), {"name": "New"}),
                     client.post(reverse("team_delete", args=[team.pk]))):
        assert response.status_code in (302, 403)
    assert list(Team.objects.values_list("name", flat=True)) == ["Ops"]


def test_an_admin_creates_a_team_adds_people_and_renames_it(admin_client: Client,
                                                            make_user: Callable[..., User]) -> None:
    ann, bob = make_user("member", email="ann@example.com"), make_user("member", email="bob@example.com")
    response = admin_client.post(reverse("team_list"), {"name": "Research", "members": [ann.pk, bob.pk]})
    assert response.status_code == 302
    team = Team.objects.get()
    assert set(team.members.all()) == {ann, bob}
    page = admin_client.get(reverse("team_list")).content.decode()
    assert f'<a href="/teams/{team.pk}/">Research</a>' in page
    response = admin_client.post(reverse("team_edit", args=[team.pk]), {"name": "R&D", "members": [bob.pk]})
    assert response.status_code == 302
    team.refresh_from_db()
    assert team.name == "R&D" and list(team.members.all()) == [bob]
    assert list(AuditEvent.objects.filter(target_type="team").values_list("action", flat=True)) == [
        "team.members", "team.update", "team.create"]


@pytest.mark.parametrize("name", ["", "RESEARCH", "x" * 101])
def test_a_bad_team_name_is_a_form_error(admin_client: Client, name: str) -> None:
    team_create(name="Research")
    response = admin_client.post(reverse("team_list"), {"name": name})
    assert response.status_code == 400 and 'class="error"' in response.content.decode()
    assert Team.objects.count() == 1


def test_a_person_in_several_teams_and_a_deleted_team(admin_client: Client, make_user: Callable[..., User],
                                                      model: Model) -> None:
    ann = make_user("member", email="ann@example.com")
    a, b = team_create(name="A", members=[ann]), team_create(name="B", members=[ann])
    assert set(ann.teams.all()) == {a, b}
    write(model, team_id=a.pk, user=ann)
    assert admin_client.post(reverse("team_delete", args=[a.pk])).status_code == 302
    assert list(ann.teams.all()) == [b]


def test_an_api_key_belongs_to_a_team_and_its_calls_count_for_it(admin_client: Client,
                                                                  make_user: Callable[..., User]) -> None:
    team = team_create(name="Research")
    form = admin_client.get(reverse("apikey_add")).content.decode()
    assert 'name="team"' in form and ">Research</option>" in form
    response = admin_client.post(reverse("apikey_add"), {"name": "ci", "team": team.pk})
    assert response.status_code == 200
    key = ApiKey.objects.get()
    assert key.team == team and key.user is None
    assert "Research" in admin_client.get(reverse("apikey_list")).content.decode()


def test_a_member_makes_keys_only_for_their_own_teams(make_user: Callable[..., User]) -> None:
    ann = make_user("member", email="ann@example.com")
    apikeys.self_service_set(user=ann, allowed=True, actor=None)
    mine, theirs = team_create(name="Mine", members=[ann]), team_create(name="Theirs")
    client = signed_in(User.objects.get(pk=ann.pk))
    form = client.get(reverse("apikey_add")).content.decode()
    assert ">Mine</option>" in form and "Theirs" not in form
    assert client.post(reverse("apikey_add"), {"name": "x", "team": theirs.pk}).status_code == 200
    assert not ApiKey.objects.exists()
    client.post(reverse("apikey_add"), {"name": "y", "team": mine.pk})
    assert ApiKey.objects.get().team == mine


def test_the_call_page_shows_team_tags_and_end_user(model: Model, make_user: Callable[..., User]) -> None:
    ann = make_user("member", email="ann@example.com")
    team = team_create(name="Research", members=[ann])
    record = write(model, user=ann, team_id=team.pk, tags=("beta", "search"), end_user="<cust-1>")
    page = signed_in(ann).get(reverse("call_detail", args=[record.request_id])).content.decode()
    assert '<dd id="call-team">Research</dd>' in page
    assert '<span class="badge">beta</span> <span class="badge">search</span>' in page
    assert "<code>&lt;cust-1&gt;</code>" in page


def test_a_member_sees_their_teams_totals_and_never_other_peoples_calls(model: Model,
                                                                         make_user: Callable[..., User]) -> None:
    ann, bob = make_user("member", email="ann@example.com"), make_user("member", email="bob@example.com")
    team = team_create(name="Research", members=[ann, bob])
    other = team_create(name="Sales", members=[bob])
    now = timezone.now() - timedelta(minutes=5)
    mine = write(model, user=ann, team_id=team.pk, created_at=now, input_tokens=1000)
    theirs = write(model, user=bob, team_id=team.pk, created_at=now, input_tokens=3000)
    write(model, user=bob, team_id=other.pk, created_at=now, input_tokens=5000)
    client = signed_in(ann)
    response = client.get(reverse("my_usage"))
    assert response.status_code == 200
    assert response.context["totals"].requests == 1 and response.context["totals"].cost == mine.cost
    [total] = response.context["team_totals"]  # Research only: Sales is not Ann's
    assert total.team == team and total.figures.requests == 2 and total.figures.cost == mine.cost + theirs.cost
    html = response.content.decode()
    assert 'id="team-totals"' in html and "Sales" not in html and "bob@example.com" not in html
    # Filtering or grouping by team on My usage still shows Ann's own calls only.
    grouped = client.get(reverse("my_usage"), {"group": "team", "team": team.pk})
    assert [(g.key, g.figures.requests) for g, _ in grouped.context["rows"]] == [(team.pk, 1)]
    # Nor do the calls list, a call's page or the export show Bob's calls to her.
    listed = client.get(reverse("call_list"), {"team": team.pk}).context["calls"]
    assert [c.pk for c in listed] == [mine.pk]
    assert client.get(reverse("call_detail", args=[theirs.request_id])).status_code == 404
    assert client.get(reverse("dashboard")).status_code == 403


def test_finance_filters_the_calls_list_by_team_tag_and_end_user(model: Model, make_user: Callable[..., User]) -> None:
    team = team_create(name="Research")
    a = write(model, team_id=team.pk, tags=("nightly", "search"), end_user="c1")
    b = write(model, tags=("search",), end_user="c2")
    write(model, tags=("searching",))
    client = signed_in(make_user("finance"))
    for params, expected in (({"team": team.pk}, [a]), ({"tag": "Search"}, [a, b]), ({"tag": "nightly"}, [a]),
                             ({"end_user": "c2"}, [b]), ({"tag": "search", "end_user": "c1"}, [a])):
        listed = client.get(reverse("call_list"), params).context["calls"]
        assert sorted(c.pk for c in listed) == sorted(r.pk for r in expected), params
