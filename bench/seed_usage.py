"""Seed a PostgreSQL database with millions of usage records, and their rollup tables, for the dashboard
benchmarks (bench/dashboard_bench.py). Results, commands and how to read them are in docs/benchmarks.md.

    .venv/bin/python -m bench.seed_usage --database-url postgres://postgres@127.0.0.1:5432/aspweb_bench \\
        --records 10000000 --days 365

It creates the database if it is missing and migrates it, then adds a catalog (providers, models, prices),
users and API keys, all named bench-*. The raw records are made in SQL, `INSERT ... SELECT` over
`generate_series`, a million per statement, with the secondary indexes dropped during the load and built
after it (and foreign-key triggers off for the session: every id comes from the tables just made). The
rollup is made the same way, one `INSERT ... SELECT ... GROUP BY` per 30 days, and then checked: every
day's sums against the raw records', and one day rebuilt by usage.services.daily_usage_rebuild (the
service's own rollup) must come out the same.

The shape of the data (see --help for the knobs): calls spread evenly over --days ending now, people
picked with a heavy tail (a few people make most calls), each person using 5 of the models, 60% of a
key holder's calls through the gateway with their key, the rest from the playground or the CLI; 3%
errors (no tokens), 1% cancelled (estimated tokens). Attribution: --teams teams, each person in one of
them (every seventh person in none), a key in its holder's team, a call counted for its person's team (most
calls have one); half the gateway calls carry one to three of --tags tags and, independently, half name one
of --end-users end users, both picked with a heavy tail. The end-user and tag tables are made from the raw
records like the full one (a call adds to the row of each of its tags), the narrower tables from them.
The rollup's size, not the records', is what the dashboards read: the script prints its row count.
"""

import argparse
import hashlib
import os
import sys
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

CHUNK = 1_000_000
ROLLUP_DAYS = 30
# provider name -> (kind, [(model, input, output) per 1M tokens]); cache read is a tenth of input, cache
# write 1.25 times input.
CATALOG = {
    "anthropic": ("anthropic", [("claude-opus-4-1", "15", "75"), ("claude-sonnet-4-5", "3", "15"),
                                ("claude-haiku-4-5", "1", "5"), ("claude-3-5-haiku", "0.8", "4")]),
    "openai": ("openai", [("gpt-4.1", "2", "8"), ("gpt-4.1-mini", "0.4", "1.6"), ("gpt-4.1-nano", "0.1", "0.4"),
                          ("gpt-4o", "2.5", "10"), ("gpt-4o-mini", "0.15", "0.6"), ("o3", "2", "8"),
                          ("o4-mini", "1.1", "4.4"), ("gpt-5", "1.25", "10")]),
    "gemini": ("gemini", [("gemini-2.5-pro", "1.25", "10"), ("gemini-2.5-flash", "0.3", "2.5"),
                          ("gemini-2.0-flash", "0.1", "0.4")]),
    "groq": ("groq", [("llama-3.3-70b-versatile", "0.59", "0.79"), ("llama-3.1-8b-instant", "0.05", "0.08"),
                      ("qwen3-32b", "0.29", "0.59")]),
    "openrouter": ("openrouter", [(f"vendor-{n}/model-{n}", "0.5", "1.5") for n in range(14)]),
    "together": ("together", [(f"together-model-{n}", "0.2", "0.6") for n in range(8)]),
}


def _setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aspweb.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django

    django.setup()


def _create_database(database_url: str) -> None:
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


class Clock:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.last = self.start

    def lap(self, what: str) -> None:
        now = time.monotonic()
        print(f"  {what}: {now - self.last:.1f} s (total {now - self.start:.1f} s)", flush=True)
        self.last = now


def _catalog(args: argparse.Namespace) -> None:
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from accounts.models import Team, User
    from aspweb.roles import MEMBER
    from gateway.models import ApiKey
    from providers.models import Model, Price, Provider

    since = timezone.now() - timedelta(days=args.days + 30)
    catalog = [(name, kind, model) for name, (kind, models) in CATALOG.items() for model in models][:args.models]
    providers: dict[str, Provider] = {}
    for name, kind, (model_name, input_price, output_price) in catalog:
        if name not in providers:
            providers[name] = Provider.objects.create(name=f"bench-{name}", kind=kind,
                                                      base_url="http://127.0.0.1:9/v1")
        model = Model.objects.create(provider=providers[name], name=model_name)
        price = Decimal(input_price)
        Price.objects.create(model=model, effective_from=since, input=price, output=Decimal(output_price),
                             cache_read=price / 10, cache_write=price * Decimal("1.25"))
    users = User.objects.bulk_create(
        User(email=f"bench-{n:05}@example.com", name=f"Bench {n}", password="!") for n in range(args.users)  # noqa: S106 - unusable
    )
    Group.objects.get(name=MEMBER).user_set.add(*users)
    teams = Team.objects.bulk_create(Team(name=f"bench-team-{n:02}") for n in range(args.teams))
    for n, user in enumerate(users):
        if team := _team_of(n, teams):
            team.members.add(user)
    ApiKey.objects.bulk_create(
        ApiKey(name=f"bench-key-{n}", user=users[n], prefix=f"asp_bench{n:05}", team=_team_of(n, teams),
               key_hash=hashlib.sha256(f"bench-key-{n}".encode()).hexdigest())
        for n in range(args.keys)
    )


def _team_of(person: int, teams: list) -> Any:
    """The team of the person numbered `person`: every seventh is in none (as RECORDS_SQL says)."""
    return None if not teams or person % 7 == 6 else teams[person % len(teams)]



def _indexes(cursor, table: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The table's plain indexes (their CREATE statements) and unique constraints (name, definition)."""
    cursor.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)", [table, table])
    plain = [row[0] for row in cursor.fetchall()]
    cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                   "WHERE conrelid = %s::regclass AND contype = 'u'", [table])
    return plain, cursor.fetchall()


def _drop_indexes(cursor, table: str) -> tuple[list[str], list[tuple[str, str]]]:
    plain, unique = _indexes(cursor, table)
    for definition in plain:
        cursor.execute(f"DROP INDEX {definition.split(' INDEX ', 1)[1].split(' ON ', 1)[0]}")
    for name, _ in unique:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    return plain, unique


def _build_indexes(cursor, table: str, saved: tuple[list[str], list[tuple[str, str]]], clock: Clock) -> None:
    plain, unique = saved
    for name, definition in unique:
        cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        clock.lap(f"{table}: constraint {name}")
    for definition in plain:
        cursor.execute(definition)
        clock.lap(f"{table}: {definition.split(' INDEX ', 1)[1].split(' ON ', 1)[0]}")


RECORD_COLUMNS = (
    "request_id", "created_at", "user_id", "source", "status", "error_kind", "error_message", "finish_reason",
    "api_key_id", "team_id", "tags", "end_user", "provider_id", "model_id", "price_id", "provider_name",
    "model_name", "input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
    "output_tokens", "reasoning_tokens", "usage_estimated", "cost", "computed_cost", "reported_cost", "unpriced",
    "cached", "latency_ms", "ttft_ms", "attempts",
)

# One statement per chunk of the series [first, last]. Volatile random() in a subquery's select list keeps
# the subquery from being flattened, so each draw is made once per record and reused.
RECORDS_SQL = """
INSERT INTO usage_usagerecord ({columns})
SELECT gen_random_uuid(), r.created_at, u.id, r.source, r.status,
       CASE WHEN r.status = 'error' THEN 'rate_limit' ELSE '' END, '',
       CASE WHEN r.status = 'ok' THEN 'stop' ELSE '' END,
       k.id, tm.id,
       CASE WHEN r.source = 'gateway' AND r.draw_tags < 0.5 THEN concat_ws(',',
           'tag-' || lpad(r.tag_idx::text, 3, '0'),
           CASE WHEN r.draw_tags >= 0.2
                THEN 'tag-' || lpad(((r.tag_idx + 1 + r.tag_step) %% %(tags)s)::text, 3, '0') END,
           CASE WHEN r.draw_tags >= 0.4
                THEN 'tag-' || lpad(((r.tag_idx + 100 + r.tag_step) %% %(tags)s)::text, 3, '0') END)
            ELSE '' END,
       CASE WHEN r.source = 'gateway' AND r.draw_end_user < 0.5 THEN 'customer-' || lpad(r.end_user_idx::text, 4, '0')
            ELSE '' END,
       m.provider_id, m.id, m.price_id, m.provider_name, m.model_name,
       r.input_tokens * r.billed, r.cache_read_tokens * r.billed, r.cache_write_tokens * r.billed, 0,
       r.output_tokens * r.billed, r.reasoning_tokens * r.billed, r.status = 'cancelled',
       r.billed * round((r.input_tokens * m.input + r.cache_read_tokens * m.cache_read
                         + r.cache_write_tokens * m.cache_write + r.output_tokens * m.output) / 1000000, 10),
       r.billed * round((r.input_tokens * m.input + r.cache_read_tokens * m.cache_read
                         + r.cache_write_tokens * m.cache_write + r.output_tokens * m.output) / 1000000, 10),
       NULL, false, false, r.latency_ms, CASE WHEN r.status = 'error' THEN NULL ELSE r.ttft_ms END, 1
FROM (
    SELECT t.*, (t.draw_status >= 0.03)::int AS billed,  -- errors carry no tokens: refused before any was made
           CASE WHEN t.draw_status < 0.03 THEN 'error' WHEN t.draw_status < 0.04 THEN 'cancelled' ELSE 'ok' END
                AS status,
           CASE WHEN t.draw_source < 0.6 AND t.user_idx < %(keys)s THEN 'gateway'
                WHEN t.draw_source < 0.9 THEN 'playground' ELSE 'cli' END AS source
    FROM (
        SELECT s.*, (s.user_idx * 7 + floor(random() * 5)::int * 3) %% %(models)s AS model_idx,
               random() AS draw_source, random() AS draw_status,
               floor(random() * 4000)::int + 20 AS input_tokens,
               CASE WHEN random() < 0.3 THEN floor(random() * 20000)::int ELSE 0 END AS cache_read_tokens,
               CASE WHEN random() < 0.05 THEN floor(random() * 4000)::int ELSE 0 END AS cache_write_tokens,
               floor(random() * 1200)::int AS output_tokens,
               CASE WHEN random() < 0.2 THEN floor(random() * 300)::int ELSE 0 END AS reasoning_tokens,
               300 + floor(random() * 9000)::int AS latency_ms, 80 + floor(random() * 1200)::int AS ttft_ms,
               -- under 0.5: tags (one; two from 0.2; three from 0.4), distinct by construction
               random() AS draw_tags, floor(%(tags)s * power(random(), 2))::int AS tag_idx,
               floor(random() * 99)::int AS tag_step,
               random() AS draw_end_user, floor(%(end_users)s * power(random(), 2))::int AS end_user_idx
        FROM (
            SELECT i, %(start)s::timestamptz + (i::float8 / %(total)s) * %(span)s::interval AS created_at,
                   floor(%(users)s * power(random(), 2))::int AS user_idx
            FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
        ) s
    ) t
) r
JOIN bench_users u ON u.idx = r.user_idx
JOIN bench_models m ON m.idx = r.model_idx
LEFT JOIN bench_keys k ON k.idx = r.user_idx AND r.source = 'gateway'
LEFT JOIN bench_teams tm ON tm.idx = CASE WHEN r.user_idx %% 7 = 6 THEN NULL ELSE r.user_idx %% %(teams)s END
"""

# One rollup table's rows of the records created in [start, end), from the raw records: {source} is the
# records (with their day), or for the tag table one row per record and tag. Written in day order, as the
# call path writes them (a day's rows are added on that day), so that a day's rows share pages: a hash
# aggregate's order would scatter each day over the whole table, and a 30-day view would read a page for
# almost every row (docs/benchmarks.md, "Teams, tags and end users").
ROLLUP_SQL = """
INSERT INTO {table} (key, day, {dimensions}, {sums})
SELECT concat(to_char(day, 'YYYY-MM-DD'), {key}), day, {dimensions}, {summed}
FROM ({source}) r
GROUP BY day, {dimensions}
ORDER BY day
"""
RECORDS_OF_DAYS = """SELECT (created_at AT TIME ZONE %(tz)s)::date AS day, * FROM usage_usagerecord
      WHERE created_at >= %(start)s AND created_at < %(end)s"""
# The records as the end-user and tag tables count them: those naming an end user, and each record once per tag.
END_USER_RECORDS = "SELECT * FROM ({records}) n WHERE end_user <> ''"
TAG_RECORDS = "SELECT *, unnest(string_to_array(tags, ',')) AS tag FROM ({records}) n WHERE tags <> ''"

# A narrow rollup table from a wider one: its rows summed over the dimensions the narrow one lacks, in day
# order as above.
NARROW_SQL = """
INSERT INTO {table} (key, day, {dimensions}, {sums})
SELECT concat(to_char(day, 'YYYY-MM-DD'), {key}), day, {dimensions}, {summed}
FROM {wide} GROUP BY day, {dimensions}
ORDER BY day
"""

# The raw records' sums, in Rollup.SUM_FIELDS order (checked in _check_columns).
SUMS = ("count(*)", "count(*) FILTER (WHERE status = 'error')", "count(*) FILTER (WHERE status = 'cancelled')",
        "count(*) FILTER (WHERE usage_estimated)", "sum(input_tokens)", "sum(cache_read_tokens)",
        "sum(cache_write_tokens)", "sum(output_tokens)", "sum(reasoning_tokens)", "sum(cost)",
        "coalesce(sum(latency_ms), 0)", "count(latency_ms)", "coalesce(sum(ttft_ms), 0)", "count(ttft_ms)",
        "sum(cache_write_1h_tokens)", "count(*) FILTER (WHERE unpriced)",
        "coalesce(sum(input_tokens + cache_read_tokens + cache_write_tokens + cache_write_1h_tokens + output_tokens)"
        " FILTER (WHERE unpriced), 0)")
ROLLUP_SUMS = ("requests", "errors", "cancelled", "estimated", "input_tokens", "cache_read_tokens",
               "cache_write_tokens", "output_tokens", "reasoning_tokens", "cost", "latency_ms_sum",
               "latency_count", "ttft_ms_sum", "ttft_count", "cache_write_1h_tokens", "unpriced", "unpriced_tokens")

# Every day's sums, from the raw records (as the table counts them) and from a rollup table: rows in one and
# not in the other.
VERIFY_SQL = """
WITH raw AS (SELECT day, {raw} FROM ({{records}}) r GROUP BY 1),
     rollup AS (SELECT day, {rollup} FROM {{table}} GROUP BY 1)
(SELECT * FROM raw EXCEPT SELECT * FROM rollup) UNION ALL (SELECT * FROM rollup EXCEPT SELECT * FROM raw)
""".format(raw=", ".join(SUMS), rollup=", ".join(f"sum({c})" for c in ROLLUP_SUMS))  # noqa: S608 - constants


def _key_sql(model) -> str:
    """The SQL of `model`'s key after its day, spelled as usage.rollups.row_key spells it."""
    from usage.rollups import _KEY_PREFIX, _TEXT_PREFIX

    parts = []
    for column in model.DIMENSIONS:
        if column == "source":
            parts.append("'|', source")
        elif column in _TEXT_PREFIX:  # never empty in a row of these tables
            parts.append(f"'|{_TEXT_PREFIX[column]}=', {column}")
        else:
            parts.append(f"'|{_KEY_PREFIX[column]}', coalesce({column}, 0)")
    return ", ".join(parts)


def _records_sql(model, records: str) -> str:
    """`records` (SQL of records with their day) as `model` counts them."""
    if "tag" in model.DIMENSIONS:
        return TAG_RECORDS.format(records=records)
    if "end_user" in model.DIMENSIONS:
        return END_USER_RECORDS.format(records=records)
    return records


def _rollup_sql(model) -> str:
    """ROLLUP_SQL for one table made from the raw records."""
    return ROLLUP_SQL.format(table=model._meta.db_table, dimensions=", ".join(model.DIMENSIONS), key=_key_sql(model),
                             sums=", ".join(ROLLUP_SUMS), summed=", ".join(SUMS),
                             source=_records_sql(model, RECORDS_OF_DAYS))


def _narrow_sql(model, wide) -> str:
    """NARROW_SQL for one narrow table, from the table `wide`."""
    return NARROW_SQL.format(table=model._meta.db_table, wide=wide._meta.db_table,
                             dimensions=", ".join(model.DIMENSIONS), key=_key_sql(model),
                             sums=", ".join(ROLLUP_SUMS), summed=", ".join(f"sum({c})" for c in ROLLUP_SUMS))


def _check_columns() -> None:
    """Fail loudly when the ledger gained a column this script does not fill."""
    from usage.models import Rollup, UsageRecord

    columns = {f.column for f in UsageRecord._meta.concrete_fields} - {"id"}
    if columns != set(RECORD_COLUMNS):
        raise SystemExit(f"UsageRecord's columns changed; update RECORD_COLUMNS: "
                         f"{sorted(columns ^ set(RECORD_COLUMNS))}")
    if ROLLUP_SUMS != Rollup.SUM_FIELDS:
        raise SystemExit("The rollup tables' sums changed; update ROLLUP_SUMS and SUMS")


def _seed(args: argparse.Namespace) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from usage.models import ROLLUPS, DailyEndUserUsage, DailyTagUsage, DailyUsage, UsageRecord, api_key_model
    from usage.services import day_start, ledger_timezone

    _check_columns()
    clock = Clock()
    if (UsageRecord.objects.exists() or any(t.objects.exists() for t in ROLLUPS)) and not args.reset:
        raise SystemExit("The database already holds usage records; --reset empties the usage tables first.")
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("SET work_mem = '256MB'")
        if args.reset:
            tables = ", ".join(t._meta.db_table for t in ROLLUPS)
            cursor.execute(f"TRUNCATE {tables}, usage_usagerecord RESTART IDENTITY CASCADE")
            clock.lap("emptied the usage tables")
        from providers.models import Provider

        if not Provider.objects.filter(name__startswith="bench-").exists():
            with transaction.atomic():
                _catalog(args)
            clock.lap(f"catalog: {len(CATALOG)} providers, {args.models} models, {args.users} users, "
                      f"{args.teams} teams, {args.keys} API keys")
        api_keys = api_key_model()._meta.db_table
        cursor.execute(f"""
            CREATE TEMP TABLE bench_users AS SELECT row_number() OVER (ORDER BY id) - 1 AS idx, id
                FROM accounts_user WHERE email LIKE 'bench-%';
            CREATE TEMP TABLE bench_teams AS SELECT row_number() OVER (ORDER BY id) - 1 AS idx, id
                FROM accounts_team WHERE name LIKE 'bench-team-%';
            CREATE TEMP TABLE bench_keys AS SELECT u.idx, k.id FROM {api_keys} k
                JOIN bench_users u ON u.id = k.user_id WHERE k.name LIKE 'bench-key-%';
            CREATE TEMP TABLE bench_models AS
                SELECT row_number() OVER (ORDER BY m.id) - 1 AS idx, m.id, m.provider_id, p.name AS provider_name,
                       m.name AS model_name, pr.id AS price_id, pr.input, pr.output, pr.cache_read, pr.cache_write
                FROM providers_model m JOIN providers_provider p ON p.id = m.provider_id
                JOIN providers_price pr ON pr.model_id = m.id WHERE p.name LIKE 'bench-%';
            ANALYZE bench_users; ANALYZE bench_teams; ANALYZE bench_keys; ANALYZE bench_models;
        """)  # noqa: S608 - a model's table
        cursor.execute("SELECT (SELECT count(*) FROM bench_users), (SELECT count(*) FROM bench_keys), "
                       "(SELECT count(*) FROM bench_models), (SELECT count(*) FROM bench_teams)")
        users, keys, models, teams = cursor.fetchone()

        now = timezone.now()
        start = now - timedelta(days=args.days)
        saved = _drop_indexes(cursor, "usage_usagerecord")
        # Every id the records and rollup rows point at comes from the tables made above: no need for the
        # foreign-key triggers to check each row.
        cursor.execute("SET session_replication_role = replica")
        for first in range(0, args.records, CHUNK):
            last = min(first + CHUNK, args.records) - 1
            cursor.execute(RECORDS_SQL.format(columns=", ".join(RECORD_COLUMNS)), {
                "first": first, "last": last, "total": args.records, "start": start,
                "span": f"{args.days} days", "users": users, "keys": keys, "models": models,
                "teams": max(teams, 1), "tags": args.tags, "end_users": args.end_users,
            })
            clock.lap(f"records {first + 1:,} to {last + 1:,}")
        _build_indexes(cursor, "usage_usagerecord", saved, clock)
        cursor.execute("ANALYZE usage_usagerecord")
        clock.lap("ANALYZE usage_usagerecord")

        tz = ledger_timezone()
        first_day = timezone.localtime(start, tz).date()
        last_day = timezone.localtime(now, tz).date()
        # The full table and the end-user and tag tables from the raw records, 30 days a statement; the
        # narrower tables from the full one.
        from_records = (DailyUsage, DailyEndUserUsage, DailyTagUsage)
        for table in from_records:
            name = table._meta.db_table
            saved = _drop_indexes(cursor, name)
            day = first_day
            while day <= last_day:
                end = min(day + timedelta(days=ROLLUP_DAYS), last_day + timedelta(days=1))
                cursor.execute(_rollup_sql(table), {"tz": str(tz), "start": day_start(day), "end": day_start(end)})
                day = end
            clock.lap(f"{name} {first_day} to {last_day}, from the records")
            _build_indexes(cursor, name, saved, clock)
            cursor.execute(f"VACUUM ANALYZE {name}")
            clock.lap(f"VACUUM ANALYZE {name}")
        for table in ROLLUPS:
            if table in from_records:
                continue
            name = table._meta.db_table
            wide = next(t for t in from_records if set(table.DIMENSIONS) <= set(t.DIMENSIONS))
            saved = _drop_indexes(cursor, name)
            cursor.execute(_narrow_sql(table, wide))
            _build_indexes(cursor, name, saved, clock)
            cursor.execute(f"VACUUM ANALYZE {name}")
            clock.lap(f"{name}, from {wide._meta.db_table}")
        cursor.execute("SET session_replication_role = DEFAULT")
        _verify(cursor, tz, last_day)
        clock.lap("verified")
        cursor.execute("SELECT count(*) FROM usage_usagerecord")
        records = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('usage_usagerecord'))")
        record_size = cursor.fetchone()[0]
        print(f"\n{records:,} usage records ({record_size})")
        for table in ROLLUPS:
            name = table._meta.db_table
            count = f"SELECT count(*), count(DISTINCT day), pg_size_pretty(pg_total_relation_size(%s)) FROM {name}"  # noqa: S608 - a model's table
            cursor.execute(count, [name])
            rows, days, size = cursor.fetchone()
            print(f"{name}: {rows:,} rows over {days} days ({rows // max(days, 1):,} a day, {size})")
    print(f"seeded in {time.monotonic() - clock.start:.0f} s")


def _verify(cursor, tz, last_day) -> None:
    """Every day's sums in every rollup table equal the raw records', and the service rebuilds one day
    identically in each."""
    from usage.models import ROLLUPS
    from usage.services import daily_usage_rebuild

    records = "SELECT (created_at AT TIME ZONE %(tz)s)::date AS day, * FROM usage_usagerecord"
    for table in ROLLUPS:
        cursor.execute(VERIFY_SQL.format(table=table._meta.db_table, records=_records_sql(table, records)),
                       {"tz": str(tz)})
        if differences := cursor.fetchall():
            raise SystemExit(f"{table.__name__} differs from the raw records on {len(differences)} days: "
                             f"{differences[:3]}")
    day = last_day - timedelta(days=1)

    def rows() -> dict:
        found = {}
        for table in ROLLUPS:
            fields = ("key", "day", *table.DIMENSIONS, *ROLLUP_SUMS)
            found |= {(table.__name__, row[0]): row for row in table.objects.filter(day=day).values_list(*fields)}
        return found

    before = rows()
    daily_usage_rebuild(since=day, until=day)
    if rows() != before:
        raise SystemExit(f"The SQL rollups of {day} differ from usage.services.daily_usage_rebuild's")
    print(f"  every rollup table == raw sums on every day; {day} rebuilt by the service: {len(before):,} "
          "identical rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/aspweb_bench")
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=365, help="spread over this many days, ending now")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--keys", type=int, default=200, help="API keys, one each for the first N users")
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--tags", type=int, default=200, help="at least 200: a call's tags are distinct by arithmetic")
    parser.add_argument("--end-users", type=int, default=5000)
    parser.add_argument("--reset", action="store_true", help="empty the usage tables first")
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        raise SystemExit("The benchmark seeds PostgreSQL only.")
    if args.keys > args.users:
        raise SystemExit("--keys cannot exceed --users")
    if not 200 <= args.tags <= 999 or args.end_users > 9999:
        raise SystemExit("--tags must be 200 to 999 and --end-users at most 9,999 (names of three and four digits)")
    _create_database(args.database_url)
    _setup(args.database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"seeding {args.records:,} records over {args.days} days into {urlsplit(args.database_url).path[1:]}")
    _seed(args)


if __name__ == "__main__":
    main()
