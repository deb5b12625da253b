"""The cost dashboards' numbers. Every figure is a SUM over rollup rows computed by the database, never a
scan of the raw records: a 30-day dashboard reads at most 30 days of rollup rows, however many calls they sum.
Each figure reads the narrowest rollup table that has the columns its filters and grouping need
(usage.rollups.table_for): the per-model table for totals, the daily chart and groupings by provider,
model, source or day, the per-person and per-key tables for those groupings, the full table only when a
filter and a grouping need dimensions no narrower table has together (one person's costs per model).

A `Selection` says which rollup rows (a range of days in settings.TIME_ZONE, filters, and for "My usage"
one person), how to group them and how to sort the groups; `usage.forms.DashboardForm` reads one from query
parameters.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.db.models import Expression, F, FloatField, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Coalesce, NullIf
from django.utils import timezone

from accounts.models import Team, User
from providers.models import Model, Provider

from .models import Rollup, UsageRecord, api_key_model
from .rollups import table_for
from .services import COST_PLACES, ledger_timezone

ApiKey = api_key_model()

PRESETS: dict[str, str] = {
    "today": "Today",
    "7d": "7 days",
    "30d": "30 days",
    "month": "This month",
    "last_month": "Last month",
}
DEFAULT_PRESET = "30d"
CUSTOM = "custom"
# A custom range's longest span: three years, a column each in the daily chart.
MAX_DAYS = 1096
TOP = 10  # bars in the "cost by model", "top users" and "top API keys" charts


def today() -> date:
    """Today in the ledger's time zone: the day the rollup is writing to now."""
    return timezone.localtime(timezone.now(), ledger_timezone()).date()


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date  # included
    preset: str  # a key of PRESETS, or CUSTOM

    @property
    def label(self) -> str:
        return PRESETS.get(self.preset, "Custom")

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]


def preset_range(preset: str, on: date) -> DateRange:
    """The days of a preset on day `on` (both ends included)."""
    if preset == "today":
        return DateRange(on, on, preset)
    if preset == "7d":
        return DateRange(on - timedelta(days=6), on, preset)
    if preset == "month":
        return DateRange(on.replace(day=1), on, preset)
    if preset == "last_month":
        end = on.replace(day=1) - timedelta(days=1)
        return DateRange(end.replace(day=1), end, preset)
    if preset == DEFAULT_PRESET:
        return DateRange(on - timedelta(days=29), on, preset)
    raise ValueError(f"Unknown preset {preset!r}")


# -- dimensions ---------------------------------------------------------------------------------


def _provider_names(rows: list[tuple]) -> dict[Any, dict[str, str]]:
    return {pk: {"provider": name} for pk, name in rows}


def _model_names(rows: list[tuple]) -> dict[Any, dict[str, str]]:
    return {pk: {"provider": provider, "model": name} for pk, provider, name in rows}


def _user_names(rows: list[tuple]) -> dict[Any, dict[str, str]]:
    return {pk: {"user": email} for pk, email in rows}


def _api_key_names(rows: list[tuple]) -> dict[Any, dict[str, str]]:
    return {pk: {"api_key_prefix": prefix, "api_key_name": name} for pk, name, prefix in rows}


def _team_names(rows: list[tuple]) -> dict[Any, dict[str, str]]:
    return {pk: {"team": name} for pk, name in rows}


class Names:
    """The (id, name) rows of a page's providers, models, people, API keys and teams, each table read once per
    page: the filter form's selects list them, and the table and charts name their groups from the same rows.
    `keys`, `teams`: the API keys and teams the page lists (a member's own on "My usage")."""

    def __init__(self, keys: QuerySet[ApiKey] | None = None, teams: QuerySet[Team] | None = None) -> None:
        self.keys = keys if keys is not None else ApiKey.objects.all()
        self.teams = teams if teams is not None else Team.objects.all()
        self._rows: dict[str, list[tuple]] = {}

    def rows(self, name: str) -> list[tuple]:
        """Every row of a dimension, in the order the selects list them."""
        if name not in self._rows:
            self._rows[name] = list(self._query(name))
        return self._rows[name]

    def _query(self, name: str, pks: list[Any] | None = None) -> QuerySet:
        queries = {
            "provider": lambda: Provider.objects.order_by("name").values_list("pk", "name"),
            "model": lambda: Model.objects.order_by("provider__name", "name").values_list("pk", "provider__name",
                                                                                          "name"),
            "user": lambda: User.objects.order_by("email").values_list("pk", "email"),
            "api_key": lambda: self.keys.order_by("name", "prefix").values_list("pk", "name", "prefix"),
            "team": lambda: self.teams.order_by("name").values_list("pk", "name"),
        }
        rows = queries[name]()
        if pks is not None:  # a key someone else made, in one person's calls: not among `keys`
            rows = rows.model.objects.filter(pk__in=pks).values_list(*rows._fields)
        return rows

    def of(self, dimension: "Dimension", keys: list[Any]) -> dict[Any, dict[str, str]]:
        """{group key: {column: text}} for the groups `keys` of `dimension`."""
        if dimension.rows_named is None:
            return {key: dimension.names_of(key) for key in keys}
        known = dimension.rows_named(self.rows(dimension.name))
        missing = [key for key in keys if key not in known]
        if missing:
            known = known | dimension.rows_named(list(self._query(dimension.name, missing)))
        return {key: known[key] for key in keys if key in known}


@dataclass(frozen=True)
class Dimension:
    """What rows can be grouped by. Groups are summed by the rollup's own column (an id, a source, a day),
    without joins, and named afterwards from the page's `Names`: `rows_named(rows)` turns a table's
    (id, ...) rows into {id: {column: text}}, the columns of the CSV; sources and days name themselves
    (`names_of`). `empty` names the group of rows without a value (no user, no API key)."""

    name: str
    label: str
    column: str
    rows_named: Callable[[list[tuple]], dict[Any, dict[str, str]]] | None
    columns: tuple[str, ...]
    empty: str = "—"
    names_of: Callable[[Any], dict[str, str]] = dict
    # Thousands of groups in a range (end users): a page's table of the first ones sums only the sort's
    # columns over every group, then every column over the groups it shows (`groups`).
    many: bool = False

    @property
    def heading(self) -> str:
        """The label as it reads inside a sentence ("By API key", "By model"): acronyms keep their capitals."""
        return self.label if self.label.startswith("API") else self.label.lower()

    def label_of(self, key: Any, names: dict[str, str]) -> str:
        if key is None or not names:
            return self.empty
        if self.name == "model":
            return f"{names['provider']}/{names['model']}"
        if self.name == "api_key":
            return f"{names['api_key_name']} ({names['api_key_prefix']}…)"
        return next(iter(names.values()))


DIMENSIONS: dict[str, Dimension] = {d.name: d for d in (
    Dimension("provider", "Provider", "provider_id", _provider_names, ("provider",)),
    Dimension("model", "Model", "model_id", _model_names, ("provider", "model")),
    Dimension("user", "User", "user_id", _user_names, ("user",), empty="No user"),
    Dimension("api_key", "API key", "api_key_id", _api_key_names, ("api_key_prefix", "api_key_name"),
              empty="No API key"),
    Dimension("source", "Source", "source", None, ("source",),
              names_of=lambda key: {"source": str(UsageRecord.Source(key).label)}),
    Dimension("day", "Day", "day", None, ("day",), names_of=lambda key: {"day": key.isoformat()}),
    Dimension("team", "Team", "team_id", _team_names, ("team",), empty="No team"),
    # A call with two tags is in two groups: the groups by tag add up to more than the total.
    Dimension("tag", "Tag", "tag", None, ("tag",), empty="No tag", names_of=lambda key: {"tag": key}),
    Dimension("end_user", "End user", "end_user", None, ("end_user",), empty="No end user",
              names_of=lambda key: {"end_user": key}, many=True),
)}
# The filters a selection has besides its range: (name, rollup column); the first four are rows of a table.
FILTERS = (("provider", "provider_id"), ("model", "model_id"), ("user", "user_id"), ("api_key", "api_key_id"),
           ("team", "team_id"), ("source", "source"), ("tag", "tag"), ("end_user", "end_user"))
_OBJECT_FILTERS = ("provider", "model", "user", "api_key", "team")
DEFAULT_GROUP = "provider"


# -- figures ------------------------------------------------------------------------------------

# Annotations cannot reuse the rollup's column names, so sums are annotated as sum_<column>.
_SUMS: dict[str, Expression] = {
    f"sum_{name}": Coalesce(Sum(name), Value(Decimal(0)) if name == "cost" else Value(0))
    for name in Rollup.SUM_FIELDS
}


def _ratio(numerator: str, denominator: str) -> Expression:
    return Cast(F(numerator), FloatField()) / NullIf(F(denominator), Value(0))


# Sort keys of the group tables -> the expression they order by (direction from a leading "-").
_SORT_EXPRESSIONS: dict[str, Any] = {
    "requests": F("sum_requests"),
    "error_rate": _ratio("sum_errors", "sum_requests"),
    "input_tokens": F("sum_input_tokens"),
    "output_tokens": F("sum_output_tokens"),
    "cache_read_tokens": F("sum_cache_read_tokens"),
    "cache_write_tokens": F("sum_cache_write_tokens"),
    "cache_write_1h_tokens": F("sum_cache_write_1h_tokens"),
    "cost": F("sum_cost"),
    "unpriced": F("sum_unpriced"),
    "latency": _ratio("sum_latency_ms_sum", "sum_latency_count"),
    "ttft": _ratio("sum_ttft_ms_sum", "sum_ttft_count"),
}
SORT_KEYS = ("name", *_SORT_EXPRESSIONS)
# The rollup columns each sort key's expression reads.
_SORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "error_rate": ("errors", "requests"), "latency": ("latency_ms_sum", "latency_count"),
    "ttft": ("ttft_ms_sum", "ttft_count"),
} | {key: (key,) for key in ("requests", "input_tokens", "output_tokens", "cache_read_tokens",
                              "cache_write_tokens", "cache_write_1h_tokens", "cost", "unpriced")}
DEFAULT_SORT = "-cost"


@dataclass(frozen=True)
class Figures:
    """Summed rollup columns, and the rates and averages they make. `cost` leaves out the `unpriced` calls
    (counted at 0): they and their `unpriced_tokens` are shown beside it, never silently added as free."""

    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    estimated: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # kept 5 minutes, or the provider's only duration
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal(0)
    unpriced: int = 0
    unpriced_tokens: int = 0
    latency_ms_sum: int = 0
    latency_count: int = 0
    ttft_ms_sum: int = 0
    ttft_count: int = 0

    @classmethod
    def from_sums(cls, values: dict[str, Any]) -> "Figures":
        figures = {name: values[f"sum_{name}"] for name in Rollup.SUM_FIELDS}
        # Sums of ten-place amounts have ten places; SQLite's may come back with more digits, all zeros.
        figures["cost"] = figures["cost"].quantize(COST_PLACES)
        return cls(**figures)

    @property
    def error_percent(self) -> float | None:
        """Errors per hundred requests."""
        return 100 * self.errors / self.requests if self.requests else None

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.latency_count if self.latency_count else None

    @property
    def avg_ttft_ms(self) -> float | None:
        return self.ttft_ms_sum / self.ttft_count if self.ttft_count else None


@dataclass(frozen=True)
class Group:
    """One row of a grouped table: what it is and its figures."""

    dimension: Dimension
    key: Any  # the filter value that selects this group (an id, a source, a day); None: no user or no key
    names: dict[str, str]  # the dimension's columns, e.g. {"provider": "openai", "model": "gpt-4.1"}
    figures: Figures

    @property
    def label(self) -> str:
        return self.dimension.label_of(self.key, self.names)


# -- the selection ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which rollup rows a dashboard shows and how it groups and sorts them."""

    range: DateRange
    provider: Provider | None = None
    model: Model | None = None
    user: User | None = None
    api_key: ApiKey | None = None
    source: str = ""
    team: Team | None = None
    tag: str = ""
    end_user: str = ""
    group: str = DEFAULT_GROUP
    sort: str = DEFAULT_SORT
    # "My usage": only this person's rows, whatever the other filters say.
    mine: User | None = field(default=None, compare=False)
    names: Names = field(default_factory=Names, compare=False, repr=False)

    def filters(self) -> dict[str, Any]:
        """The rollup columns this selection filters on, and their values."""
        filters: dict[str, Any] = {}
        if self.mine is not None:
            filters["user_id"] = self.mine.pk
        for name, column in FILTERS:
            value = getattr(self, name)
            if value not in (None, ""):
                filters[column] = getattr(value, "pk", value)
        return filters

    def rows(self, *columns: str) -> QuerySet[Rollup]:
        """The selection's rows, from the narrowest rollup table that has its filters' columns and
        `columns` (what the caller groups by)."""
        filters = self.filters()
        table = table_for([*filters, *columns])
        return table.objects.filter(day__gte=self.range.start, day__lte=self.range.end, **filters).order_by()

    def params(self, **changes: Any) -> dict[str, str]:
        """The query parameters that select this view, with `changes` applied: `range` a preset's key,
        the filters an object or its id, None to remove one. Defaults are left out, so links stay short."""
        values: dict[str, Any] = {"range": self.range.preset}
        if self.range.preset == CUSTOM:
            values |= {"from": self.range.start.isoformat(), "to": self.range.end.isoformat()}
        for name in _OBJECT_FILTERS:
            values[name] = getattr(self, name)
        values |= {"source": self.source, "tag": self.tag, "end_user": self.end_user, "group": self.group,
                   "sort": self.sort}
        if "range" in changes:
            values.pop("from", None), values.pop("to", None)
        values |= changes
        defaults = {"range": DEFAULT_PRESET, "group": DEFAULT_GROUP, "sort": DEFAULT_SORT}
        return {name: str(getattr(value, "pk", value)) for name, value in values.items()
                if value not in (None, "") and defaults.get(name) != value}

    def query(self, **changes: Any) -> str:
        """`?` and the urlencoded params(**changes)."""
        return "?" + urlencode(self.params(**changes))


def totals(selection: Selection) -> Figures:
    return Figures.from_sums(selection.rows().aggregate(**_SUMS))


def groups(selection: Selection, *, group: str | None = None, sort: str | None = None,
           limit: int | None = None, named: bool = False) -> list[Group]:
    """The selection's rows summed per group of `group` (default: the selection's), sorted by `sort`;
    `named`: leave out the group of rows without one (no user, no API key)."""
    dimension = DIMENSIONS[group or selection.group]
    sort = sort or selection.sort
    descending, key = sort.startswith("-"), sort.lstrip("-")
    rows = selection.rows(dimension.column)
    if named:
        rows = rows.filter(**{f"{dimension.column}__isnull": False})
    column = dimension.column
    if key != "name":
        expression = _SORT_EXPRESSIONS[key]
        # Ties and empty values in a stable order: a sort that moves rows between requests confuses.
        order = (expression.desc(nulls_last=True) if descending else expression.asc(nulls_last=True),
                 F(column).asc(nulls_last=True))
        if limit is not None and dimension.many:
            rows = _first_groups(rows, column, key, order, limit)
        else:
            rows = rows.values(column).annotate(**_SUMS).order_by(*order)
            rows = list(rows[:limit] if limit is not None else rows)
    else:
        rows = list(rows.values(column).annotate(**_SUMS))
    names = selection.names.of(dimension, [row[dimension.column] for row in rows if row[dimension.column] is not None])
    result = [Group(dimension, row[dimension.column], names.get(row[dimension.column], {}), Figures.from_sums(row))
              for row in rows]
    if key == "name":
        # Names live in other tables; sorted here, the empty group last.
        result.sort(key=lambda g: (g.key is None, g.label.casefold(), str(g.key)), reverse=False)
        if descending:
            result = [g for g in reversed(result) if g.key is not None] + [g for g in result if g.key is None]
        result = result[:limit] if limit is not None else result
    return result


def _first_groups(rows: QuerySet[Rollup], column: str, key: str, order: tuple, limit: int) -> list[dict[str, Any]]:
    """The first `limit` groups of `rows` by `column` in `order`, with every sum: the order's sums over every
    group first (one or two columns: a hash of thousands of groups stays small, where seventeen sums each
    spilled to disk at PostgreSQL's default work_mem), then every sum over the chosen groups' rows only."""
    needed = {f"sum_{name}" for name in _SORT_COLUMNS[key]}
    first = list(rows.values(column).annotate(**{name: _SUMS[name] for name in needed}).order_by(*order)[:limit])
    keys = [row[column] for row in first]
    chosen = Q(**{f"{column}__in": [k for k in keys if k is not None]})
    if None in keys:
        chosen |= Q(**{f"{column}__isnull": True})
    summed = {row[column]: row for row in rows.filter(chosen).values(column).annotate(**_SUMS)}
    return [summed[k] for k in keys]


@dataclass(frozen=True)
class Top:
    """A bar of a "top" chart: a group's cost and requests only, which is all a chart shows, and two sums
    to compute instead of every column's."""

    dimension: Dimension
    key: Any
    names: dict[str, str]
    cost: Decimal
    requests: int
    unpriced: int = 0  # calls without a price, which `cost` leaves out

    @property
    def label(self) -> str:
        return self.dimension.label_of(self.key, self.names)


def top(selection: Selection, group: str, *, limit: int = TOP, named: bool = False) -> list[Top]:
    """The `limit` most expensive groups of `group`; `named`: without the group of rows without one."""
    dimension = DIMENSIONS[group]
    # The group without one is left out after summing, not by `IS NOT NULL` on the rows: on the full table,
    # with a filter on another column (a team's keys), that condition led PostgreSQL to read the whole
    # api_key index (a third of a million entries) to AND it with the filter's few thousand rows.
    rows = list(selection.rows(dimension.column).values(dimension.column)
                .annotate(cost=Sum("cost"), requests=Sum("requests"), unpriced=Sum("unpriced"))
                .order_by(F("cost").desc(nulls_last=True), F(dimension.column).asc(nulls_last=True))
                [:limit + 1 if named else limit])
    if named:
        rows = [row for row in rows if row[dimension.column] is not None][:limit]
    names = selection.names.of(dimension, [row[dimension.column] for row in rows if row[dimension.column] is not None])
    return [Top(dimension, row[dimension.column], names.get(row[dimension.column], {}),
                row["cost"].quantize(COST_PLACES), row["requests"], row["unpriced"]) for row in rows]


def top_of(groups: list[Group], *, limit: int = TOP, named: bool = False) -> list[Top]:
    """`top` of groups already summed (the table's, when it is grouped the same way): the same bars in the
    same order, without summing the rows a second time."""
    chosen = [g for g in groups if g.key is not None or not named]
    chosen.sort(key=lambda g: (-g.figures.cost, g.key is None, g.key if g.key is not None else 0))
    return [Top(g.dimension, g.key, g.names, g.figures.cost, g.figures.requests, g.figures.unpriced)
            for g in chosen[:limit]]


@dataclass(frozen=True)
class DayActivity:
    """A day's requests, errors, latencies and calls without a price, summed over every provider."""

    requests: int = 0
    errors: int = 0
    latency_ms_sum: int = 0
    latency_count: int = 0
    unpriced: int = 0

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.latency_count if self.latency_count else None


# The sums of a (day, provider) row besides its cost, for DayActivity.
_ACTIVITY = ("requests", "errors", "latency_ms_sum", "latency_count", "unpriced")


@dataclass(frozen=True)
class DailySeries:
    """Cost per day per provider: the stacked chart's data; and each day's activity, the data of the
    requests and latency charts, from the same query."""

    days: list[date]
    providers: list[tuple[int | None, str]]  # (id, name), the most expensive first
    cost: dict[tuple[date, int | None], Decimal]
    activity: dict[date, DayActivity] = field(default_factory=dict)

    def day_total(self, day: date) -> Decimal:
        return sum((self.cost.get((day, pk), Decimal(0)) for pk, _ in self.providers), Decimal(0))

    def day_activity(self, day: date) -> DayActivity:
        return self.activity.get(day, DayActivity())

    def rows(self) -> list[tuple[date, list[Decimal], Decimal, int]]:
        """(day, cost per provider in `providers` order, the day's total, its calls without a price) for each
        day: the table alternative."""
        return [(day, [self.cost.get((day, pk), Decimal(0)) for pk, _ in self.providers], self.day_total(day),
                 self.day_activity(day).unpriced) for day in self.days]

    def activity_rows(self) -> list[tuple[date, DayActivity]]:
        return [(day, self.day_activity(day)) for day in self.days]


def daily_cost_by_provider(selection: Selection) -> DailySeries:
    rows = list(selection.rows("provider_id").values("day", "provider_id").annotate(
        cost=Sum("cost"), **{name: Sum(name) for name in _ACTIVITY}))
    cost = {(row["day"], row["provider_id"]): row["cost"] for row in rows}
    sums: dict[date, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_ACTIVITY, 0))
    for row in rows:
        for name in _ACTIVITY:
            sums[row["day"]][name] += row[name]
    activity = {day: DayActivity(**values) for day, values in sums.items()}
    names = {pk: n["provider"] for pk, n in selection.names.of(DIMENSIONS["provider"],
                                                               list({pk for _, pk in cost if pk is not None})).items()}
    by_total: dict[int | None, Decimal] = defaultdict(Decimal)
    for (_, pk), amount in cost.items():
        by_total[pk] += amount  # only to order the legend
    providers = sorted(((pk, names.get(pk, "—")) for pk in by_total), key=lambda p: (-by_total[p[0]], p[1]))
    return DailySeries(days=selection.range.days, providers=providers, cost=cost, activity=activity)


@dataclass(frozen=True)
class TeamTotal:
    team: Team
    figures: Figures


def team_totals(date_range: DateRange, teams: QuerySet[Team]) -> list[TeamTotal]:
    """Each of `teams`' totals over the range, everyone's calls in it summed (no one's calls apart): what a
    member sees of their teams."""
    chosen = list(teams.order_by("name"))
    rows = {row["team_id"]: Figures.from_sums(row) for row in (
        table_for(["team_id"]).objects.filter(day__gte=date_range.start, day__lte=date_range.end,
                                              team_id__in=[team.pk for team in chosen])
        .order_by().values("team_id").annotate(**_SUMS))}
    return [TeamTotal(team, rows.get(team.pk, Figures())) for team in chosen]
