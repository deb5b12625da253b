"""The providers' own usage and cost reports, fetched for one UTC day and added up per model.

Wire formats, from the providers' documentation:
- OpenAI (organisation admin key, `Authorization: Bearer sk-admin-...`):
  `GET /v1/organization/usage/completions?start_time=&end_time=&bucket_width=1d&group_by=model&group_by=api_key_id
  &api_key_ids=&project_ids=&page=` answers `{"object": "page", "data": [{"object": "bucket", "start_time",
  "end_time", "results": [{"object": "organization.usage.completions.result", "input_tokens" (cached and
  cache-written ones included), "input_cached_tokens", "input_cache_write_tokens" and "input_uncached_tokens"
  (the newer schema), "output_tokens", "num_model_requests", "model", "api_key_id", "project_id"}]}],
  "has_more", "next_page"}` (`result` instead of `results` in OpenAI's field reference);
  `GET /v1/organization/costs` the same page of buckets whose results are `{"object":
  "organization.costs.result", "amount": {"value", "currency"}, "line_item", "project_id"}`, grouped by
  `line_item` and `project_id` only (a line item reads "gpt-4o-2024-08-06, input").
- Anthropic (Admin API key, `x-api-key: sk-ant-admin...`, `anthropic-version: 2023-06-01`):
  `GET /v1/organizations/usage_report/messages?starting_at=&ending_at=&bucket_width=1d&group_by[]=model
  &group_by[]=api_key_id&api_key_ids[]=&workspace_ids[]=&page=` answers `{"data": [{"starting_at",
  "ending_at", "results": [{"uncached_input_tokens", "cache_read_input_tokens", "cache_creation":
  {"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}, "output_tokens", "model", "api_key_id",
  "workspace_id"}]}], "has_more", "next_page"}`; no request count. `GET /v1/organizations/cost_report`
  (`group_by[]=description`, `group_by[]=workspace_id`) answers results with `"amount"`, a decimal string in
  cents, `"currency"`, `"model"`, `"token_type"` and `"workspace_id"`; it cannot be split per API key.
- OpenRouter (the provider's own API key, `Authorization: Bearer sk-or-...`): no organisation report, but each
  generation's stats, `GET /api/v1/generation?id=gen-...`, answering `{"data": {"id", "total_cost" (USD),
  "cache_discount", "upstream_inference_cost", "is_byok", "created_at", "model", "tokens_prompt",
  "tokens_completion", "native_tokens_prompt", "native_tokens_completion", "native_tokens_reasoning",
  "native_tokens_cached", "usage", "cancelled", ...}}`; an unknown id is a 404, errors are `{"error":
  {"code", "message", "metadata"}}`. Native counts are the model's own tokenizer's, as the usage in its
  answers; prompt tokens include the cached ones; completion tokens include reasoning. Cache writes are not
  counted apart.

Days are UTC and daily buckets (`bucket_width=1d`); a range of days is fetched in one run of pages. OpenRouter's
days are the generations of aspweb's own calls, looked up one by one (`openrouter`).
Token usage is restricted to aspweb's key where the credential names it; cost only to a project (OpenAI) or
workspace (Anthropic). Where a key is named but no project or workspace, the cost cannot be told apart from
other applications' and is left out (`cost_scope` says so).
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from django.conf import settings

from aspweb import outbound

ANTHROPIC_VERSION = "2023-06-01"
# A bound on pages of one day's report: a server that keeps answering has_more must not loop forever.
MAX_PAGES = 200
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def model_key(name: str) -> str:
    """A model's name without its snapshot date: providers report "gpt-4o-mini-2024-07-18" for calls to
    "gpt-4o-mini", and "claude-sonnet-4-5-20250929" for "claude-sonnet-4-5"."""
    return _SNAPSHOT.sub("", name.strip().lower())


class ReportError(Exception):
    """A report could not be fetched. `retryable`: down, timed out or rate-limited, try again later; else the
    credential is wrong or revoked, or the answer was not a report. The message is plain words, never the key."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class Figures:
    """One model's day at the provider, tokens per class as aspweb's ledger counts them (uncached input
    apart from cache reads and writes; reasoning inside output)."""

    requests: int | None = None
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal | None = None
    names: set[str] = field(default_factory=set)

    def add_cost(self, amount: Decimal) -> None:
        self.cost = (self.cost or Decimal(0)) + amount


@dataclass
class Report:
    """One day's report: figures per model key, what the cost figure covers, and anything the day's verdict
    should say besides (`note`)."""

    models: dict[str, Figures]
    cost_scope: str
    note: str = ""


@dataclass
class Credential:
    """What a report needs, decrypted only for the request."""

    kind: str
    base_url: str
    admin_key: str
    api_key_id: str = ""
    project_id: str = ""


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def fetch(credential: Credential, since: date, until: date) -> dict[date, Report]:
    """The reports of the UTC days `since` to `until` (both included), every day present, fetched in one
    run of pages per endpoint (daily buckets, several to a page)."""
    if credential.kind == "openai":
        fetcher = _openai
    elif credential.kind == "anthropic":
        fetcher = _anthropic
    else:
        raise ReportError(f"aspweb cannot read {credential.kind} usage reports.", retryable=False)
    scope = _cost_scope(credential, "project" if credential.kind == "openai" else "workspace")
    days: dict[date, Report] = {}
    day = since
    while day <= until:
        days[day] = Report(models={}, cost_scope=scope)
        day += timedelta(days=1)
    fetcher(credential, since, until, days)
    return days


def _figures(days: dict[date, Report], day: date | None, name: str) -> Figures | None:
    """The figures of `name` on `day`; None for a bucket outside the days asked for."""
    if day not in days:
        return None
    figures = days[day].models.setdefault(model_key(name), Figures())
    figures.names.add(name)
    return figures


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _decimal(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ReportError("The provider's cost report held an amount that is not a number.",
                          retryable=False) from None
    if not amount.is_finite():
        raise ReportError("The provider's cost report held an amount that is not a number.", retryable=False)
    return amount


# -- OpenAI -----------------------------------------------------------------------------------------


def _openai(credential: Credential, since: date, until: date, days: dict[date, Report]) -> None:
    start, end = day_bounds(since)[0], day_bounds(until)[1]
    base = credential.base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {credential.admin_key}"}
    window = {"start_time": int(start.timestamp()), "end_time": int(end.timestamp()), "bucket_width": "1d"}
    params: dict[str, Any] = {**window, "group_by": ["model", "api_key_id", "project_id"]}
    if credential.api_key_id:
        params["api_key_ids"] = [credential.api_key_id]
    if credential.project_id:
        params["project_ids"] = [credential.project_id]
    for day, result in _results(base + "/organization/usage/completions", params, headers, _unix_day):
        if not _ours(result, credential, workspace_field="project_id"):
            continue
        figures = _figures(days, day, str(result.get("model") or "unknown"))
        if figures is None:
            continue
        input_tokens, cached = _int(result.get("input_tokens")), _int(result.get("input_cached_tokens"))
        writes = _int(result.get("input_cache_write_tokens"))
        uncached = result.get("input_uncached_tokens")
        figures.requests = (figures.requests or 0) + _int(result.get("num_model_requests"))
        # `input_tokens` counts cached and cache-written tokens too; `input_uncached_tokens` (the newer schema)
        # is the rest, else it is worked out.
        figures.input_tokens += _int(uncached) if uncached is not None else max(input_tokens - cached - writes, 0)
        figures.cache_read_tokens += cached
        figures.cache_write_tokens += writes
        figures.output_tokens += _int(result.get("output_tokens"))
    if not _cost_scope(credential, "project"):
        return
    cost_params: dict[str, Any] = {**window, "group_by": ["line_item", "project_id"]}
    if credential.project_id:
        cost_params["project_ids"] = [credential.project_id]
    for day, result in _results(base + "/organization/costs", cost_params, headers, _unix_day):
        if credential.project_id and result.get("project_id") not in (None, credential.project_id):
            continue
        amount = result.get("amount") or {}
        line_item = str(result.get("line_item") or "")
        # "gpt-4o-2024-08-06, input": the model, then the token class it bills.
        figures = _figures(days, day, line_item.rsplit(", ", 1)[0] if ", " in line_item else line_item or "unknown")
        if figures is not None:
            figures.add_cost(_decimal(amount.get("value", 0)))


def _unix_day(bucket: dict[str, Any]) -> date | None:
    value = bucket.get("start_time")
    return datetime.fromtimestamp(value, UTC).date() if isinstance(value, int) else None


# -- Anthropic --------------------------------------------------------------------------------------


def _anthropic(credential: Credential, since: date, until: date, days: dict[date, Report]) -> None:
    start, end = day_bounds(since)[0], day_bounds(until)[1]
    base = credential.base_url.rstrip("/")
    headers = {"x-api-key": credential.admin_key, "anthropic-version": ANTHROPIC_VERSION}
    window = {"starting_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "ending_at": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "bucket_width": "1d"}
    params: dict[str, Any] = {**window, "group_by[]": ["model", "api_key_id", "workspace_id"]}
    if credential.api_key_id:
        params["api_key_ids[]"] = [credential.api_key_id]
    if credential.project_id:
        params["workspace_ids[]"] = [credential.project_id]
    for day, result in _results(base + "/v1/organizations/usage_report/messages", params, headers, _rfc3339_day):
        if not _ours(result, credential, workspace_field="workspace_id"):
            continue
        figures = _figures(days, day, str(result.get("model") or "unknown"))
        if figures is None:
            continue
        writes = result.get("cache_creation") or {}
        figures.input_tokens += _int(result.get("uncached_input_tokens"))
        figures.cache_read_tokens += _int(result.get("cache_read_input_tokens"))
        figures.cache_write_tokens += _int(writes.get("ephemeral_5m_input_tokens"))
        figures.cache_write_1h_tokens += _int(writes.get("ephemeral_1h_input_tokens"))
        figures.output_tokens += _int(result.get("output_tokens"))
    if not _cost_scope(credential, "workspace"):
        return
    cost_params = {**window, "group_by[]": ["description", "workspace_id"]}
    for day, result in _results(base + "/v1/organizations/cost_report", cost_params, headers, _rfc3339_day):
        if credential.project_id and result.get("workspace_id") != credential.project_id:
            continue
        if not result.get("model"):
            continue  # web search and code execution: no model of the ledger's to put them against
        figures = _figures(days, day, str(result["model"]))
        if figures is not None:
            # Amounts are in the currency's lowest unit (cents), as decimal strings.
            figures.add_cost(_decimal(result.get("amount", "0")) / 100)


def _rfc3339_day(bucket: dict[str, Any]) -> date | None:
    try:
        return datetime.fromisoformat(str(bucket.get("starting_at")).replace("Z", "+00:00")).astimezone(UTC).date()
    except ValueError:
        return None


# -- OpenRouter -------------------------------------------------------------------------------------

OPENROUTER_SCOPE = "aspweb's own calls, each looked up by its generation id"
OPENROUTER_REFUSED = "OpenRouter refused the API key: it is wrong, revoked, or out of credits"


@dataclass(frozen=True)
class LedgerCall:
    """One of aspweb's calls to look up at OpenRouter: its generation id, the model the ledger charged it to
    (the day is compared per ledger model, whatever model OpenRouter's router picked), and the cache writes
    the ledger counted, which the generation's stats do not count apart."""

    upstream_id: str
    model: str
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0


def openrouter(credential: Credential, days: dict[date, list[LedgerCall]]) -> dict[date, Report]:
    """Each day's calls looked up one at a time, in order, on one kept-alive connection: OpenRouter rate-limits
    per key, and this key also serves aspweb's calls, so a modest, bounded stream of requests (the caller
    caps each day's) is kinder than a burst. A generation OpenRouter does not know (404) adds nothing to the
    provider's side, and the day's note names it. A refusal, a rate limit or an outage stops the whole run
    (ReportError), as the organisation reports do."""
    url = credential.base_url.rstrip("/") + "/generation"
    try:
        outbound.check_not_metadata(url)
    except outbound.Refused as exc:
        raise ReportError(f"aspweb will not send the report request: {exc}", retryable=False) from None
    fetched: dict[date, Report] = {}
    with httpx.Client(timeout=settings.RECONCILE_TIMEOUT_SECONDS, follow_redirects=False,
                      headers={"User-Agent": "aspweb-reconcile",
                               "Authorization": f"Bearer {credential.admin_key}"}) as client:
        for day, calls in days.items():
            report = fetched[day] = Report(models={}, cost_scope=OPENROUTER_SCOPE)
            unknown = []
            for call in calls:
                body = _get(client, url, {"id": call.upstream_id}, refused=OPENROUTER_REFUSED, missing_ok=True)
                if body is None:
                    unknown.append(call.upstream_id)
                    continue
                data = body.get("data")
                if not isinstance(data, dict):
                    raise ReportError("OpenRouter answered with something that is not a generation's stats.",
                                      retryable=False)
                figures = report.models.setdefault(model_key(call.model), Figures())
                figures.names.add(call.model)
                _add_generation(figures, data, call)
            if unknown:
                shown = ", ".join(unknown[:3]) + (", …" if len(unknown) > 3 else "")
                report.note = (f"{len(unknown)} of the {len(calls)} calls looked up are unknown to OpenRouter "
                               f"(missing at the provider): {shown}")
    return fetched


def _add_generation(figures: Figures, data: dict[str, Any], call: LedgerCall) -> None:
    """One generation's stats, in the ledger's token classes: native counts where given (what the answer's
    usage reported), else OpenRouter's normalised ones; the ledger's cache writes taken out of the prompt;
    the cost charged, plus the upstream provider's own charge where the call used the customer's own key
    (`is_byok`), as the ledger counts it."""
    prompt = _int(next((data[name] for name in ("native_tokens_prompt", "tokens_prompt")
                        if data.get(name) is not None), 0))
    completion = _int(next((data[name] for name in ("native_tokens_completion", "tokens_completion")
                            if data.get(name) is not None), 0))
    cached = min(_int(data.get("native_tokens_cached")), prompt)
    writes_5m = min(call.cache_write_tokens, prompt - cached)
    writes_1h = min(call.cache_write_1h_tokens, prompt - cached - writes_5m)
    figures.requests = (figures.requests or 0) + 1
    figures.input_tokens += prompt - cached - writes_5m - writes_1h
    figures.cache_read_tokens += cached
    figures.cache_write_tokens += writes_5m
    figures.cache_write_1h_tokens += writes_1h
    figures.output_tokens += completion
    cost = _decimal(data.get("total_cost") or 0)
    if data.get("is_byok") is True:
        cost += _decimal(data.get("upstream_inference_cost") or 0)
    figures.add_cost(cost)


# -- shared -----------------------------------------------------------------------------------------


def _cost_scope(credential: Credential, unit: str) -> str:
    """What the provider's cost figures cover, in words; empty when they would blame aspweb for other keys'
    traffic (a key named, no project or workspace to restrict the cost report to)."""
    if credential.project_id:
        return f"the {unit} {credential.project_id}"
    if credential.api_key_id:
        return ""
    return "the whole organisation"


def _ours(result: dict[str, Any], credential: Credential, *, workspace_field: str) -> bool:
    """A result grouped by key and project or workspace belongs to aspweb when it names aspweb's: the
    filter parameters already ask for that, and this keeps it so should a server group more widely."""
    if credential.api_key_id and result.get("api_key_id") not in (None, credential.api_key_id):
        return False
    return not (credential.project_id and result.get(workspace_field) not in (None, credential.project_id))


def _results(url: str, params: dict[str, Any], headers: dict[str, str],
             bucket_day: Callable[[dict[str, Any]], date | None]) -> Iterator[tuple[date | None, dict[str, Any]]]:
    """Every result of every bucket of every page, with its bucket's day, following `has_more` and
    `next_page`."""
    try:
        outbound.check_not_metadata(url)
    except outbound.Refused as exc:
        raise ReportError(f"aspweb will not send the report request: {exc}", retryable=False) from None
    page: str | None = None
    with httpx.Client(timeout=settings.RECONCILE_TIMEOUT_SECONDS, follow_redirects=False,
                      headers={"User-Agent": "aspweb-reconcile", **headers}) as client:
        for _ in range(MAX_PAGES):
            body = _get(client, url, {**params, **({"page": page} if page else {})})
            buckets = body.get("data")
            if not isinstance(buckets, list):
                raise ReportError("The provider answered with something that is not a usage report.",
                                  retryable=False)
            for bucket in buckets:
                if not isinstance(bucket, dict):
                    continue
                day = bucket_day(bucket)
                # "results" in the references' examples, "result" in OpenAI's field reference: either is read.
                for result in bucket.get("results") or bucket.get("result") or []:
                    if isinstance(result, dict):
                        yield day, result
            page = body.get("next_page")
            if not body.get("has_more") or not page:
                return
    raise ReportError(f"The provider's report ran past {MAX_PAGES} pages.", retryable=True)


REFUSED = "The reporting key was refused: it is wrong, revoked, or not an admin key"


def _get(client: httpx.Client, url: str, params: dict[str, Any], *, refused: str = REFUSED,
         missing_ok: bool = False) -> dict[str, Any] | None:
    """The JSON object at `url`; None for a 404 where `missing_ok` (a thing the provider does not know)."""
    host = httpx.URL(url).host
    try:
        response = client.get(url, params=params)
    except httpx.TimeoutException:
        raise ReportError(f"{host} did not answer in time.", retryable=True) from None
    except httpx.HTTPError:
        raise ReportError(f"Could not connect to {host}.", retryable=True) from None
    status = response.status_code
    if status in (401, 403):
        raise ReportError(f"{refused} (HTTP {status}).", retryable=False)
    if status == 429:
        raise ReportError(f"{host} is rate-limiting the report (HTTP 429); it is tried again later.",
                          retryable=True)
    if status >= 500:
        raise ReportError(f"{host} had a server error (HTTP {status}); it is tried again later.", retryable=True)
    if status == 404 and missing_ok:
        return None
    if not response.is_success:
        raise ReportError(f"{host} refused the report request (HTTP {status}).", retryable=False)
    try:
        body = response.json()
    except ValueError:
        raise ReportError("The provider answered with something that is not a usage report.",
                          retryable=False) from None
    if not isinstance(body, dict):
        raise ReportError("The provider answered with something that is not a usage report.", retryable=False)
    return body
