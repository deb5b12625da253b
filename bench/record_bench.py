"""Recording benchmark: how many usage records a second the ledger writes on PostgreSQL, each with its rows
in every rollup table in the same transaction, and whether every rollup table still equals the raw records
afterwards. Results, commands and how to read them are in docs/benchmarks.md.

    .venv/bin/python -m bench.record_bench --database-url postgres://postgres@127.0.0.1:5432/aspweb_bench \\
        --processes 2 --tasks 64 --seconds 20 --combos 200

--processes worker processes (as uvicorn workers are) write for --seconds. In the default mode, `writer`,
each runs an event loop with --tasks concurrent callers of usage.writer.usage_record_write, the call
path's write (a caller waits for its record's batch to commit, then writes the next); in mode `direct`,
--threads threads each call usage.services.usage_record_create in a loop on a connection of their own
(one record, one transaction, as before group commit). --combos is how many distinct rollup rows (model,
person, key, source) the writes go to: few means many writers updating the same rows at once (locked
until commit), many means little contention. The records go to a provider of their own (recbench), whose
earlier records are removed first. --attributed counts the calls for ten teams and puts tags and end users
on half the gateway calls each (as bench/seed_usage.py does), so that the end-user and tag tables are
written too. Afterwards every row of every rollup table on the days written is
compared, column by column, with sums computed from the raw records of those days. The benchmark waits
(up to ten minutes) for a load average under --max-load before it starts, and prints the load before and
after: on a shared machine it says how much of the CPU the benchmark had.
"""

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench.load import wait_for_quiet


def _setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aspweb.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django

    django.setup()


def _catalog(combos: int, attributed: bool) -> list[dict[str, Any]]:
    """A fresh provider with four models, 50 people and 20 keys; `combos` distinct dimension tuples.
    `attributed`: ten teams, each person in one (a key in its holder's), the tuples' calls counted for them."""
    from django.db.models import Max, Min

    from accounts.models import Team, User
    from gateway.models import ApiKey
    from providers.models import Model, Price, Provider
    from usage.models import UsageRecord
    from usage.services import daily_usage_rebuild, ledger_timezone

    provider, _ = Provider.objects.get_or_create(name="recbench", kind="openai_compatible",
                                                 base_url="http://127.0.0.1:9/v1")
    earlier = UsageRecord.objects.filter(provider=provider)
    span = earlier.aggregate(first=Min("created_at"), last=Max("created_at"))
    if span["first"] is not None:
        # The earlier run's records go, and every rollup table of their days is summed again without them.
        earlier.delete()
        tz = ledger_timezone()
        daily_usage_rebuild(since=span["first"].astimezone(tz).date(), until=span["last"].astimezone(tz).date())
    models = []
    for n, (inp, out) in enumerate([("3", "15"), ("0.15", "0.6"), ("1", "5"), ("0.05", "0.08")]):
        model, created = Model.objects.get_or_create(provider=provider, name=f"recbench-model-{n}")
        if created:
            Price.objects.create(model=model, effective_from=datetime(2020, 1, 1, tzinfo=UTC), input=Decimal(inp),
                                 output=Decimal(out), cache_read=Decimal(inp) / 10)
        models.append(model)
    people = [User.objects.get_or_create(email=f"recbench-{n:02}@example.com")[0] for n in range(50)]
    teams = [Team.objects.get_or_create(name=f"recbench-team-{n}")[0] for n in range(10)] if attributed else []
    team_of = [teams[n % len(teams)].pk if teams else None for n in range(len(people))]
    keys = [ApiKey.objects.get_or_create(prefix=f"asp_recb{n:02}", defaults={
        "name": f"recbench-{n}", "user": people[n], "key_hash": f"{n:064}"})[0] for n in range(20)]
    for n, key in enumerate(keys):
        if key.team_id != team_of[n]:
            key.team_id = team_of[n]
            key.save(update_fields=["team"])
    rng = random.Random(7)
    tuples = set()
    while len(tuples) < combos:
        person = rng.randrange(len(people))
        source = rng.choice(["playground", "gateway", "cli"])
        key = person if source == "gateway" and person < len(keys) else None
        tuples.add((rng.randrange(len(models)), person, key, source if key is not None or source != "gateway"
                    else "playground"))
    return [{"provider": provider, "model": models[m], "user": people[p], "api_key": keys[k] if k is not None else None,
             "source": s, "team_id": team_of[p]} for m, p, k, s in sorted(tuples, key=str)]


def _process(mode: str, combos: list[dict[str, Any]], threads: int, tasks: int, number: int, ready: Any, go: Any,
             seconds: float, results: Any) -> None:
    """One worker process: `tasks` callers in an event loop, or `threads` threads, stopped after `seconds`."""
    if mode == "writer":
        results.put(asyncio.run(_callers(combos, tasks, number, ready, go, seconds)))
        return
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier, stop = threading.Barrier(threads + 1), threading.Event()
    writers = [threading.Thread(target=_writer, args=(combos, number * 1000 + n, latencies[n], barrier, stop))
               for n in range(threads)]
    for writer in writers:
        writer.start()
    barrier.wait()
    ready.wait()
    go.wait()
    time.sleep(seconds)
    stop.set()
    for writer in writers:
        writer.join()
    results.put([t for times in latencies for t in times])


# --attributed: half the gateway calls carry one to three of TAGS tags, half name one of END_USERS end
# users, both picked with a heavy tail (as bench/seed_usage.py seeds them).
TAGS, END_USERS = 200, 5000
ATTRIBUTED = False  # set by main() before the workers are forked


def _call(combos: list[dict[str, Any]], rng: random.Random, attributed: bool = False) -> dict[str, Any]:
    """The keyword arguments of one call's record."""
    status = rng.choice(["ok"] * 18 + ["error", "cancelled"])
    combo = rng.choice(combos)
    attribution: dict[str, Any] = {}
    if attributed and combo["source"] == "gateway":
        if rng.random() < 0.5:
            attribution["tags"] = tuple(sorted({f"tag-{int(TAGS * rng.random() ** 2):03}"
                                                for _ in range(rng.randint(1, 3))}))
        if rng.random() < 0.5:
            attribution["end_user"] = f"customer-{int(END_USERS * rng.random() ** 2):04}"
    return {
        **combo, **attribution, "status": status, "error_kind": "server" if status == "error" else "",
        "input_tokens": rng.randint(10, 5000), "cache_read_tokens": rng.choice([0, rng.randint(0, 9000)]),
        "output_tokens": rng.randint(0, 1500), "reasoning_tokens": rng.choice([0, 0, rng.randint(0, 100)]),
        "usage_estimated": status == "cancelled", "latency_ms": rng.randint(200, 9000),
        "ttft_ms": rng.choice([None, rng.randint(50, 900)]),
    }


async def _callers(combos: list[dict[str, Any]], tasks: int, number: int, ready: Any, go: Any,
                   seconds: float) -> list[float]:
    """`tasks` concurrent callers of usage_record_write in this process's event loop, as a worker's
    concurrent calls are; each writes its next record once the last one is committed."""
    from asgiref.sync import sync_to_async
    from django.db import connection

    from usage.writer import usage_record_write

    # The writer's batches run in asgiref's thread for thread-sensitive work, and so does this.
    await sync_to_async(lambda: connection.ensure_connection())()
    await asyncio.to_thread(ready.wait)
    await asyncio.to_thread(go.wait)
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def caller(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            fields = _call(combos, rng, ATTRIBUTED)
            began = time.perf_counter()
            await usage_record_write(**fields)
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(caller(number * 1000 + n) for n in range(tasks)))
    await sync_to_async(lambda: connection.close())()
    return latencies


def _writer(combos: list[dict[str, Any]], seed: int, latencies: list[float], start: threading.Barrier,
            stop: threading.Event) -> None:
    from django.db import connection

    from usage.services import usage_record_create

    rng = random.Random(seed)
    connection.ensure_connection()
    start.wait()
    try:
        while not stop.is_set():
            fields = _call(combos, rng, ATTRIBUTED)
            began = time.perf_counter()
            usage_record_create(**fields)
            latencies.append(time.perf_counter() - began)
    finally:
        connection.close()


def _verify(provider: Any) -> tuple[int, int]:
    """(rollup rows, records) after checking every row of every rollup table on the days the provider's
    records are on against sums computed from all the raw records of those days."""
    from django.db.models import Count, F, Max, Min, Q, Sum
    from django.db.models.functions import Coalesce, TruncDate

    from usage.models import ROLLUPS, Rollup, UsageRecord
    from usage.services import day_start, ledger_timezone

    tz = ledger_timezone()
    span = UsageRecord.objects.filter(provider=provider).aggregate(first=Min("created_at"), last=Max("created_at"))
    first, last = span["first"].astimezone(tz).date(), span["last"].astimezone(tz).date()
    records = UsageRecord.objects.filter(created_at__gte=day_start(first),
                                         created_at__lt=day_start(last + timedelta(days=1)))
    checked = 0
    sums = {
        "requests": Count("id"), "errors": Count("id", filter=Q(status="error")),
        "cancelled": Count("id", filter=Q(status="cancelled")),
        "estimated": Count("id", filter=Q(usage_estimated=True)),
        "input_tokens": Sum("input_tokens"), "cache_read_tokens": Sum("cache_read_tokens"),
        "cache_write_tokens": Sum("cache_write_tokens"), "output_tokens": Sum("output_tokens"),
        "reasoning_tokens": Sum("reasoning_tokens"), "cost": Sum("cost"),
        "latency_ms_sum": Coalesce(Sum("latency_ms"), 0), "latency_count": Count("latency_ms"),
        "ttft_ms_sum": Coalesce(Sum("ttft_ms"), 0), "ttft_count": Count("ttft_ms"),
        "cache_write_1h_tokens": Sum("cache_write_1h_tokens"), "unpriced": Count("id", filter=Q(unpriced=True)),
        "unpriced_tokens": Coalesce(Sum(F("input_tokens") + F("cache_read_tokens") + F("cache_write_tokens")
                                        + F("cache_write_1h_tokens") + F("output_tokens"), filter=Q(unpriced=True)), 0),
    }
    if set(sums) != set(Rollup.SUM_FIELDS):
        raise SystemExit("The rollup tables' sums changed; update record_bench._verify")
    for table in ROLLUPS:
        dimensions = ("day", *table.DIMENSIONS)
        by_tag = "tag" in table.DIMENSIONS
        own = records.exclude(end_user="") if "end_user" in table.DIMENSIONS else records
        own = own.exclude(tags="") if by_tag else own
        # The tag table: summed per set of tags in SQL, then added to each of the set's tags here.
        grouped = ("day", *(d for d in table.DIMENSIONS if d != "tag"), *(("tags",) if by_tag else ()))
        raw: dict[tuple, dict[str, Any]] = {}
        for row in own.order_by().annotate(day=TruncDate("created_at", tzinfo=tz)).values(*grouped).annotate(
                # aliased: the sums' names shadow the record's columns
                **{f"sum_{name}": expression for name, expression in sums.items()}):
            for tag in row["tags"].split(",") if by_tag else (None,):
                row["tag"] = tag
                found = raw.setdefault(tuple(row[d] for d in dimensions), dict.fromkeys(Rollup.SUM_FIELDS, 0))
                for name in Rollup.SUM_FIELDS:
                    found[name] += row[f"sum_{name}"]
        rollup = {
            tuple(getattr(row, d) for d in dimensions): {name: getattr(row, name) for name in Rollup.SUM_FIELDS}
            for row in table.objects.filter(day__gte=first, day__lte=last)
        }
        if rollup != raw:
            wrong = [k for k in raw.keys() | rollup.keys() if raw.get(k) != rollup.get(k)]
            raise SystemExit(f"{table.__name__} DIFFERS from the raw records in {len(wrong)} rows, e.g. {wrong[:2]}")
        checked += len(rollup)
    return checked, records.count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/aspweb_bench")
    parser.add_argument("--mode", choices=["writer", "direct"], default="writer")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=64, help="concurrent callers per process (mode writer)")
    parser.add_argument("--threads", type=int, default=4, help="threads per process (mode direct)")
    parser.add_argument("--max-load", type=float, default=1.3, help="wait for a load average under this")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--combos", type=int, default=200, help="distinct rollup rows written to")
    parser.add_argument("--attributed", action="store_true",
                        help="calls counted for teams, half the gateway calls with tags, half with an end user")
    args = parser.parse_args()
    global ATTRIBUTED
    ATTRIBUTED = args.attributed
    _setup(args.database_url)
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("The recording benchmark is for PostgreSQL.")
    combos = _catalog(args.combos, args.attributed)
    wait_for_quiet(args.max_load)
    before = os.getloadavg()
    connection.close()  # a forked worker must share neither the parent's connection
    connection.close_pool()  # nor the connections of its pool (DB_POOL, on by default)
    context = multiprocessing.get_context("fork")
    ready, go, results = context.Barrier(args.processes + 1), context.Event(), context.Queue()
    workers = [context.Process(target=_process, args=(args.mode, combos, args.threads, args.tasks, n, ready, go,
                                                      args.seconds, results))
               for n in range(args.processes)]
    for worker in workers:
        worker.start()
    ready.wait()  # every worker has its threads connected and waiting
    began = time.perf_counter()
    go.set()
    latencies = [t for _ in workers for t in results.get(timeout=args.seconds + 300)]
    elapsed = time.perf_counter() - began
    for worker in workers:
        worker.join()
    written = len(latencies)
    ms = sorted(t * 1000 for t in latencies)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    rows, records = _verify(combos[0]["provider"])
    print(f"load average before {before[0]:.2f}, after {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    each = f"{args.tasks} callers of usage_record_write" if args.mode == "writer" else \
        f"{args.threads} threads calling usage_record_create"
    print(f"{args.processes} processes x {each}, {args.combos} distinct full-rollup rows written to"
          f"{' (calls with teams, tags and end users)' if args.attributed else ''}, "
          f"{elapsed:.1f} s: {written:,} records, "
          f"{written / elapsed:,.0f} records/s; per write p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, "
          f"p99 {q[98]:.1f} ms")
    print(f"every rollup table == raw sums: {rows:,} rows of the days written checked column by column against "
          f"{records:,} records")


if __name__ == "__main__":
    main()
