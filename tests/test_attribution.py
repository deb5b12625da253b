"""Attribution of calls: the team, tags and end user of gateway calls in both wire formats, their bounds (a
400 naming the parameter, never a 500), `metadata` sent on only to providers that accept it, and the rollups
per team, tag and end user equal to the raw records."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache

from accounts.models import Team, User
from accounts.teams import team_create
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import (
    ANTHROPIC_MODEL,
    call,
    chat_body,
    make_key,
    make_providers,
    messages_body,
)
from tests.usage_support import assert_rollups_exact, write
from usage import attribution, services
from usage.attribution import END_USER_LENGTH_MAX, TAG_LENGTH_MAX, TAGS_MAX
from usage.models import DailyEndUserUsage, DailyTagUsage, DailyTeamUsage, UsageRecord

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


@pytest.fixture
def models(db: None, upstream: FakeUpstream) -> dict[str, Model]:
    return make_providers(upstream)


@pytest.fixture
def team() -> Team:
    return team_create(name="Research")


@pytest.fixture
def key(models: dict[str, Model], member_user: User, team: Team) -> str:
    return make_key(member_user, team=team)[1]


# -- the gateway, OpenAI's format ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_openai_format_records_team_tags_and_end_user(key: str, team: Team, upstream: FakeUpstream,
                                                      stream: bool) -> None:
    answer = call(CHAT, chat_body(user="customer-42", metadata={"tags": "Search, beta", "run": "7"}, stream=stream),
                  key=key, headers={"x-aspweb-tags": "nightly,search"})
    assert answer.status == 200
    record = UsageRecord.objects.get()
    assert record.team == team
    assert record.tag_list == ("beta", "nightly", "search")  # lower-cased, de-duplicated, sorted
    assert record.end_user == "customer-42"
    # An OpenAI-compatible server is not sent OpenAI's `metadata`, nor the end user.
    assert "metadata" not in upstream.last_request.body and "user" not in upstream.last_request.body


def test_the_headers_alone_attribute_a_call(key: str) -> None:
    assert call(CHAT, chat_body(), key=key, headers={"x-aspweb-tags": "a,b", "x-aspweb-end-user": "u-1"}).status == 200
    record = UsageRecord.objects.get()
    assert (record.tags, record.end_user) == ("a,b", "u-1")


def test_the_body_names_the_end_user_before_the_header(key: str) -> None:
    assert call(CHAT, chat_body(user="from-body"), key=key, headers={"x-aspweb-end-user": "from-header"}).status == 200
    assert UsageRecord.objects.get().end_user == "from-body"


def test_a_key_without_a_team_records_no_team(models: dict[str, Model], member_user: User) -> None:
    assert call(CHAT, chat_body(), key=make_key(member_user)[1]).status == 200
    record = UsageRecord.objects.get()
    assert record.team is None and record.tags == "" and record.end_user == ""


def test_metadata_goes_only_to_a_provider_that_accepts_it(key: str, upstream: FakeUpstream) -> None:
    provider = Provider.objects.create(name="oa", kind="openai", base_url=upstream.openai_base_url,
                                       api_key="sk-upstream-0002", max_retries=0)
    model = Model.objects.create(provider=provider, name="gpt-4o-mini")
    Price.objects.create(model=model, input=1, output=2)
    metadata = {"tags": "a,b", "run": "7"}
    assert call(CHAT, chat_body("oa/gpt-4o-mini", metadata=metadata), key=key).status == 200
    assert upstream.last_request.body["metadata"] == metadata
    # The same call to an Anthropic provider: not sent.
    assert call(CHAT, chat_body(ANTHROPIC_MODEL, metadata=metadata), key=key).status == 200
    assert upstream.last_request.path == "/v1/messages" and "metadata" not in upstream.last_request.body


def test_a_cached_answer_keeps_its_callers_attribution(key: str, team: Team) -> None:
    headers = {"x-aspweb-cache": "true"}
    assert call(CHAT, chat_body(metadata={"tags": "first"}), key=key, headers=headers).status == 200
    answer = call(CHAT, chat_body(metadata={"tags": "second"}), key=key, headers={**headers, "x-aspweb-end-user": "e"})
    assert answer.status == 200
    first, second = UsageRecord.objects.order_by("created_at", "id")
    assert second.cached and (second.tags, second.end_user, second.team) == ("second", "e", team)
    assert first.tags == "first"


# -- the gateway, Anthropic's format ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_format_records_team_tags_and_end_user(key: str, team: Team, stream: bool) -> None:
    answer = call(MESSAGES, messages_body(metadata={"user_id": "acct-9"}, stream=stream), key=key,
                  headers={"x-aspweb-tags": "support"})
    assert answer.status == 200
    record = UsageRecord.objects.get()
    assert (record.team, record.tags, record.end_user) == (team, "support", "acct-9")


# -- bounds -------------------------------------------------------------------------------------------

TOO_MANY = ",".join(f"t{n}" for n in range(TAGS_MAX + 1))
TOO_LONG = "x" * (TAG_LENGTH_MAX + 1)
LONG_USER = "u" * (END_USER_LENGTH_MAX + 1)


@pytest.mark.parametrize(("body", "headers", "param"), [
    ({"metadata": {"tags": TOO_MANY}}, {}, "metadata.tags"),
    ({"metadata": {"tags": TOO_LONG}}, {}, "metadata.tags"),
    ({}, {"x-aspweb-tags": TOO_MANY}, "x-aspweb-tags"),
    ({}, {"x-aspweb-tags": TOO_LONG}, "x-aspweb-tags"),
    ({"metadata": {"tags": "a,b,c,d,e,f"}}, {"x-aspweb-tags": "g,h,i,j,k"}, "metadata.tags"),  # 11 together
    ({"user": LONG_USER}, {}, "user"),
    ({}, {"x-aspweb-end-user": LONG_USER}, "x-aspweb-end-user"),
    ({"user": 42}, {}, "user"),
    ({"metadata": {"tags": ["a", "b"]}}, {}, "metadata.tags"),
    ({"metadata": "tags=a"}, {}, "metadata"),
    ({"metadata": {f"k{n}": "v" for n in range(17)}}, {}, "metadata"),
    ({"metadata": {"tags": "a\u0007b"}}, {}, "metadata.tags"),
])
def test_openai_format_bounds_are_a_400_naming_the_parameter(key: str, body: dict, headers: dict, param: str,
                                                             upstream: FakeUpstream) -> None:
    answer = call(CHAT, chat_body(**body), key=key, headers=headers)
    assert answer.status == 400, answer.content
    error = answer.json["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert not UsageRecord.objects.exists() and not upstream.requests


@pytest.mark.parametrize(("body", "headers", "words"), [
    ({"metadata": {"user_id": LONG_USER}}, {}, "metadata.user_id"),
    ({"metadata": {"user_id": 7}}, {}, "metadata.user_id"),
    ({"metadata": {"tags": "a"}}, {}, "metadata.tags"),
    ({}, {"x-aspweb-tags": TOO_MANY}, "at most"),
    ({}, {"x-aspweb-end-user": LONG_USER}, "end-user id"),
])
def test_anthropic_format_bounds_are_a_400_in_its_shape(key: str, body: dict, headers: dict, words: str,
                                                        upstream: FakeUpstream) -> None:
    answer = call(MESSAGES, messages_body(**body), key=key, headers=headers)
    assert answer.status == 400, answer.content
    assert answer.json["type"] == "error" and answer.json["error"]["type"] == "invalid_request_error"
    assert words in answer.json["error"]["message"]
    assert not UsageRecord.objects.exists() and not upstream.requests


def test_bounds_at_their_limit_pass() -> None:
    tags = attribution.tags_parse([",".join("t" * (TAG_LENGTH_MAX - 1) + chr(97 + n) for n in range(TAGS_MAX))], "x")
    assert len(tags) == TAGS_MAX
    assert attribution.end_user_clean(" " + "u" * END_USER_LENGTH_MAX + " ", "x") == "u" * END_USER_LENGTH_MAX
    with pytest.raises(attribution.AttributionError) as caught:
        attribution.tags_parse(["a" * (TAG_LENGTH_MAX + 1)], "x-aspweb-tags")
    assert caught.value.param == "x-aspweb-tags"


# -- the ledger ---------------------------------------------------------------------------------------


def test_rollups_per_team_tag_and_end_user_equal_the_raw_records(make_user: Callable[..., User]) -> None:
    provider = Provider.objects.create(name="p", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="m")
    Price.objects.create(model=model, effective_from=datetime(2024, 1, 1, tzinfo=UTC), input=1, output=2)
    teams = [team_create(name="A"), team_create(name="B")]
    ann = make_user("member", email="ann@example.com")
    start = datetime(2025, 3, 1, tzinfo=UTC)
    specs = []
    for n in range(60):
        specs.append({"provider": provider, "model": model, "source": "gateway", "status": "ok",
                      "user": ann if n % 3 else None, "team_id": teams[n % 2].pk if n % 5 else None,
                      "tags": (("x", "y"), ("y",), ())[n % 3], "end_user": ("", "c1", "c2", "c|3")[n % 4],
                      "created_at": start + timedelta(hours=7 * n), "input_tokens": 100 + n, "output_tokens": n})
    services.usage_records_create(specs[:30])
    for spec in specs[30:]:
        services.usage_record_create(**spec)
    assert_rollups_exact()
    assert DailyTagUsage.objects.filter(tag="x").exists() and DailyTagUsage.objects.filter(tag__isnull=True).exists()
    assert DailyEndUserUsage.objects.filter(end_user="c|3").exists()
    assert DailyTeamUsage.objects.filter(team__isnull=True).exists()
    # Rebuilt from the raw records: the same rows.
    services.daily_usage_rebuild()
    assert_rollups_exact()


def test_a_deleted_team_leaves_its_calls_and_their_costs(model_and_team: tuple[Model, Team]) -> None:
    model, team = model_and_team
    record = write(model, team_id=team.pk)
    team.delete()
    record.refresh_from_db()
    assert record.team is None and record.cost > 0
    assert_rollups_exact()


@pytest.fixture
def model_and_team() -> tuple[Model, Team]:
    provider = Provider.objects.create(name="p", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="m")
    Price.objects.create(model=model, effective_from=datetime(2024, 1, 1, tzinfo=UTC), input=1, output=2)
    return model, team_create(name="Gone")
