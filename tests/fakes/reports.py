"""Fake organisation usage and cost report APIs of OpenAI and Anthropic, and OpenRouter's generation stats, over
real loopback HTTP.

Shapes from the providers' API references:
- OpenAI (`Authorization: Bearer <admin key>`): `GET /v1/organization/usage/completions` and
  `GET /v1/organization/costs`, query `start_time`, `end_time` (Unix seconds), `bucket_width=1d`, `group_by`,
  `api_key_ids`, `project_ids`, `limit` (buckets per page, 7 by default), `page`; answer
  `{"object": "page", "data": [{"object": "bucket", "start_time", "end_time", "results": [...]}],
  "has_more", "next_page"}`. Usage results: `{"object": "organization.usage.completions.result",
  "input_tokens", "input_cached_tokens", "output_tokens", "num_model_requests", "project_id", "user_id",
  "api_key_id", "model", "batch"}`, the fields not grouped by null. Cost results: `{"object":
  "organization.costs.result", "amount": {"value", "currency": "usd"}, "line_item", "project_id"}`.
  Errors: `{"error": {"message", "type", "param", "code"}}`.
- Anthropic (`x-api-key: <admin key>`, `anthropic-version`): `GET /v1/organizations/usage_report/messages`
  and `GET /v1/organizations/cost_report`, query `starting_at`, `ending_at` (RFC 3339), `bucket_width=1d`,
  `group_by[]`, `api_key_ids[]`, `workspace_ids[]`, `limit` (7 by default), `page`; answer `{"data":
  [{"starting_at", "ending_at", "results": [...]}], "has_more", "next_page"}`. Usage results:
  `{"uncached_input_tokens", "cache_creation": {"ephemeral_1h_input_tokens", "ephemeral_5m_input_tokens"},
  "cache_read_input_tokens", "output_tokens", "server_tool_use": {"web_search_requests"}, "api_key_id",
  "workspace_id", "model", "service_tier", "context_window"}`. Cost results: `{"amount"` (cents, a decimal
  string), `"currency": "USD", "cost_type", "description", "model", "service_tier", "token_type",
  "workspace_id", "context_window"}`. Errors: `{"type": "error", "error": {"type", "message"}}`.
- OpenRouter (`Authorization: Bearer <API key>`, the same key that makes calls): `GET /api/v1/generation?id=`
  answers one generation's stats, `{"data": {"id", "upstream_id", "total_cost", "cache_discount",
  "upstream_inference_cost", "created_at", "model", "app_id", "streamed", "cancelled", "provider_name",
  "latency", "moderation_latency", "generation_time", "finish_reason", "native_finish_reason",
  "tokens_prompt", "tokens_completion", "native_tokens_prompt", "native_tokens_completion",
  "native_tokens_completion_images", "native_tokens_reasoning", "native_tokens_cached", "num_media_prompt",
  "num_media_completion", "num_search_results", "origin", "usage", "is_byok", "api_type"}}`; an id it does
  not know is a 404. Errors: `{"error": {"code", "message", "metadata"}}`, with `Retry-After` on a 429.

Tests load daily figures with `add_usage(day, **fields)` and `add_cost(day, **fields)` (the provider's own
field names), OpenRouter's generations with `add_generation(id, **fields)`, set `max_buckets` to force
paging, and queue error answers with `fail_next`. Results are
grouped as asked and filtered by key, project and workspace as the real APIs do.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict, deque
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .loopback import LoopbackFake

ADMIN_KEY = "sk-admin-fake-reporting-key-0123"
ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-fake-reporting-key-0123"
OPENROUTER_KEY = "sk-or-v1-fake-calls-key-0123"

OPENAI_USAGE_FIELDS = ("input_tokens", "input_cached_tokens", "output_tokens", "num_model_requests")
OPENAI_GROUPS = ("project_id", "user_id", "api_key_id", "model", "batch")
ANTHROPIC_GROUPS = ("api_key_id", "workspace_id", "model", "service_tier", "context_window")


class FakeReports(LoopbackFake):
    thread_name = "fake-reports"

    def __init__(self) -> None:
        super().__init__()
        self.usage: dict[str, dict[date, list[dict[str, Any]]]] = {"openai": defaultdict(list),
                                                                    "anthropic": defaultdict(list)}
        self.costs: dict[str, dict[date, list[dict[str, Any]]]] = {"openai": defaultdict(list),
                                                                    "anthropic": defaultdict(list)}
        self.generations: dict[str, dict[str, Any]] = {}
        self.max_buckets: int | None = None
        self.fail_next: deque[int] = deque()
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []

    # -- what tests load --------------------------------------------------------------------------

    # OpenAI's usage results with `input_cache_write_tokens` and `input_uncached_tokens` (input_tokens
    # "including cached and cache-write tokens"), as its newer schema has them; without, as the older one.
    openai_cache_writes = False
    # The name of a bucket's list of results: "results" as the references' examples show it, or "result" as
    # OpenAI's reference names the field.
    bucket_results = "results"

    def add_usage(self, vendor: str, day: date, **fields: Any) -> None:
        self.usage[vendor][day].append(fields)

    def add_cost(self, vendor: str, day: date, **fields: Any) -> None:
        self.costs[vendor][day].append(fields)

    def add_generation(self, generation_id: str, *, model: str = "openai/gpt-4o-mini", native_tokens_prompt: int = 0,
                       native_tokens_completion: int = 0, native_tokens_cached: int = 0,
                       native_tokens_reasoning: int = 0, total_cost: float = 0.0, **fields: Any) -> None:
        """A generation OpenRouter knows, with its native counts and charge; the other documented fields as a
        real answer has them (the normalised counts the same as the native ones)."""
        self.generations[generation_id] = {
            "id": generation_id, "upstream_id": f"chatcmpl-{generation_id[-8:]}", "total_cost": total_cost,
            "cache_discount": None, "upstream_inference_cost": None, "created_at": "2026-11-02T12:00:00.000000+00:00",
            "model": model, "app_id": None, "streamed": True, "cancelled": False, "provider_name": "OpenAI",
            "latency": 1250, "moderation_latency": None, "generation_time": 1200, "finish_reason": "stop",
            "native_finish_reason": "stop", "tokens_prompt": native_tokens_prompt,
            "tokens_completion": native_tokens_completion, "native_tokens_prompt": native_tokens_prompt,
            "native_tokens_completion": native_tokens_completion, "native_tokens_completion_images": 0,
            "native_tokens_reasoning": native_tokens_reasoning, "native_tokens_cached": native_tokens_cached,
            "num_media_prompt": None, "num_media_completion": None, "num_search_results": None, "origin": "",
            "usage": total_cost, "is_byok": False, "api_type": "completions", **fields,
        }

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    # -- serving ----------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                fake.requests.append((url.path, query, dict(self.headers)))
                status, body = fake.answer(url.path, query, self.headers)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "30")
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def answer(self, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, dict[str, Any]]:
        if path == "/api/v1/generation":
            return self._generation(query, headers)
        if path.startswith("/v1/organization/"):
            vendor = "openai"
            authorized = headers.get("Authorization") == f"Bearer {ADMIN_KEY}"
        elif path.startswith("/v1/organizations/"):
            vendor = "anthropic"
            authorized = headers.get("x-api-key") == ANTHROPIC_ADMIN_KEY and bool(headers.get("anthropic-version"))
        else:
            return 404, {"error": {"message": "Not found", "type": "invalid_request_error"}}
        if self.fail_next:
            return self._error(vendor, self.fail_next.popleft())
        if not authorized:
            return self._error(vendor, 401)
        if vendor == "openai":
            start = datetime.fromtimestamp(int(query["start_time"][0]), UTC).date()
            end = (datetime.fromtimestamp(int(query["end_time"][0]), UTC).date() if "end_time" in query
                   else start + timedelta(days=1))
            groups = query.get("group_by", [])
        else:
            start = datetime.fromisoformat(query["starting_at"][0].replace("Z", "+00:00")).date()
            end = (datetime.fromisoformat(query["ending_at"][0].replace("Z", "+00:00")).date()
                   if "ending_at" in query else start + timedelta(days=1))
            groups = query.get("group_by[]", [])
        costs = path.endswith(("/costs", "/cost_report"))
        limit = int(query.get("limit", ["7"])[0])
        if self.max_buckets:
            limit = min(limit, self.max_buckets)
        offset = int(base64.b64decode(query["page"][0].removeprefix("page_")).decode()) if "page" in query else 0
        all_days = [start + timedelta(days=n) for n in range((end - start).days)]
        page_days = all_days[offset:offset + limit]
        buckets = [self._bucket(vendor, day, costs, groups, query) for day in page_days]
        more = offset + limit < len(all_days)
        next_page = "page_" + base64.b64encode(str(offset + limit).encode()).decode() if more else None
        if vendor == "openai":
            return 200, {"object": "page", "data": buckets, "has_more": more, "next_page": next_page}
        return 200, {"data": buckets, "has_more": more, "next_page": next_page}

    def _bucket(self, vendor: str, day: date, costs: bool, groups: list[str],
                query: dict[str, list[str]]) -> dict[str, Any]:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        rows = (self.costs if costs else self.usage)[vendor].get(day, [])
        if vendor == "openai":
            keys, projects = query.get("api_key_ids"), query.get("project_ids")
            rows = [r for r in rows if (not keys or costs or r.get("api_key_id") in keys)
                    and (not projects or r.get("project_id") in projects)]
            results = self._openai_costs(rows, groups) if costs else self._openai_usage(rows, groups)
            return {"object": "bucket", "start_time": int(start.timestamp()), "end_time": int(end.timestamp()),
                    self.bucket_results: results}
        keys, workspaces = query.get("api_key_ids[]"), query.get("workspace_ids[]")
        if not costs:
            rows = [r for r in rows if (not keys or r.get("api_key_id") in keys)
                    and (not workspaces or r.get("workspace_id") in workspaces)]
        results = self._anthropic_costs(rows, groups) if costs else self._anthropic_usage(rows, groups)
        return {"starting_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "ending_at": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "results": results}

    @staticmethod
    def _grouped(rows: list[dict[str, Any]], fields: tuple[str, ...], groups: list[str]) -> dict[tuple, list]:
        grouped: dict[tuple, list] = defaultdict(list)
        for row in rows:
            grouped[tuple(row.get(field) if field in groups else None for field in fields)].append(row)
        return grouped

    def _openai_usage(self, rows: list[dict[str, Any]], groups: list[str]) -> list[dict[str, Any]]:
        results = []
        for key, members in self._grouped(rows, OPENAI_GROUPS, groups).items():
            result: dict[str, Any] = {"object": "organization.usage.completions.result"}
            for field in OPENAI_USAGE_FIELDS:
                result[field] = sum(m.get(field, 0) for m in members)
            if self.openai_cache_writes:  # the newer schema: `input_tokens` includes cache writes too
                writes = sum(m.get("input_cache_write_tokens", 0) for m in members)
                result["input_cache_write_tokens"] = writes
                result["input_uncached_tokens"] = result["input_tokens"] - result["input_cached_tokens"] - writes
            result.update(zip(OPENAI_GROUPS, key, strict=True))
            results.append(result)
        return results

    def _openai_costs(self, rows: list[dict[str, Any]], groups: list[str]) -> list[dict[str, Any]]:
        results = []
        for (line_item, project_id), members in self._grouped(rows, ("line_item", "project_id"), groups).items():
            results.append({"object": "organization.costs.result",
                            "amount": {"value": sum(m["value"] for m in members), "currency": "usd"},
                            "line_item": line_item, "project_id": project_id})
        return results

    def _anthropic_usage(self, rows: list[dict[str, Any]], groups: list[str]) -> list[dict[str, Any]]:
        results = []
        for key, members in self._grouped(rows, ANTHROPIC_GROUPS, groups).items():
            result = {
                "uncached_input_tokens": sum(m.get("uncached_input_tokens", 0) for m in members),
                "cache_creation": {
                    "ephemeral_1h_input_tokens": sum(m.get("ephemeral_1h_input_tokens", 0) for m in members),
                    "ephemeral_5m_input_tokens": sum(m.get("ephemeral_5m_input_tokens", 0) for m in members)},
                "cache_read_input_tokens": sum(m.get("cache_read_input_tokens", 0) for m in members),
                "output_tokens": sum(m.get("output_tokens", 0) for m in members),
                "server_tool_use": {"web_search_requests": 0},
            }
            result.update(zip(ANTHROPIC_GROUPS, key, strict=True))
            results.append(result)
        return results

    def _anthropic_costs(self, rows: list[dict[str, Any]], groups: list[str]) -> list[dict[str, Any]]:
        results = []
        fields = ("description", "model", "token_type", "cost_type", "workspace_id")
        for key, members in self._grouped(rows, fields, groups + (
                ["model", "token_type", "cost_type"] if "description" in groups else [])).items():
            cents = sum((float(m["amount"]) for m in members), 0.0)
            description, model, token_type, cost_type, workspace_id = key
            results.append({"amount": f"{cents:.5f}", "currency": "USD", "description": description,
                            "model": model, "token_type": token_type, "cost_type": cost_type,
                            "service_tier": "standard" if model else None,
                            "context_window": "0-200k" if model else None, "workspace_id": workspace_id})
        return results

    def _generation(self, query: dict[str, list[str]], headers: Any) -> tuple[int, dict[str, Any]]:
        if self.fail_next:
            return self._error("openrouter", self.fail_next.popleft())
        if headers.get("Authorization") != f"Bearer {OPENROUTER_KEY}":
            return self._error("openrouter", 401)
        generation = self.generations.get((query.get("id") or [""])[0])
        if generation is None:
            return self._error("openrouter", 404)
        return 200, {"data": generation}

    @staticmethod
    def _error(vendor: str, status: int) -> tuple[int, dict[str, Any]]:
        words = {401: ("authentication_error", "invalid x-api-key"), 403: ("permission_error", "Forbidden"),
                 429: ("rate_limit_error", "Rate limited"), 500: ("api_error", "Internal server error"),
                 529: ("overloaded_error", "Overloaded")}.get(status, ("invalid_request_error", "Bad request"))
        if vendor == "openai":
            return status, {"error": {"message": words[1], "type": words[0], "param": None, "code": None}}
        if vendor == "openrouter":
            message = {401: "No auth credentials found", 404: "Generation not found"}.get(status, words[1])
            return status, {"error": {"code": status, "message": message}}
        return status, {"type": "error", "error": {"type": words[0], "message": words[1]}}
