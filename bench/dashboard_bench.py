"""Dashboard benchmark: the server time of the cost dashboards over a seeded database (bench/seed_usage.py).
Results, commands and how to read them are in docs/benchmarks.md.

    .venv/bin/python -m bench.dashboard_bench --database-url postgres://postgres@127.0.0.1:5432/aspweb_bench \\
        --repeat 200 [--explain]

Each case is a GET through Django's test client in this process: middleware, session and role check, the
form, every query, the SVG charts and the template, as a worker does it (DEBUG off), but no HTTP. Each case
gets --warmup requests first, then --repeat timed ones, interleaved round-robin with the other cases so
that no case gets a warmer cache than the rest; the percentiles are over those. A CSV case reads its whole
streamed body. --explain prints EXPLAIN (ANALYZE, BUFFERS) of every query of the first case (or of
--explain-case NAME); --only TEXT keeps the cases whose name holds TEXT (given more than once, any of
them). It waits
(up to ten minutes) for a load average under --max-load first, and prints the load before and after.
"""

import argparse
import atexit
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

from bench.load import wait_for_quiet


def _setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aspweb.settings")
    # As in production: DEBUG off (no query log, no debug context), so secrets from the environment.
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    if "ASPWEB_ENCRYPTION_KEYS" not in os.environ:
        from cryptography.fernet import Fernet

        os.environ["ASPWEB_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    # Static files as production serves them: collected, with a manifest, into a throwaway folder.
    data_dir = tempfile.mkdtemp(prefix="aspweb-dashboard-bench-")
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    os.environ["ASPWEB_DATA_DIR"] = data_dir
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("collectstatic", interactive=False, verbosity=0)


def _percentiles(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return f"p50 {q[49]:6.1f}  p95 {q[94]:6.1f}  p99 {q[98]:6.1f}  max {ms[-1]:6.1f} ms"


def _cases() -> list[tuple[str, str, dict[str, Any], str]]:
    """(name, url name, query, who) for every case."""
    from django.db.models import Sum

    from usage.models import DailyTagUsage, DailyTeamUsage, DailyUsage

    top_provider = (DailyUsage.objects.values("provider_id").annotate(cost=Sum("cost")).order_by("-cost")
                    .first()["provider_id"])
    top_team = (DailyTeamUsage.objects.exclude(team=None).values("team_id").annotate(cost=Sum("cost"))
                .order_by("-cost").first())
    top_tag = DailyTagUsage.objects.values("tag").annotate(cost=Sum("cost")).order_by("-cost").first()
    attributed = [
        ("30 days, by team", "dashboard", {"group": "team"}, "finance"),
        ("30 days, by tag", "dashboard", {"group": "tag"}, "finance"),
        ("30 days, by end user", "dashboard", {"group": "end_user"}, "finance"),
        ("CSV of the view, by end user", "dashboard_export", {"group": "end_user"}, "finance"),
    ]
    if top_team:
        attributed += [("one team, by user", "dashboard", {"team": top_team["team_id"], "group": "user"}, "finance"),
                       ("one team, by end user", "dashboard", {"team": top_team["team_id"], "group": "end_user"},
                        "finance")]
    if top_tag:
        attributed.append(("one tag, by team", "dashboard", {"tag": top_tag["tag"], "group": "team"}, "finance"))
    return [
        ("30 days, by provider (default)", "dashboard", {}, "finance"),
        ("30 days, by model", "dashboard", {"group": "model"}, "finance"),
        ("30 days, by user", "dashboard", {"group": "user"}, "finance"),
        ("30 days, by API key", "dashboard", {"group": "api_key"}, "finance"),
        ("30 days, by source", "dashboard", {"group": "source"}, "finance"),
        ("30 days, by day", "dashboard", {"group": "day"}, "finance"),
        ("drill-down: a provider's models", "dashboard", {"provider": top_provider, "group": "model"}, "finance"),
        ("30 days, by user, sorted by latency", "dashboard", {"group": "user", "sort": "-latency"}, "finance"),
        ("30 days, HTMX region only", "dashboard", {"htmx": True}, "finance"),
        ("today", "dashboard", {"range": "today"}, "finance"),
        ("7 days", "dashboard", {"range": "7d"}, "finance"),
        ("this month", "dashboard", {"range": "month"}, "finance"),
        ("last month", "dashboard", {"range": "last_month"}, "finance"),
        ("My usage, the busiest person, 30 days", "my_usage", {}, "busiest"),
        ("CSV of the view, by user", "dashboard_export", {"group": "user"}, "finance"),
        ("365 days, by model (beyond the target)", "dashboard", {"range": "custom", "group": "model",
                                                                  "from": "", "to": ""}, "finance"),
        *attributed,
    ]


def _clients() -> dict[str, Any]:
    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.db.models import Sum
    from django.test import Client

    from accounts.models import User
    from aspweb.roles import FINANCE
    from usage.models import DailyUsage

    settings.ALLOWED_HOSTS = ["testserver"]
    finance, _ = User.objects.get_or_create(email="bench-finance@example.com", defaults={"name": "Finance"})
    finance.groups.add(Group.objects.get(name=FINANCE))
    busiest = User.objects.get(pk=DailyUsage.objects.exclude(user=None).values("user_id")
                               .annotate(n=Sum("requests")).order_by("-n").first()["user_id"])
    clients = {}
    for who, user in (("finance", finance), ("busiest", busiest)):
        clients[who] = Client()
        clients[who].force_login(user)
    return clients


def _get(client: Any, url: str, query: dict[str, Any]) -> Any:
    query = dict(query)
    headers = {"HTTP_HX_REQUEST": "true"} if query.pop("htmx", False) else {}
    response = client.get(url, query, **headers)
    if response.status_code != 200:
        raise SystemExit(f"{url} {query}: {response.status_code}")
    if response.streaming:
        b"".join(response)
    return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/aspweb_bench")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--explain-case", default=None,
                        help="with --explain: the case whose queries to explain (its name; default: the first)")
    parser.add_argument("--only", action="append", default=None,
                        help="only the cases whose name contains this (more than once: any of them)")
    parser.add_argument("--max-load", type=float, default=1.3, help="wait for a load average under this")
    args = parser.parse_args()
    _setup(args.database_url)
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from usage import dashboards
    from usage.models import ROLLUPS, UsageRecord

    # The CSV streams from an async generator; the sync test client reads it through async_to_sync.
    warnings.filterwarnings("ignore", "StreamingHttpResponse must consume asynchronous iterators")
    clients = _clients()
    today = dashboards.today()
    cases = [case for case in _cases() if args.only is None or any(text in case[0] for text in args.only)]
    for _, _, query, _ in cases:
        if query.get("range") == "custom":
            query.update({"from": (today - timedelta(days=364)).isoformat(), "to": today.isoformat()})
    records = UsageRecord.objects.count()
    print(f"{records:,} usage records; {connection.vendor} "
          f"{connection.pg_version if connection.vendor == 'postgresql' else ''}")
    for table in ROLLUPS:
        rows = table.objects.count()
        in_30 = table.objects.filter(day__gt=today - timedelta(days=30)).count()
        print(f"  {table.__name__}: {rows:,} rows, {in_30:,} of them in the last 30 days")
    print(f"{args.repeat} timed requests per case after {args.warmup} warm-up ones, round-robin over the cases\n")

    wait_for_quiet(args.max_load)
    before = os.getloadavg()
    queries: dict[str, int] = {}
    for name, url_name, query, who in cases:
        for _ in range(args.warmup):
            _get(clients[who], reverse(url_name), query)
        with CaptureQueriesContext(connection) as captured:
            _get(clients[who], reverse(url_name), query)
        queries[name] = len(captured)
        if args.explain and name == (args.explain_case or cases[0][0]):
            _explain(captured.captured_queries)
    times: dict[str, list[float]] = {name: [] for name, *_ in cases}
    for _ in range(args.repeat):
        for name, url_name, query, who in cases:
            start = time.perf_counter()
            _get(clients[who], reverse(url_name), query)
            times[name].append(time.perf_counter() - start)
    print(f"load average before {before[0]:.2f}, after {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)\n")
    width = max(len(name) for name, *_ in cases)
    for name, *_ in cases:
        print(f"  {name:{width}}  {_percentiles(times[name])}  ({queries[name]} queries)")


def _explain(captured: list[dict[str, str]]) -> None:
    from django.db import connection

    print("EXPLAIN ANALYZE of the case's queries:")
    with connection.cursor() as cursor:
        for query in captured:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = [row[0] for row in cursor.fetchall()]
            print(f"\n  {sql[:160]}{'…' if len(sql) > 160 else ''}")
            for line in plan:
                print(f"    {line}")
    print()


if __name__ == "__main__":
    main()
