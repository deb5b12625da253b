"""The rollup tables' arithmetic: which row of each table a record adds to, what it adds, the one statement
per table that adds a whole batch of records, and which table can answer a dashboard's question.

A batch's amounts are summed first per row of the full table (`Additions`), then projected onto each
narrower table, so that every table gets one `INSERT ... ON CONFLICT (key) DO UPDATE SET col = col +
EXCLUDED.col` with each of its rows once. Tables are written in `ROLLUPS` order and rows in key order: two
batches that touch the same rows lock them in the same order, so they wait for each other but never
deadlock.

Two tables go past the full table's dimensions: the end-user table (one more column) and the tag table, to
which a record adds once per tag it carries (once, to the row of no tag, when it carries none). The batch's
sums are therefore kept per full-table row, end user and set of tags.
"""

import functools
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from django.db import connection
from django.utils import timezone

from .models import ROLLUPS, DailyUsage, Rollup, UsageRecord

SUM_FIELDS = Rollup.SUM_FIELDS
COST = SUM_FIELDS.index("cost")
# The full table's dimensions: every narrower table's are a subset of them.
FULL = DailyUsage.DIMENSIONS
# The single-valued dimensions of a record, and the many-valued one (its tags).
SINGLE = (*FULL, "end_user")
TAG = "tag"
# How `key` spells an id column (source is spelled as it is); the full table's keys predate the narrow
# tables and keep their shape: 2025-05-01|p3|m17|u0|k0|gateway|t0.
_KEY_PREFIX = {"provider_id": "p", "model_id": "m", "user_id": "u", "api_key_id": "k", "team_id": "t"}
# Text columns, last in their table's key: "e" alone for none, "e=" and the text for one.
_TEXT_PREFIX = {"end_user": "e", "tag": "g"}


def row_key(model: type[Rollup], day: date, values: dict[str, Any]) -> str:
    """The `key` of `model`'s row for `day` and the dimension `values` (a dict of at least its columns)."""
    parts = [day.isoformat()]
    for column in model.DIMENSIONS:
        value = values[column]
        if column == "source":
            parts.append(value)
        elif column in _TEXT_PREFIX:
            parts.append(_TEXT_PREFIX[column] + ("" if value is None else f"={value}"))
        else:
            parts.append(f"{_KEY_PREFIX[column]}{value or 0}")
    return "|".join(parts)


def record_dimensions(record: UsageRecord) -> tuple:
    """A record's values of SINGLE (no end user: None) and its tags, as Additions keys them."""
    return (*(getattr(record, column) for column in FULL), record.end_user or None, record.tag_list)


def record_amounts(record: UsageRecord) -> list[Any]:
    """What one record adds to its rows, in SUM_FIELDS order."""
    return [
        1,
        int(record.status == UsageRecord.Status.ERROR),
        int(record.status == UsageRecord.Status.CANCELLED),
        int(record.usage_estimated),
        record.input_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.output_tokens,
        record.reasoning_tokens,
        record.cost,
        record.latency_ms or 0,
        int(record.latency_ms is not None),
        record.ttft_ms or 0,
        int(record.ttft_ms is not None),
        record.cache_write_1h_tokens,
        int(record.unpriced),
        record.total_tokens if record.unpriced else 0,
    ]


def repricing_amounts(before: UsageRecord, after: UsageRecord) -> list[Any]:
    """What re-pricing a record changes in its rows: its cost, and whether it counts as unpriced."""
    return [new - old for old, new in zip(record_amounts(before), record_amounts(after), strict=True)]


class Additions:
    """Amounts to add to the rollup tables, summed per row of the full table as they come."""

    def __init__(self) -> None:
        from .services import ledger_timezone  # services builds on this module

        self.tz = ledger_timezone()
        # (day, *SINGLE values, tags) -> amounts in SUM_FIELDS order
        self.rows: dict[tuple, list[Any]] = {}

    def add(self, record: UsageRecord, amounts: Sequence[Any] | None = None) -> None:
        """Add `amounts` (default: the record's own) to the rows of `record`'s day and dimensions."""
        amounts = record_amounts(record) if amounts is None else amounts
        day = timezone.localtime(record.created_at, self.tz).date()
        dimensions = (day, *record_dimensions(record))
        row = self.rows.get(dimensions)
        if row is None:
            self.rows[dimensions] = list(amounts)
        else:
            for n, value in enumerate(amounts):
                row[n] += value

    def table_rows(self, model: type[Rollup]) -> list[tuple[str, date, tuple, list[Any]]]:
        """(key, day, dimension values, amounts) of each of `model`'s rows that this adds to, by key."""
        by_tag = TAG in model.DIMENSIONS
        rows: dict[str, tuple[str, date, tuple, list[Any]]] = {}
        for dimensions, amounts in self.rows.items():
            named = dict(zip(SINGLE, dimensions[1:-1], strict=True))
            for tag in (dimensions[-1] or (None,)) if by_tag else (None,):
                named[TAG] = tag
                values = tuple(named[column] for column in model.DIMENSIONS)
                key = row_key(model, dimensions[0], named)
                row = rows.get(key)
                if row is None:
                    rows[key] = (key, dimensions[0], values, list(amounts))
                else:
                    for n, value in enumerate(amounts):
                        row[3][n] += value
        return [rows[key] for key in sorted(rows)]

    def write(self) -> None:
        """Add everything to every rollup table: one upsert per table (more where a database limits the
        parameters of one statement), tables in ROLLUPS order, rows in key order."""
        if not self.rows:
            return
        with connection.cursor() as cursor:
            for model in ROLLUPS:
                _upsert(cursor, model, self.table_rows(model))


def _upsert(cursor: Any, model: type[Rollup], rows: list[tuple[str, date, tuple, list[Any]]]) -> None:
    ops = connection.ops
    cost_field = model._meta.get_field("cost")
    columns = 2 + len(model.DIMENSIONS) + len(SUM_FIELDS)
    limit = connection.features.max_query_params or 60000
    per_statement = max(1, min(len(rows), limit // columns))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        params: list[Any] = []
        for key, day, values, amounts in chunk:
            amounts = list(amounts)
            amounts[COST] = ops.adapt_decimalfield_value(amounts[COST], cost_field.max_digits,
                                                         cost_field.decimal_places)
            params.extend((key, ops.adapt_datefield_value(day), *values, *amounts))
        cursor.execute(_statement(connection.vendor, model, len(chunk)), params)


@functools.lru_cache(maxsize=64)
def _statement(vendor: str, model: type[Rollup], rows: int) -> str:
    """The upsert of `rows` rows into `model`'s table, written once per shape: building it cost as much as
    running it for a batch of one."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ["key", "day", *model.DIMENSIONS, *SUM_FIELDS]
    increments = ", ".join(f"{quote(name)} = {table}.{quote(name)} + EXCLUDED.{quote(name)}" for name in SUM_FIELDS)
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    return (f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608 - names from the models
            f"VALUES {', '.join([placeholders] * rows)} "
            f"ON CONFLICT ({quote('key')}) DO UPDATE SET {increments}")


def table_for(columns: Iterable[str]) -> type[Rollup]:
    """The narrowest rollup table that has every one of `columns` (record columns: provider_id, model_id,
    user_id, api_key_id, source, team_id, end_user, tag; the day is in every table): the one a question about
    them reads. NoTable when none has them all (a tag and an end user together)."""
    needed = set(columns) - {"day"}
    found = next((model for model in ROLLUPS if needed <= set(model.DIMENSIONS)), None)
    if found is None:
        raise NoTable(f"No rollup table has {', '.join(sorted(needed))} together.")
    return found


class NoTable(LookupError):
    """No rollup table answers a question (usage.rollups.table_for)."""
