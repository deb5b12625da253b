"""The cost dashboards and "My usage": their numbers against direct sums over the raw records, the date
presets in a non-UTC time zone, filters, drill-down, sorting, the CSV of a view, who sees what, and the
charts (SVG with hover titles, each followed by a table)."""

import csv
import dataclasses
import io
import random
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.db.models import Case, Count, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate
from django.template import Context, Template
from django.template.defaultfilters import floatformat
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from accounts.models import Team, User
from aspweb.money import money
from gateway.models import ApiKey
from providers.models import Model, Price, Provider
from tests.conftest import signed_in
from tests.usage_support import write
from usage import charts, dashboard_views, dashboards
from usage.attribution import tag_q
from usage.models import (
    ROLLUPS,
    DailyApiKeyUsage,
    DailyModelUsage,
    DailyTeamUsage,
    DailyUsage,
    DailyUserUsage,
    UsageRecord,
)
from usage.services import day_start, ledger_timezone

pytestmark = pytest.mark.django_db

TIME_ZONE = "America/Los_Angeles"
# 21:00 on Friday 28 February in Los Angeles: "today" there is not today in UTC, and "this month" ends today.
NOW = datetime(2025, 3, 1, 5, 0, tzinfo=UTC)
TODAY = date(2025, 2, 28)


@pytest.fixture(autouse=True)
def clock(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.TIME_ZONE = TIME_ZONE
    monkeypatch.setattr(timezone, "now", lambda: NOW)


def _model(provider: Provider, name: str, input_price: str, output_price: str) -> Model:
    model = Model.objects.create(provider=provider, name=name)
    Price.objects.create(model=model, effective_from=datetime(2024, 1, 1, tzinfo=UTC), input=Decimal(input_price),
                         output=Decimal(output_price), cache_read=Decimal("0.3"), cache_write=Decimal("3.75"))
    return model


@pytest.fixture
def people(make_user: Callable[..., User]) -> dict[str, User]:
    return {
        "admin": make_user("admin"), "finance": make_user("finance"), "member": make_user("member"),
        "other": make_user("member", email="other@example.com"),
        "third": make_user("member", email="third@example.com"),
    }


@pytest.fixture
def ledger(people: dict[str, User]) -> dict[str, Any]:
    """Some 300 calls over 75 days (into the future too) from three people, two keys and no one, across three
    providers, five models, three sources and every outcome, written the one way the app writes them. Two
    models have no price: beta's, whose calls are unpriced, and gamma's (OpenRouter, the billing party),
    whose answers are priced by the charge it reports and whose failures without one are unpriced."""
    alpha = Provider.objects.create(name="alpha", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    beta = Provider.objects.create(name="beta", kind="anthropic", base_url="http://127.0.0.1:9/v1")
    gamma = Provider.objects.create(name="gamma", kind="openrouter", base_url="http://127.0.0.1:9/v1")
    models = [_model(alpha, "a-small", "0.15", "0.6"), _model(alpha, "a-large", "2.5", "10"),
              _model(beta, "b-mid", "3", "15"), Model.objects.create(provider=beta, name="b-new"),
              Model.objects.create(provider=gamma, name="g-routed")]
    keys = [ApiKey.objects.create(name="ci", user=people["member"], prefix="asp_ci01", key_hash="1" * 64),
            ApiKey.objects.create(name="<b>batch</b>", user=people["other"], prefix="asp_bt02", key_hash="2" * 64)]
    users = [people["member"], people["other"], people["third"], None]
    teams = [Team.objects.create(name="Research"), Team.objects.create(name="Sales")]
    keys[0].team, keys[1].team = teams
    keys[0].save(), keys[1].save()
    rng = random.Random(5)
    # Attribution drawn apart, so that the calls' other columns stay as they were before it existed.
    attributed = random.Random(11)
    start = NOW - timedelta(days=70)
    for _ in range(300):
        user = rng.choice(users)
        source = rng.choice(["playground", "gateway", "gateway", "cli"])
        own_keys = [k for k in keys if k.user == user]
        key = own_keys[0] if source == "gateway" and own_keys else None
        status = rng.choice(["ok"] * 6 + ["error", "cancelled"])
        latency = None if rng.random() < 0.1 else rng.randint(200, 9000)
        model = rng.choice(models)
        reported = Decimal(rng.randint(1, 90_000)) / 10**7 if model.provider == gamma and status == "ok" else None
        tags = tuple(sorted(attributed.sample(["batch", "chat", "search"], attributed.randint(0, 2))))
        end_user = attributed.choice(["", "cust-1", "cust-2", "cust-3"]) if source == "gateway" else ""
        team = key.team_id if key is not None else attributed.choice([None, teams[0].pk, teams[1].pk])
        write(
            model, user=user, api_key=key, source=source, status=status, reported_cost=reported,
            team_id=team, tags=tags, end_user=end_user,
            error_kind="server" if status == "error" else "",
            created_at=start + timedelta(minutes=rng.randint(0, 75 * 24 * 60)),
            input_tokens=rng.randint(0, 5000), cache_read_tokens=rng.choice([0, 0, rng.randint(1, 9000)]),
            cache_write_tokens=rng.choice([0, 0, 0, rng.randint(1, 2000)]),
            cache_write_1h_tokens=rng.choice([0, 0, 0, rng.randint(1, 4000)]), output_tokens=rng.randint(0, 3000),
            reasoning_tokens=rng.choice([0, rng.randint(0, 100)]), usage_estimated=status == "cancelled",
            latency_ms=latency, ttft_ms=None if latency is None or rng.random() < 0.2 else latency // 5,
        )
    return {"alpha": alpha, "beta": beta, "gamma": gamma, "models": models, "keys": keys, "teams": teams}


# -- the truth: direct sums over the raw records ------------------------------------------------


def _raw(start: date, end: date, **filters: Any) -> QuerySet[UsageRecord]:
    """The records of the days from `start` to `end`; an unpriced one with all its tokens as
    `unpriced_record_tokens` (0 for the others). `tag`: the records carrying it."""
    tag = filters.pop("tag", None)
    tokens = (F("input_tokens") + F("cache_read_tokens") + F("cache_write_tokens") + F("cache_write_1h_tokens")
              + F("output_tokens"))
    return UsageRecord.objects.filter(tag_q(tag) if tag else Q(), created_at__gte=day_start(start),
                                      created_at__lt=day_start(end + timedelta(days=1)), **filters).annotate(
        unpriced_record_tokens=Case(When(unpriced=True, then=tokens), default=Value(0)))


RAW_SUMS = {
    "requests": Count("id"),
    "errors": Count("id", filter=Q(status="error")),
    "cancelled": Count("id", filter=Q(status="cancelled")),
    "estimated": Count("id", filter=Q(usage_estimated=True)),
    "input_tokens": Coalesce(Sum("input_tokens"), 0),
    "cache_read_tokens": Coalesce(Sum("cache_read_tokens"), 0),
    "cache_write_tokens": Coalesce(Sum("cache_write_tokens"), 0),
    "cache_write_1h_tokens": Coalesce(Sum("cache_write_1h_tokens"), 0),
    "output_tokens": Coalesce(Sum("output_tokens"), 0),
    "reasoning_tokens": Coalesce(Sum("reasoning_tokens"), 0),
    "cost": Coalesce(Sum("cost"), Decimal(0)),
    "unpriced": Count("id", filter=Q(unpriced=True)),
    "unpriced_tokens": Coalesce(Sum("unpriced_record_tokens"), 0),
    "latency_ms_sum": Coalesce(Sum("latency_ms"), 0),
    "latency_count": Count("latency_ms"),
    "ttft_ms_sum": Coalesce(Sum("ttft_ms"), 0),
    "ttft_count": Count("ttft_ms"),
}
# The raw-record column of each dimension.
RAW_DIMENSION = {"provider": "provider_id", "model": "model_id", "user": "user_id", "api_key": "api_key_id",
                 "source": "source", "day": "day", "team": "team_id", "end_user": "end_user", "tag": "tag"}


def _raw_figures(records: QuerySet[UsageRecord]) -> dashboards.Figures:
    return dashboards.Figures(**records.aggregate(**RAW_SUMS))


def _raw_groups(records: QuerySet[UsageRecord], dimension: str) -> dict[Any, dashboards.Figures]:
    column = RAW_DIMENSION[dimension]
    if column == "tag":  # a call in the group of each of its tags; calls without tags in none
        tags = {tag for text in records.values_list("tags", flat=True) for tag in text.split(",") if tag}
        return {tag: _raw_figures(records.filter(tag_q(tag))) for tag in tags}
    if column == "end_user":  # calls naming no end user are in no group
        return {row.pop(column): dashboards.Figures(**row)
                for row in records.exclude(end_user="").order_by().values(column).annotate(**RAW_SUMS)}
    if column == "day":
        records = records.annotate(day=TruncDate("created_at", tzinfo=ledger_timezone()))
    return {row.pop(column): dashboards.Figures(**row)
            for row in records.order_by().values(column).annotate(**RAW_SUMS)}


FILTER_CASES = [
    {},
    {"provider": "alpha"},
    {"model": 2},
    {"user": "other"},
    {"user": "member", "source": "gateway"},
    {"api_key": 0},
    {"source": "cli"},
    {"provider": "beta", "source": "playground"},
    {"model": 3},
    {"provider": "gamma", "user": "third"},
    {"team": 0},
    {"team": 1, "source": "playground"},
    {"tag": "batch"},
    {"tag": "chat", "provider": "alpha"},
    {"end_user": "cust-1"},
    {"end_user": "cust-2", "model": 2},
]


def _resolve(case: dict[str, Any], ledger: dict[str, Any], people: dict[str, User]) -> tuple[dict, dict]:
    """A filter case as query parameters and as raw-record filters."""
    params: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for name, value in case.items():
        obj = {"provider": lambda v: ledger[v], "model": lambda v: ledger["models"][v],
               "user": lambda v: people[v], "api_key": lambda v: ledger["keys"][v],
               "team": lambda v: ledger["teams"][v],
               "source": lambda v: v, "tag": lambda v: v, "end_user": lambda v: v}[name](value)
        params[name] = getattr(obj, "pk", obj)
        raw[name] = obj
    return params, raw


@pytest.mark.parametrize("case", FILTER_CASES, ids=lambda c: ",".join(map(str, c.items())) or "everything")
def test_every_total_and_group_equals_a_direct_sum_over_the_raw_records(
        ledger: dict[str, Any], people: dict[str, User], case: dict[str, Any]) -> None:
    params, raw_filters = _resolve(case, ledger, people)
    client = signed_in(people["finance"])
    for range_params, (start, end) in [({}, (TODAY - timedelta(days=29), TODAY)),
                                       ({"range": "last_month"}, (date(2025, 1, 1), date(2025, 1, 31))),
                                       ({"from": "2024-12-01", "to": "2025-03-31"}, (date(2024, 12, 1),
                                                                                     date(2025, 3, 31)))]:
        records = _raw(start, end, **raw_filters)
        response = client.get(reverse("dashboard"), {**params, **range_params})
        assert response.status_code == 200
        assert response.context["totals"] == _raw_figures(records), (case, range_params)
        assert response.context["totals"].requests > 0 or case  # the fixture puts calls in every range
        for dimension in dashboards.DIMENSIONS:
            shown = client.get(reverse("dashboard"), {**params, **range_params, "group": dimension})
            if {dimension, *case} >= {"tag", "end_user"}:  # no rollup has both: refused, in words
                assert shown.status_code == 400 and "cannot be combined" in shown.content.decode()
                continue
            groups = {group.key: group.figures for group, _ in shown.context["rows"]}
            expected = _raw_groups(records, dimension)
            if dimension == "tag" and "tag" in case:  # the rows of that tag only, not its calls' other tags
                expected = {key: figures for key, figures in expected.items() if key == case["tag"]}
            assert groups == expected, (case, range_params, dimension)


def _tables_read(client: Client, url: str, params: dict[str, Any]) -> set[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, params).status_code == 200
    return {table._meta.db_table for table in ROLLUPS
            if any(f'"{table._meta.db_table}"' in query["sql"] for query in queries)}


@pytest.mark.parametrize(("params", "tables"), [
    # Totals, the daily chart, the model chart and the table by provider: per model; the two "top" charts:
    # per person, per key.
    ({}, {DailyModelUsage, DailyUserUsage, DailyApiKeyUsage, DailyTeamUsage}),
    ({"group": "model"}, {DailyModelUsage, DailyUserUsage, DailyApiKeyUsage, DailyTeamUsage}),
    ({"group": "day", "source": "cli"}, {DailyModelUsage, DailyUsage}),  # the two "top" charts by source
    ({"user": "other"}, {DailyUsage, DailyUserUsage}),  # one person's models and keys: the full table
    ({"api_key": 0, "group": "api_key"}, {DailyUsage, DailyApiKeyUsage}),
])
def test_each_figure_reads_the_narrowest_table_that_answers_it(ledger: dict[str, Any], people: dict[str, User],
                                                               params: dict[str, Any], tables: set) -> None:
    """Which tables a view reads; that each gives the raw records' numbers is the test above."""
    params = {name: (people[value].pk if name == "user" else ledger["keys"][value].pk if name == "api_key"
                     else value) for name, value in params.items()}
    read = _tables_read(signed_in(people["finance"]), reverse("dashboard"), params)
    assert read == {table._meta.db_table for table in tables}


@pytest.mark.parametrize("group", ["model", "user", "api_key"])
@pytest.mark.parametrize("sort", ["-cost", "name", "requests"])
def test_a_chart_by_the_tables_grouping_shows_the_bars_it_would_sum_itself(
        ledger: dict[str, Any], people: dict[str, User], group: str, sort: str) -> None:
    client = signed_in(people["finance"])
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("dashboard"), {"group": group, "sort": sort})
    selection = response.context["selection"]
    chart = {"model": "models", "user": "users", "api_key": "keys"}[group]
    summed = dashboards.top(selection, group, named=group == "api_key")
    assert len(summed) > 1
    assert [(t.key, t.cost, t.requests) for t in response.context[chart]] == [
        (t.key, t.cost, t.requests) for t in summed]
    assert sum("usage_daily" in query["sql"] for query in queries) == 6  # the table's sums serve its chart


def test_the_default_view_reads_each_name_table_once(ledger: dict[str, Any], people: dict[str, User]) -> None:
    """The filter form lists every provider, model, person and key; the charts and table name their groups
    from the same rows instead of asking again."""
    client = signed_in(people["finance"])
    client.get(reverse("dashboard"))
    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("dashboard"))
    # accounts_user: the signed-in person comes from a row cache (accounts/backends.py)
    for table, reads in (("providers_provider", 1), ("providers_model", 1), ("gateway_apikey", 1),
                         ("accounts_team", 1), ("accounts_user", 1)):
        assert sum(f'FROM "{table}"' in query["sql"] for query in queries) == reads, table
    sums = [query for query in queries if "usage_daily" in query["sql"]]
    assert len(sums) == 7  # totals, the table, the daily chart and four "top" charts


# The group table's rows as the template wrote them with Django's filters, before the view wrote them itself.
REFERENCE_ROW = Template("""{% load money humanize %}{% for group, drill_query, calls_query in rows %}\
{% with f=group.figures %}\
<tr><td>{% if drill_query %}<a href="{{ page_url }}{{ drill_query }}">{{ group.label }}</a>{% else %}{{ group.label }}\
{% endif %}</td><td class="num">{{ f.requests|intcomma }}</td><td class="num">{% if f.error_percent is not None %}\
{{ f.error_percent|floatformat:1 }}&nbsp;%{% else %}—{% endif %}</td><td class="num">{{ f.input_tokens|intcomma }}</td>\
<td class="num">{{ f.output_tokens|intcomma }}</td><td class="num">{{ f.cache_read_tokens|intcomma }}</td>\
<td class="num">{{ f.cache_write_tokens|intcomma }}</td><td class="num">{{ f.cache_write_1h_tokens|intcomma }}</td>\
<td class="num">{{ f.cost|money }}{% if f.unpriced %} <span class="badge warn" title="Leaves out \
{{ f.unpriced|intcomma }} call{{ f.unpriced|pluralize }} without a price">+&nbsp;unpriced</span>{% endif %}</td>\
<td class="num">{% if f.unpriced %}<span class="warn">{{ f.unpriced|intcomma }}\
&nbsp;call{{ f.unpriced|pluralize }}</span><br><small>{{ f.unpriced_tokens|intcomma }}&nbsp;tokens</small>\
{% else %}—{% endif %}\
</td><td class="num">\
{% if f.avg_latency_ms is not None %}{{ f.avg_latency_ms|floatformat:0|intcomma }}&nbsp;ms{% else %}—{% endif %}</td>\
<td class="num">{% if f.avg_ttft_ms is not None %}{{ f.avg_ttft_ms|floatformat:0|intcomma }}&nbsp;ms\
{% else %}—{% endif %}</td><td>{% if group.key is not None %}<a class="calls-link" href="/calls/{{ calls_query }}\
" hx-boost="false">Calls<span class="visually-hidden"> of {{ group.label }}</span></a>{% endif %}</td></tr>
{% endwith %}{% endfor %}""")


@pytest.mark.parametrize("group", ["provider", "model", "user", "api_key", "day"])
def test_the_table_rows_read_as_the_template_filters_wrote_them(ledger: dict[str, Any], people: dict[str, User],
                                                                group: str) -> None:
    response = signed_in(people["finance"]).get(reverse("dashboard"), {"group": group, "range": "last_month"})
    rows = response.context["rows"]
    assert len(rows) > 1 and any(drill for _, drill in rows) is (group == "provider")
    if group == "day":  # days with one call without a price, several, and none
        assert {min(g.figures.unpriced, 2) for g, _ in rows} == {0, 1, 2}
    # Each row's calls: the view's days narrowed to the group (a day: that day); none for "No user", "No API key".
    calls = []
    for g, _ in rows:
        narrower = {"date_from": g.key.isoformat(), "date_to": g.key.isoformat()} if group == "day" else {
            "date_from": "2025-01-01", "date_to": "2025-01-31", group: g.key}
        calls.append("?" + urlencode(narrower) if g.key is not None else "")
    assert any(calls) and (group in ("user", "api_key")) is (not all(calls))
    expected = REFERENCE_ROW.render(Context({"rows": [(*row, query) for row, query in zip(rows, calls, strict=True)],
                                             "page_url": reverse("dashboard")}))
    assert str(response.context["table_rows"]) == expected
    assert expected in response.content.decode()
    for value, unit in ((12.25, "0.1"), (2.5, "1"), (1999.5, "1"), (0.05, "0.1")):  # halves round up
        assert str(dashboard_views._places(value, unit)) == floatformat(value, len(unit) - 2 if "." in unit else 0)


# The daily tables' rows as the template wrote them with Django's filters, before the view wrote them itself.
REFERENCE_DAILY = {
    "daily_cost_rows": Template("""{% load money humanize %}{% for day, costs, total, unpriced in daily.rows %}\
<tr><td>{{ day|date:"Y-m-d" }}</td>{% for cost in costs %}<td class="num">{{ cost|money }}</td>{% endfor %}\
<td class="num">{{ total|money }}{% if unpriced %} <span class="badge warn" title="Leaves out {{ unpriced|intcomma }} \
call{{ unpriced|pluralize }} without a price">+&nbsp;unpriced</span>{% endif %}</td></tr>
{% endfor %}"""),
    "daily_requests_rows": Template("""{% load humanize %}{% for day, a in daily.activity_rows %}\
<tr><td>{{ day|date:"Y-m-d" }}</td><td class="num">{{ a.requests|intcomma }}</td><td class="num">\
{{ a.errors|intcomma }}</td></tr>
{% endfor %}"""),
    "daily_latency_rows": Template("""{% load humanize %}{% for day, a in daily.activity_rows %}\
<tr><td>{{ day|date:"Y-m-d" }}</td><td class="num">{% if a.avg_latency_ms is not None %}\
{{ a.avg_latency_ms|floatformat:0|intcomma }}&nbsp;ms{% else %}—{% endif %}</td><td class="num">\
{{ a.latency_count|intcomma }}</td></tr>
{% endfor %}"""),
}


def test_the_daily_tables_read_as_the_template_filters_wrote_them(ledger: dict[str, Any],
                                                                  people: dict[str, User]) -> None:
    # From before the first call: days without calls (no latency), with one call without a price, several, none.
    response = signed_in(people["finance"]).get(reverse("dashboard"), {"from": "2024-10-01", "to": "2025-04-30"})
    daily = response.context["daily"]
    assert {min(unpriced, 2) for *_, unpriced in daily.rows()} == {0, 1, 2}
    assert {a.avg_latency_ms is None for _, a in daily.activity_rows()} == {True, False}
    assert len(daily.providers) > 1
    html = response.content.decode()
    for name, template in REFERENCE_DAILY.items():
        expected = template.render(Context({"daily": daily}))
        assert str(response.context[name]) == expected
        assert expected in html


@pytest.mark.parametrize("case", FILTER_CASES)
def test_each_rows_calls_link_is_the_views_query_narrowed_to_the_group(ledger: dict[str, Any],
                                                                       people: dict[str, User], case: dict) -> None:
    params, _ = _resolve(case, ledger, people)
    client = signed_in(people["finance"])
    checked = 0
    for group in dashboards.DIMENSIONS:
        response = client.get(reverse("dashboard"), {**params, "group": group, "range": "last_month"})
        if response.status_code == 400:  # a tag and an end user together
            continue
        selection = response.context["selection"]
        calls_of = dashboard_views._group_calls_queries(selection)
        for g, _ in response.context["rows"]:
            assert calls_of(g) == dashboard_views.group_calls_query(selection, g), (case, group, g.key)
            checked += 1
    assert checked > 10


def test_the_figures_on_the_page_are_the_summed_ones(ledger: dict[str, Any], people: dict[str, User]) -> None:
    records = _raw(TODAY - timedelta(days=29), TODAY)
    figures = _raw_figures(records)
    html = signed_in(people["finance"]).get(reverse("dashboard")).content.decode()
    totals = html.split('aria-label="Totals"', 1)[1].split("</dl>", 1)[0]
    from aspweb.money import money

    assert f"<dd>{money(figures.cost)}</dd>" in totals
    assert f"<dd>{figures.requests:,}</dd>" in totals
    # One decimal, as the table's rows write it: the card and its rows agree.
    assert f"<dd>{floatformat(100 * figures.errors / figures.requests, 1)}&nbsp;%</dd>" in totals
    assert f"<dd>{round(figures.latency_ms_sum / figures.latency_count):,}&nbsp;ms</dd>" in totals
    assert f"<dd>{round(figures.ttft_ms_sum / figures.ttft_count):,}&nbsp;ms</dd>" in totals
    for label, tokens in (("Input tokens, uncached", figures.input_tokens), ("Output tokens", figures.output_tokens),
                          ("Cache read", figures.cache_read_tokens), ("Cache write 5m", figures.cache_write_tokens),
                          ("Cache write 1h", figures.cache_write_1h_tokens)):
        assert f"<dt>{label}</dt><dd>{tokens:,}</dd>" in totals, label
    # Beside the cost, the calls it leaves out: those without a price, and their tokens.
    assert figures.unpriced > 1 and figures.unpriced_tokens > 0 and figures.cache_write_1h_tokens > 0
    notice = html.split('id="unpriced-notice">', 1)[1].split("</p>", 1)[0]
    assert f"{figures.unpriced:,} calls without a price</a>, {figures.unpriced_tokens:,} tokens, not in the cost" \
        in notice
    assert html.index('id="unpriced-notice"') < html.index('aria-label="Totals"')


def test_a_view_without_unpriced_calls_has_no_notice(ledger: dict[str, Any], people: dict[str, User]) -> None:
    html = signed_in(people["finance"]).get(reverse("dashboard"), {"provider": ledger["alpha"].pk}).content.decode()
    assert 'aria-label="Totals"' in html and "unpriced-notice" not in html and "without a price</a>" not in html


def _notice_link(html: str) -> str:
    """The URL of the link in the dashboard's notice of unpriced calls."""
    notice = html.split('id="unpriced-notice">', 1)[1].split("</p>", 1)[0]
    return notice.split('<a href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")


def _listed_request_ids(client: Client, url: str) -> list[str]:
    """Every call the calls list shows at `url`, page after page."""
    ids: list[str] = []
    page = 1
    while True:
        response = client.get(url + f"&page={page}")
        assert response.status_code == 200
        ids += [str(call.request_id) for call in response.context["calls"]]
        if not response.context["has_next"]:
            return ids
        page += 1


@pytest.mark.parametrize("case", [{}, {"provider": "beta"}, {"model": 4, "source": "gateway"},
                                  {"user": "other", "api_key": 1}, {"provider": "gamma", "user": "third"}],
                         ids=lambda c: ",".join(map(str, c.items())) or "everything")
def test_the_notice_links_to_exactly_the_unpriced_calls_it_counts(ledger: dict[str, Any], people: dict[str, User],
                                                                   case: dict[str, Any]) -> None:
    params, raw_filters = _resolve(case, ledger, people)
    params |= {"range": "last_month"}
    expected = sorted(str(r.request_id) for r in _raw(date(2025, 1, 1), date(2025, 1, 31), unpriced=True,
                                                       **raw_filters))
    assert expected, case
    # Admins: the calls list, filtered to them.
    admin = signed_in(people["admin"])
    link = _notice_link(admin.get(reverse("dashboard"), params).content.decode())
    assert link.startswith("/calls/?unpriced=true&date_from=2025-01-01&date_to=2025-01-31")
    assert sorted(_listed_request_ids(admin, link)) == expected
    # Finance lists everyone's calls too: the same link, the same calls; and the list's export is them as CSV.
    finance = signed_in(people["finance"])
    html = finance.get(reverse("dashboard"), params).content.decode()
    assert _notice_link(html) == link and "Export them as CSV" not in html
    assert sorted(_listed_request_ids(finance, link)) == expected
    export = link.replace("/calls/?", "/calls/export.csv?")
    assert sorted(row["request_id"] for row in _csv(finance.get(export))) == expected


def test_my_usage_notice_links_to_my_own_unpriced_calls(ledger: dict[str, Any], people: dict[str, User]) -> None:
    for who in ("other", "admin"):  # an admin's list shows everyone's calls: the link names them
        me = people[who]
        write(ledger["models"][3], user=me, created_at=NOW - timedelta(hours=1), input_tokens=700, output_tokens=50)
        client = signed_in(me)
        html = client.get(reverse("my_usage"), {"range": "today"}).content.decode()
        mine = _raw(TODAY, TODAY, user=me, unpriced=True)
        assert f"{mine.count()} call{'s' if mine.count() > 1 else ''} without a price</a>" in html
        link = _notice_link(html)
        assert link.startswith("/calls/?unpriced=true&date_from=2025-02-28&date_to=2025-02-28")
        assert sorted(_listed_request_ids(client, link)) == sorted(str(r.request_id) for r in mine)


def test_charts_sum_what_the_tables_sum(ledger: dict[str, Any], people: dict[str, User]) -> None:
    start, end = TODAY - timedelta(days=29), TODAY
    records = _raw(start, end)
    context = signed_in(people["finance"]).get(reverse("dashboard")).context
    daily = context["daily"]
    raw_daily = {
        (row["day"], row["provider_id"]): row["cost"]
        for row in records.annotate(day=TruncDate("created_at", tzinfo=ledger_timezone()))
        .values("day", "provider_id").annotate(cost=Sum("cost"))
    }
    assert daily.cost == raw_daily
    assert daily.days == [start + timedelta(days=n) for n in range(30)]

    def bars(chart: str) -> list[tuple]:
        return [(g.key, g.cost, g.requests) for g in context[chart]]

    def expected(groups: dict[Any, dashboards.Figures]) -> list[tuple]:
        return sorted(((key, f.cost, f.requests) for key, f in groups.items()), key=lambda bar: -bar[1])[:10]

    assert bars("models") == expected(_raw_groups(records, "model"))
    assert bars("users") == expected(_raw_groups(records, "user"))
    # Calls without a key are left out of the keys' chart.
    assert bars("keys") == expected(_raw_groups(records.filter(api_key__isnull=False), "api_key"))
    assert None not in {g.key for g in context["keys"]}


# -- date ranges ----------------------------------------------------------------------------------


def test_presets_are_days_in_the_configured_time_zone() -> None:
    assert dashboards.today() == TODAY  # 05:00 UTC on 1 March is still 28 February in Los Angeles
    expected = {
        "today": (TODAY, TODAY),
        "7d": (date(2025, 2, 22), TODAY),
        "30d": (date(2025, 1, 30), TODAY),
        "month": (date(2025, 2, 1), TODAY),
        "last_month": (date(2025, 1, 1), date(2025, 1, 31)),
    }
    for preset, (start, end) in expected.items():
        r = dashboards.preset_range(preset, dashboards.today())
        assert (r.start, r.end, r.preset) == (start, end, preset)
    # Last month from a 31st into a shorter month, and across a year.
    assert dashboards.preset_range("last_month", date(2025, 3, 31)).start == date(2025, 2, 1)
    assert dashboards.preset_range("last_month", date(2025, 1, 15)) == dashboards.DateRange(
        date(2024, 12, 1), date(2024, 12, 31), "last_month")


def test_preset_boundaries_follow_local_midnight(people: dict[str, User]) -> None:
    provider = Provider.objects.create(name="edge", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = _model(provider, "m", "1", "1")
    for when in (
        datetime(2025, 3, 1, 4, 30, tzinfo=UTC),   # 20:30 on 28 Feb there: today
        datetime(2025, 2, 28, 8, 30, tzinfo=UTC),  # 00:30 on 28 Feb: today
        datetime(2025, 2, 28, 7, 30, tzinfo=UTC),  # 23:30 on 27 Feb: 7 days, not today
        datetime(2025, 2, 1, 8, 30, tzinfo=UTC),   # 00:30 on 1 Feb: this month
        datetime(2025, 2, 1, 7, 30, tzinfo=UTC),   # 23:30 on 31 Jan: last month
        datetime(2025, 1, 1, 8, 30, tzinfo=UTC),   # 00:30 on 1 Jan: last month
        datetime(2025, 1, 1, 7, 30, tzinfo=UTC),   # 23:30 on 31 Dec: none of them
    ):
        write(model, user=people["member"], created_at=when)
    client = signed_in(people["finance"])

    def requests(**query: str) -> int:
        return client.get(reverse("dashboard"), query).context["totals"].requests

    assert requests(range="today") == 2
    assert requests(range="7d") == 3
    assert requests(range="month") == 4
    assert requests(range="last_month") == 2
    assert requests() == 5  # 30 days: 30 January to 28 February
    assert requests(range="custom", **{"from": "2024-12-31", "to": "2024-12-31"}) == 1


def test_custom_ranges_and_their_mistakes(ledger: dict[str, Any], people: dict[str, User]) -> None:
    client = signed_in(people["finance"])
    url = reverse("dashboard")

    def shown(**query: str) -> dashboards.DateRange:
        response = client.get(url, query)
        assert response.status_code == 200 and response.context["valid"], response.context["form"].errors
        return response.context["selection"].range

    assert shown() == dashboards.DateRange(date(2025, 1, 30), TODAY, "30d")
    # The filter form always sends the days shown: the same days keep the preset (and it keeps rolling)...
    assert shown(range="7d", **{"from": "2025-02-22", "to": "2025-02-28"}).preset == "7d"
    # ...an edited day makes it custom.
    assert shown(range="7d", **{"from": "2025-02-20", "to": "2025-02-28"}) == dashboards.DateRange(
        date(2025, 2, 20), TODAY, "custom")
    assert shown(**{"from": "2025-02-01"}) == dashboards.DateRange(date(2025, 2, 1), TODAY, "custom")
    assert shown(**{"to": "2025-01-31"}) == dashboards.DateRange(date(2025, 1, 2), date(2025, 1, 31), "custom")
    assert shown(range="custom", **{"from": "2025-02-10", "to": "2025-02-10"}).start == date(2025, 2, 10)

    backwards = client.get(url, {"from": "2025-02-10", "to": "2025-02-01"})
    assert not backwards.context["valid"] and "totals" not in backwards.context
    assert "The start date is after the end date." in backwards.content.decode()
    too_long = client.get(url, {"from": "2020-01-01", "to": "2025-02-28"})
    assert not too_long.context["valid"] and "Choose at most 1,096 days." in too_long.content.decode()
    assert shown(**{"from": "2022-03-01", "to": "2025-02-28"}).start == date(2022, 3, 1)  # 1,096 days
    assert shown(**{"to": "0001-01-02"}) == dashboards.DateRange(date(1, 1, 1), date(1, 1, 2), "custom")
    nonsense = client.get(url, {"from": "last tuesday", "range": "fortnight", "sort": "whim"})
    assert set(nonsense.context["form"].errors) == {"date_from", "range", "sort"}


def test_the_page_names_the_range_and_links_every_preset(ledger: dict[str, Any], people: dict[str, User]) -> None:
    html = signed_in(people["finance"]).get(reverse("dashboard"), {"source": "cli"}).content.decode()
    presets = html.split('aria-label="Date range"', 1)[1].split("</nav>", 1)[0]
    assert '<a href="/costs/?source=cli" aria-current="true">30 days</a>' in presets
    for key in ("today", "7d", "month", "last_month"):
        assert f'href="/costs/?range={key}&amp;source=cli"' in presets  # filters kept, dates dropped
    assert "30 days: <strong>2025-01-30 to 2025-02-28</strong>" in html
    assert 'name="from" id="id_from" value="2025-01-30"' in html
    assert "days in America/Los_Angeles" in html


# -- filters, drill-down, sorting -----------------------------------------------------------------


def test_drilling_into_a_provider_shows_its_models(ledger: dict[str, Any], people: dict[str, User]) -> None:
    client = signed_in(people["finance"])
    html = client.get(reverse("dashboard"), {"range": "last_month"}).content.decode()
    alpha = ledger["alpha"]
    drill = f"/costs/?range=last_month&amp;provider={alpha.pk}&amp;group=model"
    table = html.split('id="groups-h"', 1)[1]
    assert f'<a href="{drill}">alpha</a>' in table
    assert f'<a href="{drill}" title="Cost by model at alpha">alpha</a>' in html  # the chart's legend too

    response = client.get(reverse("dashboard"), {"range": "last_month", "provider": alpha.pk, "group": "model"})
    shown = {group.key: group.figures for group, link in response.context["rows"]}
    assert set(shown) == {m.pk for m in ledger["models"] if m.provider == alpha}
    assert shown == _raw_groups(_raw(date(2025, 1, 1), date(2025, 1, 31), provider=alpha), "model")
    assert all(link == "" for _, link in response.context["rows"])  # models are the bottom
    html = response.content.decode()
    assert '<a href="/costs/?range=last_month">All providers</a> \u203a <strong>alpha</strong>' in html
    assert 'selected>alpha</option>' in html  # the form shows the filter it applies


def test_sorting_is_done_by_the_server_through_links(ledger: dict[str, Any], people: dict[str, User]) -> None:
    client = signed_in(people["finance"])
    records = _raw(TODAY - timedelta(days=29), TODAY)
    raw = _raw_groups(records, "model")
    names = {m.pk: f"{m.provider.name}/{m.name}" for m in ledger["models"]}

    def order(sort: str) -> list[int]:
        response = client.get(reverse("dashboard"), {"group": "model", "sort": sort})
        return [group.key for group, _ in response.context["rows"]]

    assert order("name") == sorted(raw, key=lambda pk: names[pk])
    assert order("-name") == sorted(raw, key=lambda pk: names[pk], reverse=True)
    assert order("-cost") == sorted(raw, key=lambda pk: -raw[pk].cost)
    assert order("cost") == sorted(raw, key=lambda pk: raw[pk].cost)
    assert order("-requests") == sorted(raw, key=lambda pk: -raw[pk].requests)
    assert order("-output_tokens") == sorted(raw, key=lambda pk: -raw[pk].output_tokens)
    assert order("error_rate") == sorted(raw, key=lambda pk: raw[pk].errors / raw[pk].requests)
    assert order("-latency") == sorted(raw, key=lambda pk: -raw[pk].avg_latency_ms)
    assert order("ttft") == sorted(raw, key=lambda pk: raw[pk].avg_ttft_ms)
    assert order("-cache_write_1h_tokens") == sorted(raw, key=lambda pk: -raw[pk].cache_write_1h_tokens)
    # Models with as many unpriced calls (none, mostly) in the order of their ids.
    assert order("-unpriced") == sorted(raw, key=lambda pk: (-raw[pk].unpriced, pk))
    assert order("unpriced") == sorted(raw, key=lambda pk: (raw[pk].unpriced, pk))
    assert raw[ledger["models"][3].pk].unpriced > raw[ledger["models"][4].pk].unpriced > 0

    html = client.get(reverse("dashboard"), {"group": "model", "sort": "-requests"}).content.decode()
    head = html.split('id="groups-h"', 1)[1].split("</thead>", 1)[0]
    # The current column flips; another starts from its largest; names from A.
    assert '<th class="num" aria-sort="descending"><a href="/costs/?group=model&amp;sort=requests">Requests ▼</a>' \
        in head
    assert '<a href="/costs/?group=model">Cost</a>' in head  # -cost is the default, left out of the link
    assert '<a href="/costs/?group=model&amp;sort=name">Model</a>' in head


@pytest.mark.parametrize("sort", ["-cost", "name", "-latency"])
def test_the_group_table_shows_its_first_rows_and_the_csv_every_one(
        ledger: dict[str, Any], people: dict[str, User], monkeypatch: pytest.MonkeyPatch, sort: str) -> None:
    client = signed_in(people["finance"])
    query = {"group": "model", "sort": sort}
    whole = client.get(reverse("dashboard"), query)
    every = [group.key for group, _ in whole.context["rows"]]
    assert len(every) == 5 and not whole.context["table_more"] and 'id="groups-more"' not in whole.content.decode()

    monkeypatch.setattr(dashboard_views, "TABLE_ROWS", 2)
    cut = client.get(reverse("dashboard"), query)
    assert [group.key for group, _ in cut.context["rows"]] == every[:2]
    html = cut.content.decode()
    assert 'id="groups-more"' in html and "The first 2 rows in this order" in html
    # The model chart is summed for itself, not taken from the two rows shown.
    assert [(t.key, t.cost) for t in cut.context["models"]] == [(t.key, t.cost) for t in whole.context["models"]]
    assert len(cut.context["models"]) == 5
    assert len(_csv(client.get(reverse("dashboard_export"), query))) == 5


@pytest.mark.parametrize("group", ["end_user", "user"])
def test_the_first_groups_of_many_are_summed_as_every_group_is(
        ledger: dict[str, Any], people: dict[str, User], monkeypatch: pytest.MonkeyPatch, group: str) -> None:
    """A grouping of thousands of groups (end users) sums the sort's columns over every group and every column
    over the first ones only: the same rows, in the same order, with the same figures as one query summing
    every column of every group; the raw records' sums besides. By user too (a "many" grouping for the test),
    whose group of calls without a user has no key to pick it by."""
    monkeypatch.setitem(dashboards.DIMENSIONS, "user", dataclasses.replace(dashboards.DIMENSIONS["user"], many=True))
    records = _raw(TODAY - timedelta(days=29), TODAY)
    raw = _raw_groups(records, group)
    assert len(raw) >= 3 and (group == "user") is (None in raw)
    client = signed_in(people["finance"])
    for key in dashboards.SORT_KEYS[1:]:
        for sort in (key, f"-{key}"):
            whole = client.get(reverse("dashboard"), {"group": group, "sort": sort})
            every = [(g.key, g.figures) for g, _ in whole.context["rows"]]
            assert len(every) == len(raw) and dict(every) == raw, sort
            selection = whole.context["selection"]
            for limit in (1, 2, len(raw)):
                with CaptureQueriesContext(connection) as queries:
                    first = dashboards.groups(selection, limit=limit)
                assert [(g.key, g.figures) for g in first] == every[:limit], (sort, limit)
                assert len(queries) == 2  # the sort's sums, then every sum of the groups shown
    every = [(g.key, g.figures) for g, _ in client.get(reverse("dashboard"), {"group": group}).context["rows"]]
    monkeypatch.setattr(dashboard_views, "TABLE_ROWS", 2)
    cut = client.get(reverse("dashboard"), {"group": group})
    assert [(g.key, g.figures) for g, _ in cut.context["rows"]] == every[:2] and cut.context["table_more"]


def test_users_without_a_name_and_calls_without_a_key_are_groups_too(ledger: dict[str, Any],
                                                                      people: dict[str, User]) -> None:
    client = signed_in(people["finance"])
    rows = client.get(reverse("dashboard"), {"group": "user"}).context["rows"]
    labels = {group.label for group, _ in rows}
    assert {"No user", "member@example.com", "other@example.com", "third@example.com"} <= labels
    rows = client.get(reverse("dashboard"), {"group": "api_key"}).context["rows"]
    assert {group.label for group, _ in rows} == {"No API key", "ci (asp_ci01…)", "<b>batch</b> (asp_bt02…)"}


def test_the_filter_form_swaps_only_the_dashboard_over_htmx(ledger: dict[str, Any], people: dict[str, User]) -> None:
    response = signed_in(people["finance"]).get(reverse("dashboard"), {"range": "7d"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="dashboard"') and "<html" not in html
    assert 'hx-get="/costs/" hx-trigger="change, submit"' in html
    assert 'hx-boost="true" hx-target="this" hx-swap="outerHTML"' in html
    # Going back to a pushed URL whose snapshot htmx no longer has asks for the whole page.
    restore = signed_in(people["finance"]).get(reverse("dashboard"), {"range": "7d"}, HTTP_HX_REQUEST="true",
                                               HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in restore.content.decode()


# -- CSV of the view ------------------------------------------------------------------------------


def _csv(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"

    async def collect() -> list[bytes]:
        return [part async for part in response.streaming_content]

    rows = list(csv.reader(io.StringIO(b"".join(async_to_sync(collect)()).decode())))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_the_csv_is_the_view_with_the_same_grouping_filters_and_order(ledger: dict[str, Any],
                                                                      people: dict[str, User]) -> None:
    alpha = ledger["alpha"]
    query = {"range": "last_month", "provider": alpha.pk, "group": "model", "sort": "-requests"}
    client = signed_in(people["finance"])
    response = client.get(reverse("dashboard_export"), query)
    assert response["Content-Disposition"] == \
        'attachment; filename="aspweb-costs-by-model-2025-01-01-2025-01-31.csv"'
    rows = _csv(response)
    shown = [group for group, _ in client.get(reverse("dashboard"), query).context["rows"]]
    assert [(row["provider"], row["model"]) for row in rows] == [("alpha", g.names["model"]) for g in shown]
    raw = _raw_groups(_raw(date(2025, 1, 1), date(2025, 1, 31), provider=alpha), "model")
    by_name = {m.name: m.pk for m in ledger["models"]}
    for row in rows:
        figures = raw[by_name[row["model"]]]
        assert Decimal(row["cost_usd"]) == figures.cost
        assert "E" not in row["cost_usd"] and len(row["cost_usd"].split(".")[1]) == 10
        assert int(row["requests"]) == figures.requests and int(row["errors"]) == figures.errors
        assert int(row["input_tokens"]) == figures.input_tokens
        assert int(row["cache_read_tokens"]) == figures.cache_read_tokens
        assert Decimal(row["avg_latency_ms"]) == Decimal(figures.avg_latency_ms).quantize(Decimal("0.1"))
    assert sum(Decimal(row["cost_usd"]) for row in rows) == _raw_figures(
        _raw(date(2025, 1, 1), date(2025, 1, 31), provider=alpha)).cost
    html = client.get(reverse("dashboard"), query).content.decode()
    assert f'href="/costs/export.csv?range=last_month&amp;provider={alpha.pk}&amp;group=model&amp;sort=-requests"' \
        in html


@pytest.mark.parametrize("group", list(dashboards.DIMENSIONS))
def test_the_csv_has_the_columns_of_each_grouping(ledger: dict[str, Any], people: dict[str, User], group: str) -> None:
    rows = _csv(signed_in(people["admin"]).get(reverse("dashboard_export"), {"group": group}))
    own = list(dashboards.DIMENSIONS[group].columns)
    assert list(rows[0]) == [
        *own, "requests", "errors", "cancelled", "estimated", "input_tokens", "cache_read_tokens",
        "cache_write_tokens", "cache_write_1h_tokens", "output_tokens", "reasoning_tokens", "cost_usd", "unpriced",
        "unpriced_tokens", "avg_latency_ms", "avg_ttft_ms"]
    records = _raw(TODAY - timedelta(days=29), TODAY)
    if group == "tag":  # a call is in the row of each of its tags
        assert {row["tag"]: Decimal(row["cost_usd"]) for row in rows} == {
            key: figures.cost for key, figures in _raw_groups(records, "tag").items()}
        return
    if group == "end_user":  # only the calls that name one
        records = records.exclude(end_user="")
    assert sum(Decimal(row["cost_usd"]) for row in rows) == _raw_figures(records).cost


def test_every_csv_cell_is_the_raw_records_sum(ledger: dict[str, Any], people: dict[str, User]) -> None:
    rows = _csv(signed_in(people["finance"]).get(reverse("dashboard_export"),
                                                 {"group": "model", "range": "last_month"}))
    raw = _raw_groups(_raw(date(2025, 1, 1), date(2025, 1, 31)), "model")
    by_name = {(m.provider.name, m.name): m.pk for m in ledger["models"]}
    assert sorted(by_name[row["provider"], row["model"]] for row in rows) == sorted(raw)
    for row in rows:
        f = raw[by_name[row["provider"], row["model"]]]
        for column in ("requests", "errors", "cancelled", "estimated", "input_tokens", "cache_read_tokens",
                       "cache_write_tokens", "cache_write_1h_tokens", "output_tokens", "reasoning_tokens",
                       "unpriced", "unpriced_tokens"):
            assert int(row[column]) == getattr(f, column), (row["model"], column)
        assert Decimal(row["cost_usd"]) == f.cost
    unpriced = {row["model"]: (row["unpriced"], row["cost_usd"]) for row in rows if row["unpriced"] != "0"}
    # Beta's new model has no price at all: its calls count $0. OpenRouter's reports its charge for answers,
    # so only its failures without one are unpriced.
    assert set(unpriced) == {"b-new", "g-routed"} and unpriced["b-new"][1] == "0.0000000000"
    assert Decimal(unpriced["g-routed"][1]) > 0


def test_a_csv_of_an_invalid_view_is_refused(people: dict[str, User]) -> None:
    response = signed_in(people["finance"]).get(reverse("dashboard_export"), {"from": "2025-02-10", "to": "2025-02-01"})
    assert response.status_code == 400 and b"The start date is after the end date." in response.content


# -- who sees what ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["finance", "admin"])
def test_finance_and_admins_see_everyone(ledger: dict[str, Any], people: dict[str, User], role: str) -> None:
    response = signed_in(people[role]).get(reverse("dashboard"))
    assert response.status_code == 200
    assert response.context["totals"] == _raw_figures(_raw(TODAY - timedelta(days=29), TODAY))


def test_members_may_not_open_the_cost_dashboard(ledger: dict[str, Any], people: dict[str, User]) -> None:
    client = signed_in(people["member"])
    assert client.get(reverse("dashboard")).status_code == 403
    assert client.get(reverse("dashboard_export")).status_code == 403


@pytest.mark.parametrize("who", ["member", "other", "finance", "admin"])
def test_my_usage_is_the_same_dashboard_over_ones_own_calls(ledger: dict[str, Any], people: dict[str, User],
                                                           who: str) -> None:
    me = people[who]
    client = signed_in(me)
    response = client.get(reverse("my_usage"), {"range": "last_month"})
    assert response.status_code == 200
    mine = _raw(date(2025, 1, 1), date(2025, 1, 31), user=me)
    assert response.context["totals"] == _raw_figures(mine)
    for dimension in ("provider", "model", "api_key", "source", "day"):
        rows = client.get(reverse("my_usage"), {"range": "last_month", "group": dimension}).context["rows"]
        assert {g.key: g.figures for g, _ in rows} == _raw_groups(mine, dimension)
    rows = _csv(client.get(reverse("my_usage_export"), {"range": "last_month", "group": "source"}))
    assert sum(int(row["requests"]) for row in rows) == mine.count()


def test_a_member_never_sees_anyone_elses_numbers(ledger: dict[str, Any], people: dict[str, User]) -> None:
    member, other = people["member"], people["other"]
    client = signed_in(member)
    mine = _raw(TODAY - timedelta(days=29), TODAY, user=member)
    assert _raw(TODAY - timedelta(days=29), TODAY).exclude(user=member).exists()

    # Asking for someone else's rows changes nothing: there is no user filter on this page...
    response = client.get(reverse("my_usage"), {"user": other.pk})
    assert response.context["totals"] == _raw_figures(mine)
    html = response.content.decode()
    for text in ("other@example.com", "third@example.com", "asp_bt02", "batch", "Top users"):
        assert text not in html, text
    # ...no grouping by user, and no one else's key to filter on.
    assert not client.get(reverse("my_usage"), {"group": "user"}).context["valid"]
    theirs = client.get(reverse("my_usage"), {"api_key": ledger["keys"][1].pk})
    assert not theirs.context["valid"] and "totals" not in theirs.context
    assert client.get(reverse("my_usage_export"), {"api_key": ledger["keys"][1].pk}).status_code == 400
    assert client.get(reverse("my_usage_export"), {"group": "user"}).status_code == 400
    rows = _csv(client.get(reverse("my_usage_export"), {"user": other.pk, "group": "api_key"}))
    assert {row["api_key_prefix"] for row in rows} <= {"asp_ci01", ""}
    assert sum(Decimal(row["cost_usd"]) for row in rows) == _raw_figures(mine).cost


@pytest.mark.parametrize(("role", "costs"), [("member", False), ("finance", True), ("admin", True)])
def test_navigation_links_the_dashboards(people: dict[str, User], role: str, costs: bool) -> None:
    html = signed_in(people[role]).get(reverse("home")).content.decode()
    nav = html.split('<nav aria-label="Main">', 1)[1].split("</nav>", 1)[0]
    assert ">My usage</a>" in nav
    assert (">Costs</a>" in nav) is costs


# -- charts ---------------------------------------------------------------------------------------


def test_each_chart_is_svg_with_hover_titles_and_a_table_after_it(ledger: dict[str, Any],
                                                                  people: dict[str, User]) -> None:
    response = signed_in(people["finance"]).get(reverse("dashboard"))
    html = response.content.decode()
    daily = response.context["daily"]
    day = next(d for d in daily.days if daily.day_total(d))
    for section, title in (("daily-h", "Daily cost by provider, 2025-01-30 to 2025-02-28"),
                           ("models-h", "Cost by model, 2025-01-30 to 2025-02-28"),
                           ("users-h", "Top users by cost, 2025-01-30 to 2025-02-28"),
                           ("keys-h", "Top API keys by cost, 2025-01-30 to 2025-02-28")):
        part = html.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
        svg = part.split("<svg", 1)[1].split("</svg>", 1)[0]
        assert f"<title>{title}</title>" in svg
        assert svg.count("<title>") > 2  # the chart's own and one per mark
        assert part.index("</svg>") < part.index('<details class="table-alt">') < part.index("<table")
    assert f"<title>{day.isoformat()}: " in html and " in all</title>" in html
    # No script, and a name from the database is text, not markup, in the SVG and the table.
    assert "<script" not in html.split("<main>", 1)[1]
    assert "&lt;b&gt;batch&lt;/b&gt;" in html and "<b>batch</b>" not in html


def test_a_segment_title_names_the_day_provider_and_cost() -> None:
    series = dashboards.DailySeries(days=[date(2025, 2, 1), date(2025, 2, 2)], providers=[(1, "alpha"), (2, "beta")],
                                    cost={(date(2025, 2, 1), 1): Decimal("1.25"),
                                          (date(2025, 2, 1), 2): Decimal("0.0005")})
    svg = str(charts.stacked_daily_cost(series, title="t"))
    assert "<title>2025-02-01 · alpha: $1.25</title>" in svg
    assert "<title>2025-02-01 · beta: $0.0005</title>" in svg
    assert "<title>2025-02-01: $1.25 in all</title>"  # cents from a dollar up in svg
    assert "<title>2025-02-02: $0.00 in all</title>" in svg  # an empty day is still there to hover
    assert svg.count("<rect class=\"s") == 2
    # The axis tops out at the first round tick above the largest day, in steps of $0.50.
    assert [label for label in ("$0.00", "$0.50", "$1.00", "$1.50") if f">{label}</text>" in svg] == [
        "$0.00", "$0.50", "$1.00", "$1.50"]
    assert ">$2.00</text>" not in svg and ">$0.25</text>" not in svg


def test_charts_of_nothing_still_draw() -> None:
    empty = dashboards.DailySeries(days=[date(2025, 2, 1)], providers=[], cost={})
    assert "<svg" in charts.stacked_daily_cost(empty, title="t")
    assert "Nothing in this range." in charts.bar_chart([], title="t")


@pytest.mark.parametrize(("value", "ticks"), [
    ("0.01875", "0 0.005 0.01 0.015 0.02"), ("0", "0 0.25 0.5 0.75 1"), ("0.7", "0 0.2 0.4 0.6 0.8"),
    ("1", "0 0.25 0.5 0.75 1"), ("1.01", "0 0.5 1 1.5"), ("2.2", "0 1 2 3"), ("7", "0 2 4 6 8"),
    ("0.00042", "0 0.0002 0.0004 0.0006"), ("1234", "0 500 1000 1500"), ("9999", "0 2500 5000 7500 10000"),
])
def test_axis_ticks_are_round_steps_up_to_the_largest_value(value: str, ticks: str) -> None:
    assert charts.axis_ticks(Decimal(value)) == [Decimal(t) for t in ticks.split()]


@pytest.mark.parametrize("value", [Decimal(n) / 10**places for n in (1, 3, 7, 13, 1875, 4999, 5001, 99_999)
                                   for places in (0, 2, 5)])
def test_every_tick_is_a_multiple_of_a_round_step(value: Decimal) -> None:
    ticks = charts.axis_ticks(value)
    step = ticks[1]
    assert ticks[0] == 0 and ticks[-1] >= value > ticks[-2] and 3 <= len(ticks) <= 5
    assert all(tick == step * n for n, tick in enumerate(ticks))
    # 1, 2, 2.5 or 5 times a power of ten.
    assert step.normalize().as_tuple().digits in ((1,), (2,), (2, 5), (5,))


def test_count_axes_step_by_whole_numbers() -> None:
    assert charts.axis_ticks(0, least_step=Decimal(1)) == [0, 1]
    assert charts.axis_ticks(3, least_step=Decimal(1)) == [0, 1, 2, 3]
    assert charts.axis_ticks(13, least_step=Decimal(1)) == [0, 5, 10, 15]


def test_the_daily_chart_labels_its_ticks_with_round_money() -> None:
    series = dashboards.DailySeries(days=[date(2025, 2, 1)], providers=[(1, "alpha")],
                                    cost={(date(2025, 2, 1), 1): Decimal("0.01875")})
    svg = str(charts.stacked_daily_cost(series, title="t"))
    labels = [part.split("<", 1)[0] for part in svg.split('text-anchor="end">')[1:]]
    assert labels == ["$0.00", "$0.005", "$0.01", "$0.015", "$0.02"]


# -- from a row to its calls ----------------------------------------------------------------------


def _calls_links(html: str) -> dict[str, str]:
    """The group table's "Calls" links: {the row's label: URL}."""
    table = html.split('id="groups-h"', 1)[1].split("</table>", 1)[0]
    link = r'<a class="calls-link" href="([^"]+)" hx-boost="false">Calls<span class="visually-hidden"> of (.*?)</span>'
    return {label: href.replace("&amp;", "&") for href, label in re.findall(link, table)}


@pytest.mark.parametrize("dimension", list(dashboards.DIMENSIONS))
@pytest.mark.parametrize("case", [{}, {"provider": "beta"}, {"user": "other", "source": "gateway"}],
                         ids=lambda c: ",".join(map(str, c.items())) or "everything")
def test_every_row_opens_exactly_its_calls(ledger: dict[str, Any], people: dict[str, User], dimension: str,
                                           case: dict[str, Any]) -> None:
    params, raw_filters = _resolve(case, ledger, people)
    client = signed_in(people["finance"])
    response = client.get(reverse("dashboard"), {**params, "range": "last_month", "group": dimension})
    links = _calls_links(response.content.decode())
    groups = [group for group, _ in response.context["rows"]]
    assert len(links) == len([g for g in groups if g.key is not None]) > 0
    records = _raw(date(2025, 1, 1), date(2025, 1, 31), **raw_filters)
    column = RAW_DIMENSION[dimension]
    if column == "day":
        records = records.annotate(day=TruncDate("created_at", tzinfo=ledger_timezone()))
    for group in groups:
        if group.key is None:
            continue
        link = links[str(escape(group.label))]
        assert link.startswith("/calls/?date_from=")
        expected = sorted(str(r.request_id) for r in records.filter(
            tag_q(group.key) if column == "tag" else Q(**{column: group.key})))
        assert len(expected) == group.figures.requests
        assert sorted(_listed_request_ids(client, link)) == expected, (dimension, group.label)


def test_my_usage_rows_open_my_own_calls(ledger: dict[str, Any], people: dict[str, User]) -> None:
    for who in ("member", "admin"):  # an admin's calls list holds everyone's: the link names the person
        me = people[who]
        write(ledger["models"][0], user=me, created_at=NOW - timedelta(days=40), source="cli")
        client = signed_in(me)
        response = client.get(reverse("my_usage"), {"range": "last_month", "group": "model"})
        links = _calls_links(response.content.decode())
        assert links
        for group, _ in response.context["rows"]:
            expected = _raw(date(2025, 1, 1), date(2025, 1, 31), user=me, model_id=group.key)
            assert sorted(_listed_request_ids(client, links[str(escape(group.label))])) == sorted(
                str(r.request_id) for r in expected)


# -- requests, errors and latency -----------------------------------------------------------------


def test_the_daily_requests_and_latency_are_the_raw_records_sums(ledger: dict[str, Any],
                                                                 people: dict[str, User]) -> None:
    start, end = TODAY - timedelta(days=29), TODAY
    records = _raw(start, end).annotate(day=TruncDate("created_at", tzinfo=ledger_timezone()))
    raw = {row.pop("day"): row for row in records.order_by().values("day").annotate(
        requests=Count("id"), errors=Count("id", filter=Q(status="error")),
        latency_ms_sum=Coalesce(Sum("latency_ms"), 0), latency_count=Count("latency_ms"),
        unpriced=Count("id", filter=Q(unpriced=True)))}
    response = signed_in(people["finance"]).get(reverse("dashboard"))
    daily = response.context["daily"]
    assert {day: dataclasses.asdict(a) for day, a in daily.activity.items()} == raw
    assert sum(a.errors for a in daily.activity.values()) > 0
    html = response.content.decode()
    for section, title, summary in (
            ("requests-h", "Daily requests and errors, 2025-01-30 to 2025-02-28",
             "Daily requests and errors as a table"),
            ("latency-h", "Daily average latency, 2025-01-30 to 2025-02-28", "Daily average latency as a table"),
    ):
        part = html.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
        svg = part.split("<svg", 1)[1].split("</svg>", 1)[0]
        assert f"<title>{title}</title>" in svg
        assert part.index("</svg>") < part.index(f"<summary>{summary}</summary>")
    busiest = max(raw, key=lambda day: raw[day]["requests"])
    b = raw[busiest]
    requests = html.split('id="requests-h"', 1)[1].split("</section>", 1)[0]
    errors = f", {b['errors']:,} error{'s' if b['errors'] != 1 else ''}"
    assert f"<title>{busiest.isoformat()}: {b['requests']:,} requests{errors}</title>" in requests
    assert (f'<tr><td>{busiest.isoformat()}</td><td class="num">{b["requests"]:,}</td>'
            f'<td class="num">{b["errors"]:,}</td></tr>') in requests
    latency = html.split('id="latency-h"', 1)[1].split("</section>", 1)[0]
    average = b["latency_ms_sum"] / b["latency_count"]
    assert f"<title>{busiest.isoformat()}: {round(average):,} ms on average</title>" in latency
    assert f'<td class="num">{dashboard_views._places(average, "1"):,}&nbsp;ms</td>' in latency


def test_count_and_latency_axes_tick_on_whole_round_numbers() -> None:
    day = date(2025, 2, 1)
    series = dashboards.DailySeries(days=[day], providers=[], cost={}, activity={
        day: dashboards.DayActivity(requests=13, errors=2, latency_ms_sum=3 * 1875, latency_count=3)})
    requests = str(charts.daily_requests(series, title="t"))
    labels = [part.split("<", 1)[0] for part in requests.split('text-anchor="end">')[1:]]
    assert labels == ["0", "5", "10", "15"]
    latency = str(charts.daily_latency(series, title="t"))
    labels = [part.split("<", 1)[0] for part in latency.split('text-anchor="end">')[1:]]
    assert labels == ["0 ms", "500 ms", "1,000 ms", "1,500 ms", "2,000 ms"]
    assert "<title>2025-02-01: 13 requests, 2 errors</title>" in requests
    assert "<title>2025-02-01: 1,875 ms on average</title>" in latency
    # A day without calls: an empty column to hover, and no latency to show.
    quiet = dashboards.DailySeries(days=[day], providers=[], cost={})
    assert "<title>2025-02-01: 0 requests</title>" in charts.daily_requests(quiet, title="t")
    assert "<title>2025-02-01: no call timed</title>" in charts.daily_latency(quiet, title="t")


# -- calls without a price in the charts ----------------------------------------------------------


def test_charts_and_their_tables_mark_amounts_that_leave_unpriced_calls_out(ledger: dict[str, Any],
                                                                         people: dict[str, User]) -> None:
    response = signed_in(people["finance"]).get(reverse("dashboard"), {"range": "last_month"})
    html = response.content.decode()
    models = html.split('id="models-h"', 1)[1].split("</section>", 1)[0]
    unpriced = _raw(date(2025, 1, 1), date(2025, 1, 31), model=ledger["models"][3], unpriced=True).count()
    assert unpriced > 1
    # b-new has no price: its bar and its row say that its $0.00 leaves calls out.
    assert "<title>beta/b-new: $0.00 in " in models
    assert f" requests; {unpriced} calls without a price, not in it</title>" in models
    assert '$0.00<tspan class="unpriced-note"> + unpriced</tspan>' in models
    row = models.split("<td>beta/b-new</td>", 1)[1].split("</tr>", 1)[0]
    assert f'title="Leaves out {unpriced} calls without a price">+&nbsp;unpriced</span>' in row
    # A priced model's bar has no such mark.
    priced = models.split("<td>alpha/a-large</td>", 1)[1].split("</tr>", 1)[0]
    assert "unpriced" not in priced
    # Days: the column's title, a mark under it, and the table's total.
    daily = response.context["daily"]
    day = next(d for d in daily.days if daily.day_activity(d).unpriced == 1)
    part = html.split('id="daily-h"', 1)[1].split("</section>", 1)[0]
    assert f"<title>{day.isoformat()}: {money(daily.day_total(day))} in all; 1 call without a price, not in it" \
           "</title>" in part
    assert part.count('class="unpriced-mark"') == sum(1 for d in daily.days if daily.day_activity(d).unpriced)
    assert (f'<td class="num">{money(daily.day_total(day))} <span class="badge warn" title="Leaves out 1 call '
            'without a price">+&nbsp;unpriced</span></td></tr>') in part


def test_each_grouping_names_itself_in_the_tables_heading(ledger: dict[str, Any], people: dict[str, User]) -> None:
    client = signed_in(people["finance"])
    for group, heading in (("provider", "By provider"), ("model", "By model"), ("user", "By user"),
                           ("api_key", "By API key"), ("source", "By source"), ("day", "By day")):
        html = client.get(reverse("dashboard"), {"range": "last_month", "group": group}).content.decode()
        shown = html.split('<h2 id="groups-h">', 1)[1].split("<", 1)[0].strip()
        assert shown == heading, group


def test_the_csvs_file_name_spells_the_grouping_with_dashes(ledger: dict[str, Any], people: dict[str, User]) -> None:
    response = signed_in(people["finance"]).get(reverse("dashboard_export"),
                                                {"range": "last_month", "group": "api_key"})
    assert response["Content-Disposition"] == \
        'attachment; filename="aspweb-costs-by-api-key-2025-01-01-2025-01-31.csv"'
