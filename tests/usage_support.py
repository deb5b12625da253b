"""Helpers for the usage tests: write records the one way the app does, and compare the rollup with the
raw records group by group."""

from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.utils import timezone

from usage import services
from usage.models import DailyUsage, UsageRecord


def write(model: Any, **fields: Any) -> UsageRecord:
    """usage_record_create with defaults for a plain successful call."""
    defaults: dict[str, Any] = {"source": "playground", "status": "ok", "input_tokens": 100, "output_tokens": 20,
                                "latency_ms": 900, "ttft_ms": 150}
    return services.usage_record_create(provider=model.provider, model=model, **{**defaults, **fields})


def raw_sums() -> dict[tuple, dict[str, Any]]:
    """The rollup computed by hand in Python from every raw record, keyed like DailyUsage rows."""
    sums: dict[tuple, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(DailyUsage.SUM_FIELDS, 0))
    for r in UsageRecord.objects.all():
        day = timezone.localtime(r.created_at, services.ledger_timezone()).date()
        row = sums[(day, r.provider_id, r.model_id, r.user_id, r.api_key_id, r.source)]
        row["requests"] += 1
        row["errors"] += r.status == "error"
        row["cancelled"] += r.status == "cancelled"
        row["estimated"] += r.usage_estimated
        for name in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
                     "cost"):
            row[name] += getattr(r, name)
        row["latency_ms_sum"] += r.latency_ms or 0
        row["latency_count"] += r.latency_ms is not None
        row["ttft_ms_sum"] += r.ttft_ms or 0
        row["ttft_count"] += r.ttft_ms is not None
    for row in sums.values():
        row["cost"] = Decimal(row["cost"])
    return dict(sums)


def rollup_sums() -> dict[tuple, dict[str, Any]]:
    return {
        (row.day, row.provider_id, row.model_id, row.user_id, row.api_key_id, row.source):
            {name: getattr(row, name) for name in DailyUsage.SUM_FIELDS}
        for row in DailyUsage.objects.all()
    }
