"""Playground streaming benchmarks: the app's added time to first token, and 100 concurrent streams.

Three processes, as in production: the fake upstream (tests/fakes/upstream.py), one uvicorn worker serving
aspweb with DEBUG off on a fresh SQLite database, and this client. Results and how to read them are in
docs/benchmarks.md.

    .venv/bin/python -m bench.playground_bench ttft --requests 200
    .venv/bin/python -m bench.playground_bench concurrent --streams 100

ttft: per request, the time from sending the request to reading the first token, measured straight
against the fake upstream (a streamed chat completion, as the SDK sends it) and through the playground
(GET of an answer's stream until its first `delta` event), interleaved, sequential, on kept-alive
connections. The difference is what the app adds: session and role checks, claiming the answer, resolving
the model, the adapter, and writing the event. Each answer is first sent as the page sends it (a POST of
the composer, timed apart: it saves the turn and builds the answer's request).

concurrent: N answers streamed at once through one worker while the upstream sends a chunk every
`--chunk-delay` seconds; an error is any status but 200, a missing `done` event or a wrong text; a stall
is a gap between two events of a stream longer than `--stall-seconds`.
"""

import argparse
import asyncio
import itertools
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
API_KEY = "sk-bench-0001"
PROMPT = "Say hello"


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reply(words: int) -> str:
    return " ".join(f"word{n}" for n in range(words))


def serve_upstream(chunk_delay: float, words: int) -> None:
    """The fake upstream in this process until killed; its base URL goes to stdout (runs in its own process)."""
    from tests.fakes import upstream

    fake = upstream.FakeUpstream(api_key=API_KEY).start()
    fake.reply = _reply(words)
    fake.chunk_delay = chunk_delay
    print(fake.openai_base_url, flush=True)
    threading.Event().wait()


@contextmanager
def environment(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Fake upstream and uvicorn running, a member signed in; yields what to call."""
    from cryptography.fernet import Fernet

    data_dir = tempfile.mkdtemp(prefix="aspweb-bench-")
    Path(data_dir, "static").mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aspweb.settings", "ASPWEB_DATA_DIR": data_dir, "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50), "ASPWEB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
    }
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    else:
        env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    app_port = free_port()
    processes: list[subprocess.Popen] = []
    try:
        upstream = subprocess.Popen(
            [PYTHON, "-m", "bench.playground_bench", "upstream", "--chunk-delay", str(args.chunk_delay),
             "--words", str(args.words)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        processes.append(upstream)
        upstream_url = upstream.stdout.readline().strip()
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        # The page (for its CSRF cookie) renders static URLs, from the manifest as in production.
        subprocess.run([PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        # This process seeds the same database with the same settings.
        os.environ.clear()
        os.environ.update(env)
        seeded = _seed(upstream_url)
        app = subprocess.Popen(
            [PYTHON, "-m", "uvicorn", args.app, "--host", "127.0.0.1", "--port", str(app_port),
             "--workers", "1", "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env)
        processes.append(app)
        wait_for_port(app_port, app, timeout=20)
        yield {"upstream": upstream_url, "app": f"http://127.0.0.1:{app_port}", "app_pid": app.pid, **seeded}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)


def _seed(upstream_url: str) -> dict[str, Any]:
    import django

    django.setup()
    from decimal import Decimal

    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.test import Client

    from accounts.models import User
    from providers.models import Model, Price, Provider

    user = User.objects.create_user("bench@example.com", secrets.token_urlsafe(12))
    user.groups.add(Group.objects.get(name="Member"))
    provider = Provider.objects.create(name="bench", kind="openai_compatible", base_url=upstream_url,
                                       api_key=API_KEY, max_retries=0)
    model = Model.objects.create(provider=provider, name="fake-model-a")
    Price.objects.create(model=model, input=Decimal("1"), output=Decimal("2"))
    client = Client()
    client.force_login(user)
    return {"cookies": {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value},
            "model": model.pk}


def _signed_in(client: httpx.Client, env: dict[str, Any]) -> None:
    """The playground page once, for the CSRF cookie its form posts with."""
    for name, value in env["cookies"].items():
        client.cookies.set(name, value)
    response = httpx.get(f"{env['app']}/playground/", cookies=env["cookies"])
    assert response.status_code == 200, response.status_code
    client.cookies.set("csrftoken", response.cookies["csrftoken"])
    client.headers["X-CSRFToken"] = response.cookies["csrftoken"]


def _send(client: httpx.Client, env: dict[str, Any]) -> int:
    """A new conversation with one answer, sent as the page sends it; the answer's id."""
    response = client.post("/playground/send/", headers={"HX-Request": "true"},
                           data={"model": env["model"], "max_tokens": 256, "prompt": PROMPT})
    assert response.status_code == 200, response.status_code
    return int(re.search(r"/playground/answers/(\d+)/stream/", response.text).group(1))


def _upstream_ttft(client: httpx.Client, url: str) -> float:
    body = {"model": "fake-model-a", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 256,
            "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = None
    with client.stream("POST", f"{url}/chat/completions", json=body,
                       headers={"Authorization": f"Bearer {API_KEY}"}) as response:
        for line in response.iter_lines():
            if first is None and line.startswith("data: {") and '"content": "' in line and '"content": ""' not in line:
                first = time.perf_counter() - started
    assert first is not None, "the upstream sent no content"
    return first * 1000


def _app_ttft(client: httpx.Client, answer: int) -> tuple[float, float]:
    """Milliseconds to the response's headers (the view has checked the session, the role and the owner)
    and to the first delta event."""
    started = time.perf_counter()
    first, done = None, False
    with client.stream("GET", f"/playground/answers/{answer}/stream/") as response:
        headers = time.perf_counter() - started
        assert response.status_code == 200, response.status_code
        for line in response.iter_lines():
            if first is None and line == "event: delta":
                first = time.perf_counter() - started
            done = done or line == "event: done"
    assert first is not None and done, "the playground sent no delta, or no done"
    return headers * 1000, first * 1000


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"{statistics.median(ordered):.2f} ms (p90 {p90:.2f}, min {ordered[0]:.2f})"


def ttft(args: argparse.Namespace) -> dict[str, Any]:
    with environment(args) as env, httpx.Client(timeout=30) as upstream, \
            httpx.Client(base_url=env["app"], timeout=30) as app:
        _signed_in(app, env)
        for _ in range(args.warmup):
            answer = _send(app, env)
            _upstream_ttft(upstream, env["upstream"])
            _app_ttft(app, answer)
        sending, direct, headers, through_app = [], [], [], []
        for _ in range(args.requests):
            started = time.perf_counter()
            answer = _send(app, env)
            sending.append((time.perf_counter() - started) * 1000)
            direct.append(_upstream_ttft(upstream, env["upstream"]))
            to_headers, to_first = _app_ttft(app, answer)
            headers.append(to_headers)
            through_app.append(to_first)
    added = [a - d for a, d in zip(through_app, direct, strict=True)]
    result = {
        "requests": args.requests, "app": args.app,
        "upstream_alone_ms": statistics.median(direct), "through_playground_ms": statistics.median(through_app),
        "playground_headers_ms": statistics.median(headers), "added_ms_median": statistics.median(added),
        "sending_ms": statistics.median(sending),
    }
    print(f"requests                 {args.requests} sequential (after {args.warmup} warm-up), app {args.app}")
    print(f"upstream alone           {_summary(direct)}")
    print(f"through the playground   {_summary(through_app)}")
    print(f"  of which to headers    {_summary(headers)}")
    print(f"added by the app         {_summary(added)}  (per request: playground minus upstream)")
    print(f"sending (the POST before each stream, not in the above) {_summary(sending)}")
    return result


def breakdown(args: argparse.Namespace) -> dict[str, Any]:
    """Time to first token in this process, layer by layer: the adapter alone, the call path, and the
    playground's event generator."""
    with environment(args):
        from django.test import RequestFactory

        from accounts.models import User
        from aspweb.inline import inline_or_hop
        from playground import services, views
        from providers import calls
        from providers.adapters import openai_compat
        from providers.adapters.base import ChatRequest, Message
        from providers.models import Model, Provider
        from providers.services import connection_for

        connection = connection_for(Provider.objects.get())
        request = RequestFactory().get("/")
        request.user = User.objects.get()
        model = Model.objects.select_related("provider").get()
        # Turns saved here keep their requests in this process, as the worker's own sends do.
        answers = iter([services.turn_create(user=request.user, conversation=None, models=[model],
                                             params=services.Params(max_tokens=256), prompt=PROMPT).answers.get().pk
                        for _ in range(2 * (args.requests + args.warmup))])

        async def playground_events() -> Any:
            claim = await inline_or_hop(views._claim, request, next(answers))  # as role_required runs it
            async for event in views._answer_events(claim):
                yield event

        async def first_of(stream: Any) -> float:
            started = time.perf_counter()
            first = None
            async for item in stream:
                if first is None and (getattr(item, "text", "") or str(item).startswith("event: delta")):
                    first = (time.perf_counter() - started) * 1000
            return first

        def layers() -> dict[str, Any]:
            message = (Message("user", PROMPT),)
            return {
                "adapter alone": lambda: openai_compat.stream(
                    connection, ChatRequest(model="fake-model-a", messages=message, max_tokens=256)),
                "calls.stream_chat": lambda: calls.stream_chat(
                    ChatRequest(model="bench/fake-model-a", messages=message, max_tokens=256),
                    caller=calls.Caller(source="cli")),
                "playground events": playground_events,
            }

        async def measure() -> dict[str, float]:
            medians = {}
            for name, make in layers().items():
                for _ in range(args.warmup):
                    await first_of(make())
                medians[name] = statistics.median([await first_of(make()) for _ in range(args.requests)])
            return medians

        medians = asyncio.run(measure())
    print(f"time to first token in-process, median of {args.requests}:")
    for name, value in medians.items():
        print(f"  {name:22} {value:8.2f} ms")
    return {"median_ms": medians}


async def _stream_one(client: httpx.AsyncClient, answer: int, expected: str, delay: float) -> dict[str, Any]:
    await asyncio.sleep(delay)
    started = time.perf_counter()
    times, deltas, done, status = [], [], None, 0
    try:
        async with client.stream("GET", f"/playground/answers/{answer}/stream/") as response:
            status = response.status_code
            name = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                    if name == "delta":
                        times.append(time.perf_counter())
                    elif name == "done":
                        done = time.perf_counter()
                elif line.startswith("data: ") and name == "delta":
                    deltas.append(line.removeprefix("data: "))
    except httpx.HTTPError as exc:
        return {"error": repr(exc)}
    gaps = [b - a for a, b in itertools.pairwise(times)]
    text_ok = "".join(deltas) == expected
    return {
        "error": None if status == 200 and done and text_ok else f"status {status}, done {bool(done)}, "
                                                                   f"text ok {text_ok}",
        "ttft": (times[0] - started) if times else None, "max_gap": max(gaps, default=0.0),
        "done_after": (done - times[-1]) if done and times else None, "total": time.perf_counter() - started,
    }


def concurrent(args: argparse.Namespace) -> dict[str, Any]:
    expected = _reply(args.words)
    with environment(args) as env:
        with httpx.Client(base_url=env["app"], timeout=30) as sender:
            _signed_in(sender, env)
            answers = [_send(sender, env) for _ in range(args.streams)]

        async def run() -> list[dict[str, Any]]:
            limits = httpx.Limits(max_connections=args.streams + 10, max_keepalive_connections=args.streams + 10)
            async with httpx.AsyncClient(base_url=env["app"], cookies=env["cookies"], timeout=120,
                                         limits=limits) as client:
                step = args.ramp / args.streams
                return await asyncio.gather(*(_stream_one(client, answer, expected, n * step)
                                              for n, answer in enumerate(answers)))

        cpu_before = _cpu_seconds(env["app_pid"])
        started = time.perf_counter()
        results = asyncio.run(run())
        wall = time.perf_counter() - started
        cpu = _cpu_seconds(env["app_pid"]) - cpu_before
        from playground.models import Answer

        saved = Answer.objects.filter(pk__in=answers)
        saved_ok = saved.filter(status="ok", content=expected).count()
        failures = sorted({answer.error_message for answer in saved.exclude(status="ok")})
    errors = [r["error"] for r in results if r["error"]]
    ttfts = sorted(r["ttft"] * 1000 for r in results if r.get("ttft") is not None)
    gaps = sorted(r["max_gap"] for r in results if "max_gap" in r)
    done_after = sorted(r["done_after"] for r in results if r.get("done_after") is not None)
    stalled = [gap for gap in gaps if gap > args.stall_seconds]
    ideal = args.chunk_delay * (args.words + 1)
    result = {
        "streams": args.streams, "errors": len(errors), "stalled": len(stalled), "saved_ok": saved_ok,
        "wall_s": wall, "ttft_median_ms": statistics.median(ttfts), "ttft_max_ms": ttfts[-1],
        "max_gap_s": gaps[-1], "done_after_max_s": done_after[-1], "ideal_stream_s": ideal, "worker_cpu_s": cpu,
    }
    print(f"streams at once          {args.streams} on one uvicorn worker, {args.words} chunks each, "
          f"one every {args.chunk_delay} s (a stream alone: ≈{ideal:.2f} s), "
          + (f"started over {args.ramp} s" if args.ramp else "all started together"))
    print(f"errors                   {len(errors)}{': ' + '; '.join(errors[:5]) if errors else ''}")
    failed = f" (saved errors: {'; '.join(failures)})" if failures else ""
    print(f"answers saved complete   {saved_ok} of {args.streams}{failed}")
    print(f"stalls (gap > {args.stall_seconds} s)     {len(stalled)} (between two tokens of a stream)")
    print(f"largest gap in a stream  {gaps[-1] * 1000:.0f} ms between tokens "
          f"(median of the streams' largest: {statistics.median(gaps) * 1000:.0f} ms)")
    print(f"last token to done       median {statistics.median(done_after) * 1000:.0f} ms, "
          f"max {done_after[-1] * 1000:.0f} ms (saving the answer and its usage record)")
    print(f"time to first token      median {statistics.median(ttfts):.0f} ms, max {ttfts[-1]:.0f} ms")
    print(f"all {args.streams} done in          {wall:.2f} s")
    events = args.streams * (args.words + 1)
    print(f"worker CPU               {cpu:.2f} s for {events} events: {cpu / events * 1e6:.0f} µs per event, "
          f"{cpu / wall:.0%} of a core on average")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, defaults in (("ttft", {"chunk_delay": 0.0, "words": 5}), ("breakdown", {"chunk_delay": 0.0, "words": 5}),
                           ("concurrent", {"chunk_delay": 0.05, "words": 40})):
        command = sub.add_parser(name)
        command.add_argument("--chunk-delay", type=float, default=defaults["chunk_delay"])
        command.add_argument("--words", type=int, default=defaults["words"], help="chunks in each answer")
        command.add_argument("--database-url", default="", help="default: a fresh SQLite database")
        command.add_argument("--app", default="aspweb.asgi:application", help="the ASGI app uvicorn serves")
        command.add_argument("--json", action="store_true", help="also print the result as JSON")
    for name in ("ttft", "breakdown"):
        sub.choices[name].add_argument("--requests", type=int, default=200)
        sub.choices[name].add_argument("--warmup", type=int, default=20)
    sub.choices["concurrent"].add_argument("--streams", type=int, default=100)
    sub.choices["concurrent"].add_argument("--stall-seconds", type=float, default=1.0)
    sub.choices["concurrent"].add_argument("--ramp", type=float, default=0.0,
                                           help="start the streams evenly over this many seconds")
    upstream = sub.add_parser("upstream", help="serve the fake upstream (used by the others)")
    upstream.add_argument("--chunk-delay", type=float, default=0.0)
    upstream.add_argument("--words", type=int, default=5)
    args = parser.parse_args()
    if args.command == "upstream":
        serve_upstream(args.chunk_delay, args.words)
        return
    result = {"ttft": ttft, "concurrent": concurrent, "breakdown": breakdown}[args.command](args)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
