"""Bedrock client benchmark: the adapter's aiobotocore client (botocore on aiohttp, on the event loop) against
botocore's own blocking client run in a thread, the way "boto3 in a thread" would serve an async call path.
Results, commands and how to read them are in docs/benchmarks.md.

    .venv/bin/python -m bench.bedrock_bench --streams 1 --rounds 200     # one stream at a time
    .venv/bin/python -m bench.bedrock_bench --streams 64 --rounds 3      # 64 streams at once

Both sides call ConverseStream on the fake Bedrock (tests/fakes/bedrock.py), which runs in a process of
its own, checks every SigV4 signature and sends 10 text events --delay seconds apart. The thread side holds
one thread of the loop's default executor (as asyncio.to_thread uses it) for each stream's whole length and
hands each event to the loop; the async side is providers.adapters.bedrock.stream itself. Printed per side:
the median time to the first text and to the end of a stream, the wall time of a round, and the CPU time of
this process per stream.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from typing import Any


def _serve(ready: Any, delay: float) -> None:
    from tests.fakes.bedrock import FakeBedrock

    fake = FakeBedrock().start()
    fake.reply = "one two three four five six seven eight nine ten"
    fake.chunk_delay = delay
    ready.put(fake.base_url)
    time.sleep(3600)


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aspweb.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django

    django.setup()


async def _async_side(conn: Any, request: Any) -> tuple[float, float]:
    from providers.adapters import bedrock

    started = time.perf_counter()
    first = 0.0
    async for chunk in bedrock.stream(conn, request):
        if chunk.text and not first:
            first = time.perf_counter() - started
    return first, time.perf_counter() - started


def _blocking_client(conn: Any) -> Any:
    import botocore.session
    from botocore.config import Config

    from providers.adapters.bedrock import credentials

    session = botocore.session.get_session()
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=256)
    return session.create_client("bedrock-runtime", region_name=conn.extra["aws_region"], endpoint_url=conn.base_url,
                                 config=config, **credentials(conn))


async def _thread_side(client: Any, request: Any) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    started = time.perf_counter()

    def run() -> None:
        response = client.converse_stream(modelId=request.model, messages=[
            {"role": "user", "content": [{"text": request.messages[0].text}]}])
        for event in response["stream"]:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    worker = loop.run_in_executor(None, run)
    first = 0.0
    while (event := await queue.get()) is not None:
        if "contentBlockDelta" in event and not first:
            first = time.perf_counter() - started
    await worker
    return first, time.perf_counter() - started


async def _measure(side: str, conn: Any, request: Any, streams: int, rounds: int) -> dict[str, float]:
    client = _blocking_client(conn) if side == "thread" else None
    firsts, totals, walls = [], [], []
    cpu = time.process_time()
    for _ in range(rounds):
        wall = time.perf_counter()
        calls = [_thread_side(client, request) if client else _async_side(conn, request) for _ in range(streams)]
        for first, total in await asyncio.gather(*calls):
            firsts.append(first)
            totals.append(total)
        walls.append(time.perf_counter() - wall)
    return {"first": statistics.median(firsts) * 1000, "total": statistics.median(totals) * 1000,
            "wall": statistics.median(walls) * 1000, "cpu": (time.process_time() - cpu) / len(totals) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1, help="streams at once")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between the fake's events")
    args = parser.parse_args()
    _setup()
    from providers.adapters.base import ChatRequest, Connection, Message
    from tests.fakes.bedrock import KEY_ID, REGION, SECRET

    ready: Any = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(ready, args.delay), daemon=True)
    server.start()
    try:
        conn = Connection(kind="bedrock", label="bench", base_url=ready.get(timeout=30),
                          api_key=json.dumps({"aws_secret_access_key": SECRET}),
                          extra={"aws_region": REGION, "aws_access_key_id": KEY_ID})
        request = ChatRequest(model="amazon.nova-lite-v1:0", messages=(Message("user", "Count to ten."),))

        async def both() -> None:
            for side in ("async", "thread"):
                await _measure(side, conn, request, 1, 3)  # warm-up: clients made, connections open
                result = await _measure(side, conn, request, args.streams, args.rounds)
                print(f"{side:>6}: first text {result['first']:7.1f} ms  whole stream {result['total']:7.1f} ms  "
                      f"round wall {result['wall']:8.1f} ms  CPU/stream {result['cpu']:6.2f} ms")

        print(f"{args.streams} stream(s) at once, {args.rounds} rounds, {args.delay * 1000:.0f} ms between events; "
              f"executor threads: {min(32, (os.cpu_count() or 1) + 4)}")
        asyncio.run(both())
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
