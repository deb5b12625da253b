"""The gateway's comparison table for issue 15, in one command: each configuration (profile, budgets,
workers) measured in a process of its own (`gateway_bench measure`: Django is set up once per process),
beside LiteLLM in the same run, and the ledger checked after each.

    .venv/bin/python -m bench.gateway_bench profiles --litellm /tmp/litellm-venv/bin/litellm \\
        --database-url postgres://postgres@127.0.0.1:5432/aspweb_bench --redis-url redis://127.0.0.1:6379/4

Without --database-url and --redis-url only the embedded rows are measured; without --litellm, aspweb's
columns only. The measured processes' own output (the ledger lines) goes to stderr as they run; the
table, at the end, to stdout. Exits with 1 when a configuration failed or its ledger was not exact.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    production: bool
    budgets: bool
    workers: int = 1
    measures: str = "throughput,latency,ttft"
    litellm: bool = True

    @property
    def label(self) -> tuple[str, str, str]:
        return ("production" if self.production else "embedded",
                "10 + 1,000" if self.budgets else "none", str(self.workers))


CONFIGS = (
    Config(production=False, budgets=False),
    Config(production=False, budgets=True),
    Config(production=True, budgets=False),
    Config(production=True, budgets=True),
    # Two workers against one, with the same budgets: throughput only (one connection uses one worker).
    Config(production=True, budgets=False, workers=2, measures="throughput", litellm=False),
    Config(production=True, budgets=True, workers=2, measures="throughput", litellm=False),
)


def command(config: Config, args: argparse.Namespace) -> list[str]:
    line = [sys.executable, "-m", "bench.gateway_bench", "measure", "--measures", config.measures,
            "--workers", str(config.workers), "--seconds", str(args.seconds), "--concurrency",
            str(args.concurrency), "--requests", str(args.requests), "--kind", args.kind, "--app", args.app]
    if config.production:
        line += ["--database-url", args.database_url, "--redis-url", args.redis_url]
    if config.budgets:
        line.append("--budgets")
    if config.litellm and args.litellm:
        line += ["--litellm", args.litellm]
    return line


def run(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    print(f"\n== {' / '.join(config.label)} ({config.measures})", file=sys.stderr, flush=True)
    done = subprocess.run(command(config, args), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    results = [line.removeprefix("RESULT ") for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(results[-1]) if results else {}
    result["returncode"] = done.returncode
    return result


def _pair(result: dict[str, Any], aspweb: float | None, litellm: float | None, unit: str, digits: int) -> str:
    if aspweb is None:
        return "failed" if result.get("returncode") else "—"
    if litellm is None:
        return f"{aspweb:,.{digits}f} {unit}"
    return f"{aspweb:,.{digits}f} / {litellm:,.{digits}f} {unit} ({aspweb / litellm:.2f}x)"


def row(config: Config, result: dict[str, Any], one_worker: dict[str, Any] | None) -> str:
    rps = result.get("aspweb_rps")
    if config.workers > 1 and rps is not None and one_worker and one_worker.get("aspweb_rps"):
        throughput = f"{rps:,.0f} req/s ({rps / one_worker['aspweb_rps']:.2f}x one worker)"
    else:
        throughput = _pair(result, rps, result.get("litellm_rps"), "req/s", 0)
    added = result.get("added") or {}
    ttft = result.get("ttft_added") or {}
    ledger = result.get("ledger")
    if ledger is None:
        exact = "not checked (the run failed)"
    else:
        exact = (f"{ledger['records']:,} = {ledger['calls']:,} ✓" if ledger["exact"] else
                 f"**{ledger['records']:,} ok + {ledger['other_records']:,} others ≠ {ledger['calls']:,}**")
    errors = {name: result.get(f"{name}_other_statuses") for name in ("aspweb", "litellm")}
    errors_text = ", ".join(f"{name} {value}" for name, value in errors.items() if value) or "none"
    cells = [*config.label, throughput, _pair(result, added.get("aspweb"), added.get("litellm"), "ms", 2),
             _pair(result, ttft.get("aspweb"), ttft.get("litellm"), "ms", 2), exact, errors_text,
             f"{result.get('busy_before', float('nan')):.0f} % / {result.get('busy_after', float('nan')):.0f} %"]
    return "| " + " | ".join(cells) + " |"


def profiles(args: argparse.Namespace) -> None:
    production = bool(args.database_url and args.redis_url)
    if not production:
        print("no --database-url and --redis-url: the production rows are left out", file=sys.stderr)
    configs = [config for config in CONFIGS if production or not config.production]
    started = time.monotonic()
    results = [run(config, args) for config in configs]
    print(f"\n{len(configs)} configurations in {(time.monotonic() - started) / 60:.1f} min on {_machine()}; "
          f"LiteLLM: {args.litellm or 'not measured'}")
    one_worker = {(config.production, config.budgets): result
                  for config, result in zip(configs, results, strict=True) if config.workers == 1}
    print(f"\nthroughput: {args.concurrency} connections, non-streamed, {args.seconds:g} s each; added latency: "
          f"p50 of {args.requests} paired differences with the upstream at 1 connection; TTFT added: the same, "
          "streamed, to the first content chunk. aspweb / LiteLLM (ratio: aspweb's over LiteLLM's).\n")
    print("| profile | budgets | aspweb workers | throughput | added latency, p50 | TTFT added, median "
          "| ledger: records = successful calls | other statuses | CPU busy before / after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for config, result in zip(configs, results, strict=True):
        print(row(config, result, one_worker.get((config.production, config.budgets))))
    failed = [config.label for config, result in zip(configs, results, strict=True)
              if result["returncode"] or not (result.get("ledger") or {}).get("exact")]
    if failed:
        raise SystemExit(f"\nFAILED (a run's error, or a ledger not exactly once): {failed}")


def _machine() -> str:
    models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")]
    return f"{os.cpu_count()} CPUs ({models[0] if models else 'unknown model'}), load average at the end " \
           f"{os.getloadavg()[0]:.2f}"


def cpu_busy(seconds: float = 1.0) -> float:
    """How busy the machine's CPUs are, in percent, over `seconds` (/proc/stat): taken when none of the
    run's own processes is running, it is the other work on the machine."""
    def sample() -> tuple[int, int]:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields) - idle, sum(fields)

    busy, total = sample()
    time.sleep(seconds)
    busy_now, total_now = sample()
    return 100 * (busy_now - busy) / max(1, total_now - total)
