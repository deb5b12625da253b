"""Helpers for the usage tests: write records the one way the app does, and compare each rollup table with
the raw records group by group."""

from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.utils import timezone

from usage import services
from usage.models import ROLLUPS, DailyUsage, Rollup, UsageRecord


def spec(model: Any, **fields: Any) -> dict[str, Any]:
    """The keyword arguments of a plain successful call to `model`, with `fields` changed."""
    defaults: dict[str, Any] = {"source": "playground", "status": "ok", "input_tokens": 100, "output_tokens": 20,
                                "latency_ms": 900, "ttft_ms": 150}
    return {"provider": model.provider, "model": model, **defaults, **fields}


def write(model: Any, **fields: Any) -> UsageRecord:
    """usage_record_create with defaults for a plain successful call."""
    return services.usage_record_create(**spec(model, **fields))


def raw_sums(table: type[Rollup] = DailyUsage) -> dict[tuple, dict[str, Any]]:
    """`table` computed by hand in Python from every raw record, keyed (day, *its dimensions)."""
    sums: dict[tuple, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(Rollup.SUM_FIELDS, 0))
    for r in UsageRecord.objects.all():
        day = timezone.localtime(r.created_at, services.ledger_timezone()).date()
        # A record adds to its tag table row once per tag (to the row of no tag when it has none).
        for tag in (r.tag_list or (None,)) if "tag" in table.DIMENSIONS else (None,):
            values = {"end_user": r.end_user or None, "tag": tag}
            _add(sums[(day, *(values[c] if c in values else getattr(r, c) for c in table.DIMENSIONS))], r)
    for row in sums.values():
        row["cost"] = Decimal(row["cost"])
    return dict(sums)


def _add(row: dict[str, Any], r: UsageRecord) -> None:
    row["requests"] += 1
    row["errors"] += r.status == "error"
    row["cancelled"] += r.status == "cancelled"
    row["estimated"] += r.usage_estimated
    for name in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
                 "output_tokens", "reasoning_tokens", "cost"):
        row[name] += getattr(r, name)
    if r.unpriced:
        row["unpriced"] += 1
        row["unpriced_tokens"] += (r.input_tokens + r.cache_read_tokens + r.cache_write_tokens
                                   + r.cache_write_1h_tokens + r.output_tokens)
    row["latency_ms_sum"] += r.latency_ms or 0
    row["latency_count"] += r.latency_ms is not None
    row["ttft_ms_sum"] += r.ttft_ms or 0
    row["ttft_count"] += r.ttft_ms is not None


def rollup_sums(table: type[Rollup] = DailyUsage) -> dict[tuple, dict[str, Any]]:
    return {
        (row.day, *(getattr(row, column) for column in table.DIMENSIONS)):
            {name: getattr(row, name) for name in Rollup.SUM_FIELDS}
        for row in table.objects.all()
    }


def assert_rollups_exact() -> None:
    """Every rollup table equals the raw records, row by row and column by column."""
    for table in ROLLUPS:
        assert rollup_sums(table) == raw_sums(table), table.__name__
