"""What logging every call's prompt and answer costs the gateway (the target: p50 added latency at most 0.5 ms
more, throughput at most 10 % less), measured on a shared, noisy machine by pairing rather than by runs apart:

    .venv/bin/python -m bench.gateway_bench logging --requests 300 --seconds 5 --rounds 6 --concurrency 8 \\
        [--database-url postgres://... --redis-url redis://...]

Two aspweb servers run side by side on the same database (and Redis), one as configured, one with
ASPWEB_LOG_BODIES=true, so that every one of its calls is logged (redacted, capped, indexed, encrypted and
written with its usage record); only one is sent requests at a time.

- latency: `--requests` rounds, each a request straight to the upstream, then through the server without
  logging, then the upstream again, then through the one with it (kept-alive connections). The added latency
  of each is the median of its differences with the upstream; the cost of logging is the difference of those
  medians, and the median of each round's difference between the two servers.
- throughput: `--rounds` pairs of `--seconds` windows at `--concurrency` connections, the two servers in turn
  (the order swapped every round); the cost is the median of each round's ratio. Each window also reads the
  server's CPU time (/proc) per call answered: other work on the machine slows a window but hardly changes
  what a call costs the server, so on a busy machine that ratio is the steadier bound on a CPU-bound worker's
  throughput.

The machine's load is printed before and after. After the run, the ledger must hold one record per
successful call and one body per successful call of the logging server, or the run fails.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.gateway_bench import OK, _load, _timed_call, _timed_first_token, environment, paired
from bench.gateway_profiles import cpu_busy


def _load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}), CPUs busy {cpu_busy():.0f} % over 1 s"


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a server process and its worker processes so far."""
    pids, total = [pid], 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            pids += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _latency(targets: list[Any], measure: Any, label: str, requests: int) -> dict[str, float]:
    times, added = paired(targets, measure, requests)
    off, on = targets[1].name, targets[2].name
    between = statistics.median(b - a for a, b in zip(times[off], times[on], strict=True))
    print(f"\n{label} ({requests} rounds)")
    print(f"  added, logging off: {added[off]:.2f} ms   logging on: {added[on]:.2f} ms   "
          f"difference of medians: {added[on] - added[off]:+.2f} ms")
    print(f"  median of each round's difference (on - off): {between:+.2f} ms")
    return {"off": added[off], "on": added[on], "difference": added[on] - added[off], "paired": between}


def _throughput(targets: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    off, on = targets[1], targets[2]
    rates: dict[str, list[float]] = {off.name: [], on.name: []}
    cpu: dict[str, list[float]] = {off.name: [], on.name: []}  # the server's CPU ms per call, each window
    errors: dict[str, int] = {off.name: 0, on.name: 0}
    print(f"\nthroughput: {args.rounds} rounds of {args.seconds:g} s per server, {args.concurrency} connections")
    for round_number in range(args.rounds):
        for target in ((off, on) if round_number % 2 == 0 else (on, off)):
            used = _cpu_seconds(target.pid)
            statuses, elapsed = asyncio.run(_load(target, concurrency=args.concurrency, seconds=args.seconds))
            used = _cpu_seconds(target.pid) - used
            ok = statuses.pop(200, 0)
            cpu[target.name].append(used * 1000 / max(ok, 1))
            OK[target.name] += ok
            errors[target.name] += sum(statuses.values())
            rates[target.name].append(ok / elapsed)
        print(f"  round {round_number + 1}: off {rates[off.name][-1]:7.1f}  on {rates[on.name][-1]:7.1f} req/s  "
              f"(on/off {rates[on.name][-1] / rates[off.name][-1]:.3f}); server CPU per call: off "
              f"{cpu[off.name][-1]:.3f}  on {cpu[on.name][-1]:.3f} ms", flush=True)
    ratios = [b / a for a, b in zip(rates[off.name], rates[on.name], strict=True)]
    ratio = statistics.median(ratios)
    print(f"  median req/s: off {statistics.median(rates[off.name]):.1f}, on {statistics.median(rates[on.name]):.1f}"
          f"; median of the rounds' on/off ratios {ratio:.3f} ({(ratio - 1) * 100:+.1f} %); "
          f"other statuses: {errors}")
    cpu_off, cpu_on = statistics.median(cpu[off.name]), statistics.median(cpu[on.name])
    more, less = (cpu_on / cpu_off - 1) * 100, (cpu_off / cpu_on - 1) * 100
    print(f"  median server CPU per call: off {cpu_off:.3f} ms, on {cpu_on:.3f} ms ({more:+.1f} %; "
          f"a CPU-bound worker's throughput {less:+.1f} %)")
    return {"ratio": ratio, "ratios": ratios, "rates": rates, "errors": errors, "cpu": cpu}


def logging_cost(args: argparse.Namespace) -> None:
    args.log_bodies = "both"
    profile = "production (PostgreSQL + Redis)" if args.redis_url else (
        "PostgreSQL" if args.database_url else "embedded (SQLite)")
    print(f"{profile}, {args.workers} worker(s) per server; before: {_load_line()}", flush=True)
    started = time.monotonic()
    with environment(args) as targets:
        whole = _latency(targets, _timed_call, "non-streamed, whole answer", args.requests)
        first = _latency(targets, _timed_first_token, "streamed, first token", args.requests)
        rates = _throughput(targets, args)
        print(f"\nafter: {_load_line()}; {(time.monotonic() - started) / 60:.1f} min")
    verdicts = [
        ("p50 added latency grows by at most 0.5 ms (whole answer)", whole["difference"] <= 0.5),
        ("p50 added time to first token grows by at most 0.5 ms", first["difference"] <= 0.5),
        ("throughput at most 10 % less", rates["ratio"] >= 0.9),
    ]
    for label, met in verdicts:
        print(f"  {label}: {'met' if met else 'NOT MET'}")
    if any(rates["errors"].values()):
        sys.exit("requests failed during the throughput windows")
