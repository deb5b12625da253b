"""What a usage record costs by batch size: one thread writes 2,048 records through
usage.services.usage_records_create in batches of 1, 16, 64 and 256 and prints the wall time and this
process's CPU per record. Run after bench/record_bench.py, whose catalog (provider recbench) it writes to.
Results in docs/benchmarks.md.

    .venv/bin/python -m bench.record_batches --database-url postgres://postgres@127.0.0.1:5432/aspweb_bench
"""

import argparse
import os
import random
import time

from bench.load import wait_for_quiet
from bench.record_bench import _call, _setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/aspweb_bench")
    parser.add_argument("--records", type=int, default=2048)
    parser.add_argument("--max-load", type=float, default=1.3, help="wait for a load average under this")
    args = parser.parse_args()
    _setup(args.database_url)
    from accounts.models import User
    from providers.models import Model, Provider
    from usage.services import usage_records_create

    provider = Provider.objects.get(name="recbench")
    models = list(Model.objects.filter(provider=provider))
    people = list(User.objects.filter(email__startswith="recbench-"))
    rng = random.Random(1)
    combos = [{"provider": provider, "model": rng.choice(models), "user": rng.choice(people), "api_key": None,
               "source": "cli"} for _ in range(200)]
    wait_for_quiet(args.max_load)
    print(f"load average before {os.getloadavg()[0]:.2f}")
    for size in (1, 16, 64, 256):
        batches = [[_call(combos, rng) for _ in range(size)] for _ in range(args.records // size + 1)]
        usage_records_create(batches.pop())  # warm: connection, caches
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            usage_records_create(batch)
        written = size * len(batches)
        print(f"batch {size:4}: wall {1000 * (time.perf_counter() - wall) / written:.3f} ms a record, "
              f"this process's CPU {1000 * (time.process_time() - cpu) / written:.3f} ms a record")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
