"""Recording benchmark: how many usage records a second `usage_record_create` writes on PostgreSQL from
several threads, each record with its rollup row in one transaction, and whether the rollup still equals
the raw records afterwards. Results, commands and how to read them are in docs/benchmarks.md.

    .venv/bin/python -m bench.record_bench --database-url postgres://postgres@127.0.0.1:5432/aspweb_bench \\
        --processes 2 --threads 4 --seconds 20 --combos 200

--processes worker processes (as uvicorn workers are) each run --threads threads that write for --seconds
through usage.services.usage_record_create, the function the call path uses, each thread on its own
connection. --combos is how many distinct rollup rows (model, person, key, source) the writes go to: few
means many writers updating the same row at once (its lock is held until commit), many means little
contention. The records go to a provider of their own (recbench), emptied before the run, so that
afterwards its rollup rows can be compared, row by row and column by column, with sums computed from its
raw records. The load average before and after is printed: on a shared machine it says how much of the
CPU the benchmark had.
"""

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def _setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aspweb.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django

    django.setup()


def _catalog(combos: int) -> list[dict[str, Any]]:
    """A fresh provider with four models, 50 people and 20 keys; `combos` distinct dimension tuples."""
    from accounts.models import User
    from providers.models import ApiKey, Model, Price, Provider
    from usage.models import DailyUsage, UsageRecord

    provider, _ = Provider.objects.get_or_create(name="recbench", kind="openai_compatible",
                                                 base_url="http://127.0.0.1:9/v1")
    DailyUsage.objects.filter(provider=provider).delete()
    UsageRecord.objects.filter(provider=provider).delete()
    models = []
    for n, (inp, out) in enumerate([("3", "15"), ("0.15", "0.6"), ("1", "5"), ("0.05", "0.08")]):
        model, created = Model.objects.get_or_create(provider=provider, name=f"recbench-model-{n}")
        if created:
            Price.objects.create(model=model, effective_from=datetime(2020, 1, 1, tzinfo=UTC), input=Decimal(inp),
                                 output=Decimal(out), cache_read=Decimal(inp) / 10)
        models.append(model)
    people = [User.objects.get_or_create(email=f"recbench-{n:02}@example.com")[0] for n in range(50)]
    keys = [ApiKey.objects.get_or_create(prefix=f"asp_recb{n:02}", defaults={
        "name": f"recbench-{n}", "user": people[n], "key_hash": f"{n:064}"})[0] for n in range(20)]
    rng = random.Random(7)
    tuples = set()
    while len(tuples) < combos:
        person = rng.randrange(len(people))
        source = rng.choice(["playground", "gateway", "cli"])
        key = person if source == "gateway" and person < len(keys) else None
        tuples.add((rng.randrange(len(models)), person, key, source if key is not None or source != "gateway"
                    else "playground"))
    return [{"provider": provider, "model": models[m], "user": people[p], "api_key": keys[k] if k is not None else None,
             "source": s} for m, p, k, s in sorted(tuples, key=str)]


def _process(combos: list[dict[str, Any]], threads: int, number: int, ready: Any, go: Any, seconds: float,
             results: Any) -> None:
    """One worker process: `threads` writers, started together, stopped after `seconds`."""
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


def _writer(combos: list[dict[str, Any]], seed: int, latencies: list[float], start: threading.Barrier,
            stop: threading.Event) -> None:
    from django.db import connection

    from usage.services import usage_record_create

    rng = random.Random(seed)
    connection.ensure_connection()
    start.wait()
    try:
        while not stop.is_set():
            status = rng.choice(["ok"] * 18 + ["error", "cancelled"])
            began = time.perf_counter()
            usage_record_create(
                **rng.choice(combos), status=status, error_kind="server" if status == "error" else "",
                input_tokens=rng.randint(10, 5000), cache_read_tokens=rng.choice([0, rng.randint(0, 9000)]),
                output_tokens=rng.randint(0, 1500), reasoning_tokens=rng.choice([0, 0, rng.randint(0, 100)]),
                usage_estimated=status == "cancelled", latency_ms=rng.randint(200, 9000),
                ttft_ms=rng.choice([None, rng.randint(50, 900)]),
            )
            latencies.append(time.perf_counter() - began)
    finally:
        connection.close()


def _verify(provider: Any) -> tuple[int, int]:
    """(rollup rows, records) after checking every rollup row of the provider against raw sums."""
    from django.db.models import Count, Q, Sum
    from django.db.models.functions import Coalesce, TruncDate

    from usage.models import DailyUsage, UsageRecord
    from usage.services import ledger_timezone

    dimensions = ("day", "provider_id", "model_id", "user_id", "api_key_id", "source")
    raw = {
        tuple(row[d] for d in dimensions): {name: row[name] for name in DailyUsage.SUM_FIELDS}
        for row in UsageRecord.objects.filter(provider=provider).order_by()
        .annotate(day=TruncDate("created_at", tzinfo=ledger_timezone())).values(*dimensions).annotate(
            requests=Count("id"), errors=Count("id", filter=Q(status="error")),
            cancelled=Count("id", filter=Q(status="cancelled")), estimated=Count("id", filter=Q(usage_estimated=True)),
            input_tokens=Sum("input_tokens"), cache_read_tokens=Sum("cache_read_tokens"),
            cache_write_tokens=Sum("cache_write_tokens"), output_tokens=Sum("output_tokens"),
            reasoning_tokens=Sum("reasoning_tokens"), cost=Sum("cost"),
            latency_ms_sum=Coalesce(Sum("latency_ms"), 0), latency_count=Count("latency_ms"),
            ttft_ms_sum=Coalesce(Sum("ttft_ms"), 0), ttft_count=Count("ttft_ms"))
    }
    rollup = {
        tuple(getattr(row, d) for d in dimensions): {name: getattr(row, name) for name in DailyUsage.SUM_FIELDS}
        for row in DailyUsage.objects.filter(provider=provider)
    }
    if rollup != raw:
        wrong = [k for k in raw.keys() | rollup.keys() if raw.get(k) != rollup.get(k)]
        raise SystemExit(f"ROLLUP DIFFERS from the raw records in {len(wrong)} rows, e.g. {wrong[:2]}")
    return len(rollup), sum(row["requests"] for row in raw.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/aspweb_bench")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="per process")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--combos", type=int, default=200, help="distinct rollup rows written to")
    args = parser.parse_args()
    _setup(args.database_url)
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("The recording benchmark is for PostgreSQL.")
    combos = _catalog(args.combos)
    before = os.getloadavg()
    connection.close()  # a forked worker must not share the parent's connection
    context = multiprocessing.get_context("fork")
    ready, go, results = context.Barrier(args.processes + 1), context.Event(), context.Queue()
    workers = [context.Process(target=_process, args=(combos, args.threads, n, ready, go, args.seconds, results))
               for n in range(args.processes)]
    for worker in workers:
        worker.start()
    ready.wait()  # every worker has its threads connected and waiting
    began = time.perf_counter()
    go.set()
    latencies = [t for _ in workers for t in results.get()]
    elapsed = time.perf_counter() - began
    for worker in workers:
        worker.join()
    written = len(latencies)
    ms = sorted(t * 1000 for t in latencies)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    rows, records = _verify(combos[0]["provider"])
    print(f"load average before {before[0]:.2f}, after {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print(f"{args.processes} processes x {args.threads} threads, {args.combos} rollup rows written to, "
          f"{elapsed:.1f} s: {written:,} records, "
          f"{written / elapsed:,.0f} records/s; per write p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, "
          f"p99 {q[98]:.1f} ms")
    print(f"rollup == raw sums: {rows} rollup rows checked column by column against {records:,} records")


if __name__ == "__main__":
    main()
