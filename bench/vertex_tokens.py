"""What Vertex AI's OAuth tokens cost a call: the token a call takes when one is kept (every call but about
one an hour per key and worker), and a mint (signing the JWT and the token endpoint's round trip, here the
loopback fake of tests/fakes/vertex.py). Results and the command are in docs/benchmarks.md.

    .venv/bin/python -m bench.vertex_tokens --calls 200000 --mints 50
"""

import argparse
import asyncio
import json
import statistics
import time

from providers.adapters import vertex_auth
from providers.adapters.base import Connection
from tests.fakes.vertex import REGION, FakeVertex


async def _warm(conn: Connection, calls: int) -> float:
    """Microseconds a call spends getting its token when one is kept: the mean over `calls`."""
    await vertex_auth.access_token(conn)
    started = time.perf_counter()
    for _ in range(calls):
        await vertex_auth.access_token(conn)
    return (time.perf_counter() - started) / calls * 1e6


async def _mints(conn: Connection, mints: int) -> list[float]:
    """Milliseconds of each mint, from the call's side (the worker thread's hop included)."""
    acct = vertex_auth.account(conn)
    times = []
    for _ in range(mints):
        acct.current = ("", 0.0)
        started = time.perf_counter()
        await vertex_auth.access_token(conn)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--mints", type=int, default=50)
    options = parser.parse_args()
    with FakeVertex() as fake:
        conn = Connection(kind="vertex", label="bench", base_url=fake.vertex_base_url,
                          api_key=json.dumps(fake.key()), extra={"region": REGION})
        warm = asyncio.run(_warm(conn, options.calls))
        mints = asyncio.run(_mints(conn, options.mints))
        minted = fake.mints
    print(f"kept token: {warm:.2f} µs a call (mean of {options.calls:,})")
    print(f"mint: median {statistics.median(mints):.1f} ms, p95 {sorted(mints)[int(len(mints) * 0.95) - 1]:.1f} ms "
          f"(of {options.mints}; the fake issued {minted})")


if __name__ == "__main__":
    main()
