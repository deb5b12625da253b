"""The cost dashboards: everyone's (admins and finance) and each person's own, with their charts, grouped
tables and CSV exports."""

import csv
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from aspweb.money import money
from aspweb.roles import ADMIN, FINANCE, MEMBER, role_required

from . import charts, dashboards, forms
from .models import UsageRecord
from .pages import EXPORT_BATCH, Line, csv_cells, form_errors, parameter_errors

# -- cost dashboards ----------------------------------------------------------------------------

# The group table's columns, sortable: (sort key, heading).
DASHBOARD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("requests", "Requests"), ("error_rate", "Errors"), ("input_tokens", "Input, uncached"),
    ("output_tokens", "Output"),
    ("cache_read_tokens", "Cache read"), ("cache_write_tokens", "Cache write 5m"),
    ("cache_write_1h_tokens", "Cache write 1h"), ("cost", "Cost"), ("unpriced", "Without a price"),
    ("latency", "Avg latency"), ("ttft", "Avg TTFT"),
)


@role_required(ADMIN, FINANCE)
def dashboard(request: HttpRequest) -> HttpResponse:
    """Everyone's costs: totals, charts and a grouped, sortable table for a range of days."""
    return _dashboard(request, mine=None)


@role_required(ADMIN, FINANCE, MEMBER)
def my_usage(request: HttpRequest) -> HttpResponse:
    """The same dashboard over the signed-in person's own calls only."""
    return _dashboard(request, mine=request.user)


@role_required(ADMIN, FINANCE)
def dashboard_export(request: HttpRequest) -> HttpResponse:
    return _dashboard_export(request, mine=None)


@role_required(ADMIN, FINANCE, MEMBER)
def my_usage_export(request: HttpRequest) -> HttpResponse:
    return _dashboard_export(request, mine=request.user)


def _dashboard(request: HttpRequest, *, mine: Any) -> HttpResponse:
    form = forms.DashboardForm(request.GET, on=dashboards.today(), mine=mine)
    valid = form.is_valid()
    selection = form.selection() if valid else form.fallback()
    context: dict[str, Any] = {
        "form": form, "valid": valid, "selection": selection, "mine": mine is not None,
        "filter_fields": _filter_selects(form, selection.names),
        "time_zone": settings.TIME_ZONE, "form_errors": form_errors(form),
        "page_url": reverse("my_usage" if mine is not None else "dashboard"),
        "export_url": reverse("my_usage_export" if mine is not None else "dashboard_export"),
        "presets": [(label, selection.query(range=key), key == selection.range.preset)
                    for key, label in dashboards.PRESETS.items()],
    }
    if valid:
        context |= _dashboard_figures(selection, own_only=mine is not None)
        context["unpriced_url"] = reverse("call_list") + calls_query(selection, unpriced="true")
        if mine is not None:
            # Their teams' totals: everyone's calls in each team summed, no one's calls apart.
            context["team_totals"] = dashboards.team_totals(selection.range, mine.teams.all())
    # Back and forward after HTMX pushed a URL may ask for the whole page again (history restore).
    region = request.htmx and not request.htmx.history_restore_request
    return render(request, "usage/dashboard.html#dashboard" if region else "usage/dashboard.html", context,
                  status=200 if valid else 400)


def calls_query(selection: dashboards.Selection, **narrower: Any) -> str:
    """The calls list's (and its export's) query for exactly the calls a dashboard view counts: its days,
    its filters, on "My usage" the person's own, and `narrower` ones (a group's, `unpriced`)."""
    r = selection.range
    # `unpriced` first: the notice's link reads "unpriced=true&date_from=...".
    params: dict[str, Any] = {"unpriced": narrower.pop("unpriced")} if "unpriced" in narrower else {}
    params |= {"date_from": r.start.isoformat(), "date_to": r.end.isoformat()}
    for name in ("provider", "model", "user", "api_key", "team"):
        if getattr(selection, name) is not None:
            params[name] = getattr(selection, name).pk
    if selection.mine is not None:
        params["user"] = selection.mine.pk
    for name in ("source", "tag", "end_user"):
        if getattr(selection, name):
            params[name] = getattr(selection, name)
    return "?" + urlencode(params | narrower)


def _filter_selects(form: forms.DashboardForm, names: dashboards.Names) -> list[SafeString]:
    """The filter form's selects, written here from the page's (id, name) rows, which also name the table's
    and charts' groups: Django's widgets render a template per option, which for a few hundred people and
    keys costs more than every query of the page."""
    options: dict[str, tuple[str, Iterable[tuple[Any, str]]]] = {
        "provider": ("All providers", names.rows("provider")),
        "model": ("All models", ((pk, f"{provider}/{name}") for pk, provider, name in names.rows("model"))),
        "user": ("All users", names.rows("user") if "user" in form.fields else []),
        "api_key": ("All API keys", ((pk, f"{name} ({prefix}…)") for pk, name, prefix in names.rows("api_key"))),
        "source": ("All sources", UsageRecord.Source.choices),
        "team": ("All teams", names.rows("team")),
        "group": ("", form.fields["group"].choices),
    }
    selects = [_select(form[name], empty, choices) for name, (empty, choices) in options.items()
               if name in form.fields]
    texts = [_text_input(form[name], placeholder) for name, placeholder in
             (("tag", "any tag"), ("end_user", "any end user"))]
    return [*selects[:-1], *texts, selects[-1]]


def _text_input(field: Any, placeholder: str) -> SafeString:
    return format_html(
        '<span class="filter-pair"><label for="{}">{}</label><input type="text" name="{}" id="{}" value="{}" '
        'placeholder="{}" size="12"></span>',
        field.id_for_label, field.label, field.html_name, field.id_for_label, field.value() or "", placeholder)


def _select(field: Any, empty: str, choices: Iterable[tuple[Any, str]]) -> SafeString:
    current = str(field.value() or (dashboards.DEFAULT_GROUP if field.name == "group" else ""))
    first = format_html('<option value="">{}</option>', empty) if empty else ""
    # One f-string per option, escaped as format_html escapes (charts.text), which for some 800 options
    # (people, keys, models, teams) cost a fifth of the page's time through format_html.
    options = "".join(
        f'<option value="{charts.text(value)}"{" selected" if str(value) == current else ""}>{charts.text(label)}'
        f'</option>'
        for value, label in choices)
    return format_html(
        '<span class="filter-pair"><label for="{}">{}</label><select name="{}" id="{}">{}{}</select></span>',
        field.id_for_label, field.label, field.html_name, field.id_for_label, first,
        mark_safe(options),  # noqa: S308 - every value and label escaped above
    )


# The group table's rows on a page: the first ones in the table's order. A grouping by end user or tag can
# have thousands of groups, which no one reads on a page and which cost more to write out than every query of
# the page (docs/benchmarks.md); the CSV of the view has every group.
TABLE_ROWS = 200


def _dashboard_figures(selection: dashboards.Selection, *, own_only: bool) -> dict[str, Any]:
    r = selection.range
    span = r.start.isoformat() if r.start == r.end else f"{r.start.isoformat()} to {r.end.isoformat()}"
    daily = dashboards.daily_cost_by_provider(selection)
    # One more than is shown: whether there are more, without counting them.
    table = dashboards.groups(selection, limit=TABLE_ROWS + 1)
    more = len(table) > TABLE_ROWS
    table = table[:TABLE_ROWS]

    def top(group: str, *, named: bool = False) -> list[dashboards.Top]:
        # A chart by the table's own grouping takes its bars from the table's sums, when it has them all.
        if group == selection.group and not more:
            return dashboards.top_of(table, named=named)
        return dashboards.top(selection, group, named=named)

    models = top("model")
    users = [] if own_only else top("user")
    # Calls without a key (the playground, the CLI) are no API key's cost.
    keys = top("api_key", named=True)
    teams = top("team", named=True)
    drill = selection.group == "provider" and selection.provider is None
    rows = [(group, selection.query(provider=group.key, group="model", sort=None) if drill and group.key else "")
            for group in table]
    page_url = reverse("my_usage" if own_only else "dashboard")
    calls_url = reverse("call_list")
    headings = [(key, label, selection.query(sort=_next_sort(key, selection.sort)), _direction(key, selection.sort))
                for key, label in (("name", dashboards.DIMENSIONS[selection.group].label), *DASHBOARD_COLUMNS)]
    return {
        "span": span,
        "totals": dashboards.totals(selection),
        "daily": daily,
        "legend": [(charts.colour(i), name, selection.query(provider=pk, group="model", sort=None) if pk else "")
                   for i, (pk, name) in enumerate(daily.providers)],
        "daily_chart": charts.stacked_daily_cost(daily, title=f"Daily cost by provider, {span}"),
        **_daily_table_rows(daily),
        "requests_chart": charts.daily_requests(daily, title=f"Daily requests and errors, {span}"),
        "latency_chart": charts.daily_latency(daily, title=f"Daily average latency, {span}"),
        "models": models, "models_chart": _bars(models, f"Cost by model, {span}"),
        "users": users,
        "users_chart": "" if own_only else _bars(users, f"Top users by cost, {span}", charts.HALF_WIDTH),
        # Alone in its row on My usage (no top users there): drawn across the page, not enlarged from half.
        "keys": keys, "keys_chart": _bars(keys, f"Top API keys by cost, {span}",
                                          charts.WIDTH if own_only else charts.HALF_WIDTH),
        "teams": teams, "teams_chart": _bars(teams, f"Cost by team, {span}"),
        "rows": rows, "table_rows": _table_rows(rows, page_url, selection, calls_url), "headings": headings,
        "table_more": more, "table_limit": TABLE_ROWS,
        "drill": drill,
        "dimension": dashboards.DIMENSIONS[selection.group],
        "crumbs": [(str(selection.provider), selection.query(provider=None, model=None, group="provider",
                                                                 sort=None))] if selection.provider else [],
        "export_query": selection.query(),
    }


def group_calls_query(selection: dashboards.Selection, group: dashboards.Group) -> str:
    """The calls list's query for a group's calls: the view's, narrowed to the group; empty for the group
    of calls without a user or without a key, which the calls list cannot pick."""
    if group.key is None:
        return ""
    if group.dimension.name == "day":
        return calls_query(selection, date_from=group.key.isoformat(), date_to=group.key.isoformat())
    return calls_query(selection, **{group.dimension.name: group.key})


def _group_calls_queries(selection: dashboards.Selection) -> Callable[[dashboards.Group], str]:
    """group_calls_query for the groups of one table, with the view's part of the query encoded once rather
    than for each of up to 200 rows; the same text."""
    view = calls_query(selection)

    def of(group: dashboards.Group) -> str:
        name = group.dimension.name
        if group.key is None or name == "day" or getattr(selection, name) or (name == "user" and selection.mine):
            return group_calls_query(selection, group)  # a parameter the view's query has already
        return f"{view}&{urlencode({name: group.key})}"
    return of


def _table_rows(rows: list[tuple[dashboards.Group, str]], page_url: str, selection: dashboards.Selection,
                calls_url: str) -> SafeString:
    """The group table's rows, written here rather than by the template: a row is a dozen cells through
    filters, and a table of 500 people rendered by the template engine cost more than every query of
    the page. Names are escaped; every other cell is digits this writes itself. The last cell opens the
    group's calls in the calls list."""
    lines = []
    calls_of = _group_calls_queries(selection)
    for group, drill in rows:
        f, label = group.figures, escape(group.label)
        name = f'<a href="{escape(page_url + drill)}">{label}</a>' if drill else label
        query = calls_of(group)
        calls = (f'<a class="calls-link" href="{escape(calls_url + query)}" hx-boost="false">Calls'
                 f'<span class="visually-hidden"> of {label}</span></a>') if query else ""
        errors = "—" if f.error_percent is None else f"{_places(f.error_percent, '0.1')}&nbsp;%"
        latency = "—" if f.avg_latency_ms is None else f"{_places(f.avg_latency_ms, '1'):,}&nbsp;ms"
        ttft = "—" if f.avg_ttft_ms is None else f"{_places(f.avg_ttft_ms, '1'):,}&nbsp;ms"
        lines.append(
            f'<tr><td>{name}</td><td class="num">{f.requests:,}</td><td class="num">{errors}</td>'
            f'<td class="num">{f.input_tokens:,}</td><td class="num">{f.output_tokens:,}</td>'
            f'<td class="num">{f.cache_read_tokens:,}</td><td class="num">{f.cache_write_tokens:,}</td>'
            f'<td class="num">{f.cache_write_1h_tokens:,}</td><td class="num">{_cost_cell(f)}</td>'
            f'<td class="num">{_unpriced_cell(f)}</td><td class="num">{latency}</td><td class="num">{ttft}</td>'
            f'<td>{calls}</td></tr>\n'
        )
    return mark_safe("".join(lines))  # noqa: S308 - every name escaped above


def _daily_table_rows(daily: dashboards.DailySeries) -> dict[str, SafeString]:
    """The rows of the three daily tables under the charts (cost per provider, requests and errors, average
    latency), written here as the group table's are: some 300 cells through template filters cost a
    quarter of the page's time. Every cell is digits, a date or money this writes itself."""
    cost, requests, latency = [], [], []
    for day, costs, total, unpriced in daily.rows():
        badge = (f' <span class="badge warn" title="Leaves out {unpriced:,} call{"" if unpriced == 1 else "s"} '
                 f'without a price">+&nbsp;unpriced</span>') if unpriced else ""
        cells = "".join(f'<td class="num">{money(amount)}</td>' for amount in costs)
        cost.append(f'<tr><td>{day.isoformat()}</td>{cells}<td class="num">{money(total)}{badge}</td></tr>\n')
    for day, a in daily.activity_rows():
        requests.append(f'<tr><td>{day.isoformat()}</td><td class="num">{a.requests:,}</td>'
                        f'<td class="num">{a.errors:,}</td></tr>\n')
        average = "—" if a.avg_latency_ms is None else f"{_places(a.avg_latency_ms, '1'):,}&nbsp;ms"
        latency.append(f'<tr><td>{day.isoformat()}</td><td class="num">{average}</td>'
                       f'<td class="num">{a.latency_count:,}</td></tr>\n')
    return {name: mark_safe("".join(lines))  # noqa: S308 - digits, dates and amounts only
            for name, lines in (("daily_cost_rows", cost), ("daily_requests_rows", requests),
                                ("daily_latency_rows", latency))}


def _cost_cell(f: dashboards.Figures) -> str:
    """A group's cost; where it leaves calls without a price out, marked so, never a bare "$0.00"."""
    if not f.unpriced:
        return money(f.cost)
    return (f'{money(f.cost)} <span class="badge warn" title="Leaves out {charts.calls(f.unpriced)} without a price">'
            f'+&nbsp;unpriced</span>')


def _unpriced_cell(f: dashboards.Figures) -> str:
    """A group's calls without a price and their tokens, which its cost leaves out; a dash when none."""
    if not f.unpriced:
        return "—"
    calls = "1&nbsp;call" if f.unpriced == 1 else f"{f.unpriced:,}&nbsp;calls"
    return f'<span class="warn">{calls}</span><br><small>{f.unpriced_tokens:,}&nbsp;tokens</small>'


def _places(value: float, unit: str) -> Decimal:
    """`value` rounded as the floatformat filter rounds it: half away from zero, of its shortest repr."""
    return Decimal(repr(value)).quantize(Decimal(unit), ROUND_HALF_UP)


def _next_sort(key: str, current: str) -> str:
    """A heading's link: the current column flips; another starts with the largest, names with A."""
    if key == current.lstrip("-"):
        return key if current.startswith("-") else f"-{key}"
    return key if key == "name" else f"-{key}"


def _direction(key: str, current: str) -> str:
    """aria-sort of a heading: empty unless the table is sorted by it."""
    if key != current.lstrip("-"):
        return ""
    return "descending" if current.startswith("-") else "ascending"


def _bars(groups: list[dashboards.Top], title: str, width: int = charts.WIDTH) -> SafeString:
    return charts.bar_chart([
        charts.Bar(g.label, g.cost, f"{g.label}: {money(g.cost)} in {g.requests:,} requests"
                   + charts.unpriced_note(g.unpriced), g.unpriced)
        for g in groups
    ], title=title, width=width)


# (column, value of a group's figures) in the CSV of a dashboard view, after the group's own columns
# (dashboards.Dimension.columns). Documented in the README's "Cost dashboards" section.
DASHBOARD_CSV_COLUMNS: tuple[tuple[str, Callable[[dashboards.Figures], Any]], ...] = (
    ("requests", lambda f: f.requests),
    ("errors", lambda f: f.errors),
    ("cancelled", lambda f: f.cancelled),
    ("estimated", lambda f: f.estimated),
    ("input_tokens", lambda f: f.input_tokens),
    ("cache_read_tokens", lambda f: f.cache_read_tokens),
    ("cache_write_tokens", lambda f: f.cache_write_tokens),
    ("cache_write_1h_tokens", lambda f: f.cache_write_1h_tokens),
    ("output_tokens", lambda f: f.output_tokens),
    ("reasoning_tokens", lambda f: f.reasoning_tokens),
    ("cost_usd", lambda f: f.cost),
    ("unpriced", lambda f: f.unpriced),
    ("unpriced_tokens", lambda f: f.unpriced_tokens),
    ("avg_latency_ms", lambda f: _rounded(f.avg_latency_ms)),
    ("avg_ttft_ms", lambda f: _rounded(f.avg_ttft_ms)),
)


def _rounded(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(value).quantize(Decimal("0.1"))


def _dashboard_export(request: HttpRequest, *, mine: Any) -> HttpResponse:
    """The current view's group table as CSV: the same range, filters, grouping and order, streamed."""
    form = forms.DashboardForm(request.GET, on=dashboards.today(), mine=mine)
    if not form.is_valid():
        return HttpResponseBadRequest(f"Cannot export: {parameter_errors(form)}", content_type="text/plain")
    selection = form.selection()
    r = selection.range
    group = selection.group.replace("_", "-")
    name = f"aspweb-{'my-usage' if mine is not None else 'costs'}-by-{group}-{r.start}-{r.end}.csv"
    response = StreamingHttpResponse(_dashboard_csv(selection), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


async def _dashboard_csv(selection: dashboards.Selection) -> AsyncIterator[str]:
    """An async generator, as for the raw records: the groups are one aggregate query (as many rows as
    there are providers, users, keys...), written out in slices."""
    writer = csv.writer(Line())
    own = dashboards.DIMENSIONS[selection.group].columns
    yield writer.writerow([*own, *(column for column, _ in DASHBOARD_CSV_COLUMNS)])
    groups = await sync_to_async(dashboards.groups)(selection)
    for start in range(0, len(groups), EXPORT_BATCH):
        yield "".join(
            writer.writerow(csv_cells([g.names.get(column) for column in own]
                                       + [value(g.figures) for _, value in DASHBOARD_CSV_COLUMNS]))
            for g in groups[start:start + EXPORT_BATCH]
        )
