"""The calls list, a call's page, the calls CSV and re-pricing. The dashboards are in dashboard_views.py."""

import csv
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from aspweb.money import usd
from aspweb.roles import ADMIN, FINANCE, MEMBER, has_role, role_required
from providers.models import Model, Price, PriceTier

from . import bodies, services, sources
from .forms import CallFilterForm, RepriceForm
from .models import CallBody, UsageRecord
from .pages import EXPORT_BATCH, Line, csv_cells, form_errors, parameter_errors
from .pricing import Rates, cost_breakdown, rates

CALLS_PER_PAGE = 50


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
    ("upstream_id", "upstream_id"),
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
        return HttpResponseBadRequest(f"Cannot export: {parameter_errors(form)}", content_type="text/plain")
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


async def _csv_stream(records: QuerySet[UsageRecord], reader: "_BodyReader | None" = None) -> AsyncIterator[str]:
    """An async generator, so that under ASGI Django streams it as it goes (a sync iterator would be read
    whole into memory first). Each batch is one keyset query on (created_at, id): no server-side cursor
    to keep open between batches, and no OFFSET that slows down as the export goes on."""
    writer = csv.writer(Line())
    yield writer.writerow([column for column, _ in CSV_COLUMNS] + list(reader.columns if reader else ()))
    after: tuple[datetime, int] | None = None
    while True:
        rows = await sync_to_async(_csv_batch)(records, after, reader is not None)
        if not rows:
            return
        yield "".join(writer.writerow(csv_cells(row[:_AT]) + (reader.cells(*row[_ID + 1:]) if reader else []))
                      for row in rows)
        after = rows[-1][_AT], rows[-1][_ID]


def _csv_batch(records: QuerySet[UsageRecord], after: tuple[datetime, int] | None,
               with_bodies: bool = False) -> list[tuple]:
    if after is not None:
        records = records.filter(created_at__gte=after[0]).exclude(created_at=after[0], id__lte=after[1])
    extra = ("user_id", "body__content") if with_bodies else ()
    return list(records.order_by("created_at", "id").values_list(*_FIELDS, "created_at", "id", *extra)
                [:EXPORT_BATCH])


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
