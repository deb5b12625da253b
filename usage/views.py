import csv
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from aspweb.money import money, usd
from aspweb.roles import ADMIN, FINANCE, MEMBER, has_role, role_required
from providers.models import Model, Price, PriceTier

from . import bodies, charts, dashboards, services, sources
from .forms import CallFilterForm, RepriceForm
from .models import CallBody, UsageRecord
from .pricing import Rates, cost_breakdown, rates

CALLS_PER_PAGE = 50
EXPORT_BATCH = 2000


def _records_for(user: Any, *, everyone: bool) -> QuerySet[UsageRecord]:
    records = UsageRecord.objects.all()
    return records if everyone else records.filter(user=user)


def _sees_all_calls(user: Any) -> bool:
    """Admins and Finance list, open and export everyone's calls (Finance answers for every cost the
    dashboards show); members only their own."""
    return has_role(user, ADMIN, FINANCE)


def body_readable(user: Any, record: UsageRecord) -> bool:
    """Whether `user` may read the call's logged prompt and answer: admins, and the call's owner; nobody else
    (Finance sees every call's cost, not what people asked)."""
    return has_role(user, ADMIN) or (record.user_id is not None and record.user_id == user.pk)


def form_errors(form: Any) -> list[str]:
    """A form's errors in the words of the page: each field by its label ("From: Enter a valid date."),
    never by its internal name (`date_from`)."""
    lines = []
    for name, errors in form.errors.items():
        label = form[name].label if name in form.fields else ""
        lines += [f"{label}: {e}" if label else e for e in errors]
    return lines


def _parameter_errors(form: Any) -> str:
    """A form's errors for someone who wrote the URL: each field by its query parameter ("from")."""
    return "; ".join(
        f'parameter "{form.add_prefix(name)}": {" ".join(errors)}' if name in form.fields else " ".join(errors)
        for name, errors in form.errors.items())


@role_required(ADMIN, FINANCE, MEMBER)
def call_list(request: HttpRequest) -> HttpResponse:
    """Recent calls, newest first: admins and finance see everyone's, members their own."""
    sees_all = _sees_all_calls(request.user)
    form = CallFilterForm(request.GET, with_user=sees_all, owner=request.user)
    records = _records_for(request.user, everyone=sees_all)
    records = form.filter(records) if form.is_valid() else records.none()
    try:
        number = max(1, int(request.GET.get("page", 1)))
    except ValueError:
        number = 1
    # One row past the page says whether there is another, without counting a table of millions.
    start = (number - 1) * CALLS_PER_PAGE
    rows = list(records.select_related("user").order_by("-created_at", "-id")[start:start + CALLS_PER_PAGE + 1])
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form, "calls": rows[:CALLS_PER_PAGE], "page": number, "has_next": len(rows) > CALLS_PER_PAGE,
        "query": query.urlencode(), "sees_all": sees_all, "form_errors": form_errors(form),
    }
    if request.htmx:
        return render(request, "usage/call_list.html#results", context)
    return render(request, "usage/call_list.html", context)


@role_required(ADMIN, FINANCE, MEMBER)
def call_detail(request: HttpRequest, request_id: UUID) -> HttpResponse:
    """One call: its tokens per class at the rate it paid and what each class cost, and where the provider
    reported a charge, that charge and aspweb's computation side by side, saying which is the call's cost."""
    records = _records_for(request.user, everyone=_sees_all_calls(request.user))
    record = get_object_or_404(records.select_related("user", "api_key", "team", "price", "provider")
                               .prefetch_related("price__tiers"), request_id=request_id)
    applied = rates(record.price, record.prompt_tokens) if record.price else None
    readable = body_readable(request.user, record)
    return render(request, "usage/call_detail.html", {
        "call": record,
        # Every view of a body is audited (call_body_read).
        "body": services.call_body_read(record=record, viewer=request.user) if readable else None,
        "body_withheld": not readable and CallBody.objects.filter(record=record).exists(),
        "conversation_url": sources.link_for(record, request.user),
        "classes": _token_classes(record, applied),
        "tier_above": applied.tier_above if applied else None,
        "reported_is_cost": _reported_is_cost(record),
        "difference": _signed_usd(record.cost_difference) if record.cost_difference is not None else "",
    })


@dataclass(frozen=True)
class TokenClass:
    """A row of a call's page: a token class, its count, the rate per 1M tokens it paid and its cost (both
    None without a price), and where an empty cache price fell back to another, which one."""

    label: str
    tokens: int
    rate: Decimal | None
    cost: Decimal | None
    fallback: str = ""


# (token class, label, the record's count of it)
_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("input", "Input (uncached)", "input_tokens"),
    ("cache_read", "Cache read", "cache_read_tokens"),
    ("cache_write", "Cache write, kept 5 minutes", "cache_write_tokens"),
    ("cache_write_1h", "Cache write, kept 1 hour", "cache_write_1h_tokens"),
    ("output", "Output, reasoning included", "output_tokens"),
)


def _token_classes(record: UsageRecord, applied: Rates | None) -> list[TokenClass]:
    if applied is None:
        return [TokenClass(label, getattr(record, count), None, None) for _, label, count in _CLASSES]
    costs = cost_breakdown(record, record.price)
    # The prices that were applied, as set: the tier the prompt selected, or the version's base prices.
    prices = next((t for t in record.price.tier_list if t.above == applied.tier_above), record.price)
    return [TokenClass(label, getattr(record, count), getattr(applied, name), costs[name], _fallback(prices, name))
            for name, label, count in _CLASSES]


def _fallback(prices: Price | PriceTier, name: str) -> str:
    """The price an empty cache price stands for (see providers.models.Price), so the page explains a rate
    that was never set."""
    if name in ("input", "output") or getattr(prices, name) is not None:
        return ""
    if name == "cache_write_1h" and prices.cache_write is not None:
        return "the 5-minute write price"
    return "the input price"


def _reported_is_cost(record: UsageRecord) -> bool:
    """Whether the provider's reported charge is the call's cost: the provider is the billing party
    (OpenRouter, the Claude CLI) and reported one, and the answer did not come from the gateway's cache."""
    return (record.reported_cost is not None and not record.cached and record.provider is not None
            and record.provider.kind_preset.bills_reported_cost)


# -- CSV export of raw records ------------------------------------------------------------------

# (column, field). Documented in the README's "CSV columns" table.
CSV_COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_id", "request_id"),
    ("started_at_utc", "created_at"),
    ("user", "user__email"),
    ("api_key", "api_key__prefix"),
    ("team", "team__name"),
    ("tags", "tags"),
    ("end_user", "end_user"),
    ("source", "source"),
    ("provider", "provider_name"),
    ("model", "model_name"),
    ("status", "status"),
    ("error_kind", "error_kind"),
    ("error_message", "error_message"),
    ("finish_reason", "finish_reason"),
    ("input_tokens", "input_tokens"),
    ("cache_read_tokens", "cache_read_tokens"),
    ("cache_write_tokens", "cache_write_tokens"),
    ("cache_write_1h_tokens", "cache_write_1h_tokens"),
    ("output_tokens", "output_tokens"),
    ("reasoning_tokens", "reasoning_tokens"),
    ("usage_estimated", "usage_estimated"),
    ("cost_usd", "cost"),
    ("computed_cost_usd", "computed_cost"),
    ("unpriced", "unpriced"),
    ("price_effective_from_utc", "price__effective_from"),
    ("reported_cost_usd", "reported_cost"),
    ("latency_ms", "latency_ms"),
    ("ttft_ms", "ttft_ms"),
    ("attempts", "attempts"),
    ("cached", "cached"),
)
_FIELDS = [field for _, field in CSV_COLUMNS]
_AT, _ID = len(_FIELDS), len(_FIELDS) + 1  # the keyset columns appended to each row


@role_required(ADMIN, FINANCE, MEMBER)
def call_export(request: HttpRequest) -> HttpResponse:
    """Raw records as CSV, oldest first, streamed in batches: admins and finance export everyone's
    calls, members their own. Logged prompts and answers only when asked for (`bodies=1`), and only those the
    exporter may read (body_readable); such an export is audited."""
    exports_all = _sees_all_calls(request.user)
    form = CallFilterForm(request.GET, with_user=exports_all, owner=request.user)
    if not form.is_valid():
        return HttpResponseBadRequest(f"Cannot export: {_parameter_errors(form)}", content_type="text/plain")
    records = form.filter(_records_for(request.user, everyone=exports_all))
    data = form.cleaned_data
    span = "-".join(d.isoformat() for d in (data["date_from"], data["date_to"]) if d) or "all"
    with_bodies = request.GET.get("bodies") == "1"
    if with_bodies:
        services.call_bodies_exported(viewer=request.user, query=request.GET.urlencode())
    reader = _BodyReader(request.user) if with_bodies else None
    response = StreamingHttpResponse(_csv_stream(records, reader), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="aspweb-calls-{span}.csv"'
    return response


class _BodyReader:
    """The body cells of an export with bodies: a call's prompt and answer as JSON, where the exporter may read
    them (body_readable), else empty."""

    columns = ("prompt_json", "answer_json")

    def __init__(self, user: Any) -> None:
        self.user_id, self.reads_all = user.pk, has_role(user, ADMIN)

    def cells(self, user_id: int | None, content: Any) -> list[str]:
        if not content or not (self.reads_all or (user_id is not None and user_id == self.user_id)):
            return ["", ""]
        body = bodies.read(content)
        return [json.dumps(body.get(side) or {}, ensure_ascii=False) for side in ("request", "answer")]


class _Line:
    """csv.writer's file: hands back each line instead of storing it."""

    def write(self, line: str) -> str:
        return line


async def _csv_stream(records: QuerySet[UsageRecord], reader: "_BodyReader | None" = None) -> AsyncIterator[str]:
    """An async generator, so that under ASGI Django streams it as it goes (a sync iterator would be read
    whole into memory first). Each batch is one keyset query on (created_at, id): no server-side cursor
    to keep open between batches, and no OFFSET that slows down as the export goes on."""
    writer = csv.writer(_Line())
    yield writer.writerow([column for column, _ in CSV_COLUMNS] + list(reader.columns if reader else ()))
    after: tuple[datetime, int] | None = None
    while True:
        rows = await sync_to_async(_csv_batch)(records, after, reader is not None)
        if not rows:
            return
        yield "".join(writer.writerow(_csv_cells(row[:_AT]) + (reader.cells(*row[_ID + 1:]) if reader else []))
                      for row in rows)
        after = rows[-1][_AT], rows[-1][_ID]


def _csv_batch(records: QuerySet[UsageRecord], after: tuple[datetime, int] | None,
               with_bodies: bool = False) -> list[tuple]:
    if after is not None:
        records = records.filter(created_at__gte=after[0]).exclude(created_at=after[0], id__lte=after[1])
    extra = ("user_id", "body__content") if with_bodies else ()
    return list(records.order_by("created_at", "id").values_list(*_FIELDS, "created_at", "id", *extra)
                [:EXPORT_BATCH])


def _csv_cells(row: Iterable[Any]) -> list[str]:
    return [_csv_cell(value) for value in row]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")  # never 1E-7
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    text = str(value)
    # A cell starting like a formula would run as one in a spreadsheet (provider messages, names).
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


# -- re-pricing ---------------------------------------------------------------------------------


@role_required(ADMIN)
def usage_reprice(request: HttpRequest, pk: int) -> HttpResponse:
    """GET with a range: the difference a re-pricing would make (a dry run). POST: do it."""
    model = get_object_or_404(Model.objects.select_related("provider"), pk=pk)
    form = RepriceForm(request.POST if request.method == "POST" else (request.GET or None))
    preview = None
    if form.is_valid():
        since, until = form.range()
        if request.method == "POST":
            result = services.usage_reprice(model=model, since=since, until=until, actor=request.user)
            messages.success(request, f"Re-priced {result.changed} of {result.records} calls: "
                                      f"{usd(result.old_total, 10)} became {usd(result.new_total, 10)} "
                                      f"(difference {_signed_usd(result.delta)}).")
            return redirect("model_detail", pk=model.pk)
        preview = services.usage_reprice(model=model, since=since, until=until, actor=request.user, dry_run=True)
    return render(request, "usage/reprice.html", {
        "model": model, "provider": model.provider, "form": form, "preview": preview,
        "delta": _signed_usd(preview.delta) if preview else "",
        "prices": model.prices.prefetch_related("tiers").order_by("-effective_from", "-id"), "now": timezone.now(),
    })


def _signed_usd(amount: Decimal) -> str:
    return ("+" if amount >= 0 else "-") + usd(abs(amount), 10)


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
    form = dashboards.DashboardForm(request.GET, on=dashboards.today(), mine=mine)
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


def _filter_selects(form: dashboards.DashboardForm, names: dashboards.Names) -> list[SafeString]:
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
    return format_html(
        '<span class="filter-pair"><label for="{}">{}</label><select name="{}" id="{}">{}{}</select></span>',
        field.id_for_label, field.label, field.html_name, field.id_for_label, first,
        format_html_join("", "{}", ((
            format_html('<option value="{}" selected>{}</option>', value, label) if str(value) == current
            else format_html('<option value="{}">{}</option>', value, label),) for value, label in choices)),
    )


def _dashboard_figures(selection: dashboards.Selection, *, own_only: bool) -> dict[str, Any]:
    r = selection.range
    span = r.start.isoformat() if r.start == r.end else f"{r.start.isoformat()} to {r.end.isoformat()}"
    daily = dashboards.daily_cost_by_provider(selection)
    table = dashboards.groups(selection)

    def top(group: str, *, named: bool = False) -> list[dashboards.Top]:
        # A chart by the table's own grouping takes its bars from the table's sums.
        if group == selection.group:
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


def _table_rows(rows: list[tuple[dashboards.Group, str]], page_url: str, selection: dashboards.Selection,
                calls_url: str) -> SafeString:
    """The group table's rows, written here rather than by the template: a row is a dozen cells through
    filters, and a table of 500 people rendered by the template engine cost more than every query of
    the page. Names are escaped; every other cell is digits this writes itself. The last cell opens the
    group's calls in the calls list."""
    lines = []
    for group, drill in rows:
        f, label = group.figures, escape(group.label)
        name = f'<a href="{escape(page_url + drill)}">{label}</a>' if drill else label
        query = group_calls_query(selection, group)
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
    form = dashboards.DashboardForm(request.GET, on=dashboards.today(), mine=mine)
    if not form.is_valid():
        return HttpResponseBadRequest(f"Cannot export: {_parameter_errors(form)}", content_type="text/plain")
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
    writer = csv.writer(_Line())
    own = dashboards.DIMENSIONS[selection.group].columns
    yield writer.writerow([*own, *(column for column, _ in DASHBOARD_CSV_COLUMNS)])
    groups = await sync_to_async(dashboards.groups)(selection)
    for start in range(0, len(groups), EXPORT_BATCH):
        yield "".join(
            writer.writerow(_csv_cells([g.names.get(column) for column in own]
                                       + [value(g.figures) for _, value in DASHBOARD_CSV_COLUMNS]))
            for g in groups[start:start + EXPORT_BATCH]
        )
