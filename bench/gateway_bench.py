"""Gateway benchmarks: what /v1/chat/completions adds to a call, how many calls one worker serves, and
whether its memory stays flat. Results, commands and how to read them are in docs/benchmarks.md.

Three processes, as in production: the fake upstream (tests/fakes/upstream.py) answering at once, uvicorn
serving aspweb with DEBUG off on a fresh SQLite database (or --database-url), and this client. Every call
through aspweb writes its usage record, as in production, and after every run the ledger must hold exactly
one record per call the client saw succeed (bench/gateway_setup.py), or the run fails.

    .venv/bin/python -m bench.gateway_bench latency --requests 500
    .venv/bin/python -m bench.gateway_bench latency --requests 300 --api responses [--kind openai]
    .venv/bin/python -m bench.gateway_bench latency --requests 500 --endpoint both
    .venv/bin/python -m bench.gateway_bench throughput --seconds 20 --concurrency 16
    .venv/bin/python -m bench.gateway_bench memory --calls 100000 --concurrency 16
    .venv/bin/python -m bench.gateway_bench breakdown --requests 300
    .venv/bin/python -m bench.gateway_bench profiles --litellm /tmp/litellm-venv/bin/litellm \
        --database-url postgres://postgres@127.0.0.1:5432/aspweb_bench --redis-url redis://127.0.0.1:6379/4

Options:
    --app bench.sdk_client_reuse:application   aspweb with the adapter keeping its SDK clients (an experiment)
    --litellm /tmp/litellm-venv/bin/litellm    also measure LiteLLM's proxy (one worker, same upstream)
    --database-url postgres://...              aspweb on PostgreSQL (an existing database, emptied first)
    --redis-url redis://...                    the production profile: with --database-url, Redis (that
                                               database emptied first) and a Celery worker with its beat
    --workers N                                aspweb's uvicorn workers (memory samples only the parent)
    --budgets                                  10 budgets covering every bench call, 1,000 per-person others
    --log-bodies                               every aspweb call logs its prompt and answer (ASPWEB_LOG_BODIES)

latency: one client, sequential requests on kept-alive connections, each request sent straight to the
upstream and then through the gateway, interleaved; "added" is the median of the per-pair differences.
Streamed, the same for the time to the first content chunk (TTFT). With --api responses, each round also
sends the same prompt to /v1/responses (OpenAI's Responses API), so that both endpoints' added latency come
from one run; the upstream is then called directly in the format the gateway calls it in: chat completions
for an OpenAI-compatible provider, the Responses API for --kind openai (spoken natively). `--endpoint
embeddings` measures POST /v1/embeddings instead (EMBED_INPUTS texts, then one of them, vectors of
EMBED_DIMENSIONS floats, asked for as floats and as base64, the openai SDK's default; the upstream is called
as the gateway calls it: in base64 for --kind openai, in floats for an OpenAI-compatible provider);
`--endpoint both` measures chat completions and embeddings in one run.

throughput: N connections sending non-streamed requests back to back for S seconds (a small HTTP/1.1
client on asyncio streams, so that the client costs little of the machine's CPU); the upstream alone is
measured the same way, to show its own ceiling.

memory: the worker's resident size (VmRSS) every 10,000 calls up to --calls.

profiles: the comparison table of issue 15 (bench/gateway_profiles.py): each profile with and without
budgets, and two workers against one, each configuration in a process of its own, beside LiteLLM.

logging: what logging every call's prompt and answer costs (bench/logging_bench.py): two aspweb servers on
one database, one logging every call, measured alternately (latency in interleaved pairs, throughput in
alternating windows).

breakdown: in this process, the ASGI handler called directly, sequentially: the whole call, then with the
provider's HTTP, the usage record and the call path taken away one by one (CPU and wall time per call);
with `--endpoint embeddings` (or both), whole embeddings calls in either encoding after the chat call.
"""

import argparse
import asyncio
import dataclasses
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.gateway_profiles import cpu_busy, profiles
from bench.gateway_setup import bodies_line, ledger_check, seed
from bench.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
UPSTREAM_KEY = "sk-bench-0001"
LITELLM_KEY = "sk-litellm-bench-0001"
PROMPT = "Say hello"
# An embeddings request as a retrieval application sends one: a batch of passages, vectors of
# text-embedding-3-small's size.
EMBED_INPUTS = [f"Passage {n}: the quick brown fox jumps over the lazy dog, and the dog sleeps on." for n in range(8)]
EMBED_DIMENSIONS = 1536
# Answers with status 200 per target name in this run, for the ledger's exactly-once check.
OK: Counter = Counter()


@dataclass(frozen=True)
class Target:
    """One place to send chat completions to."""

    name: str
    base_url: str  # ends in /v1
    key: str
    model: str
    pid: int | None = None
    # The endpoint called: "chat" (chat completions) or "responses" (the Responses API).
    api: str = "chat"
    # Whose successful calls these are, for the ledger's check (OK): the target's name unless told.
    tally: str = ""
    # latency: what a gateway target is compared with, when not the first target (the upstream).
    baseline: "Target | None" = None
    embed_model: str = ""  # "": the target has no embedding model (LiteLLM, as the bench configures it)

    def body(self, **fields: Any) -> dict[str, Any]:
        if self.api == "responses":
            return {"model": self.model, "input": PROMPT, "max_output_tokens": 64, **fields}
        return {"model": self.model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64, **fields}

    @property
    def url(self) -> str:
        return f"{self.base_url}/{'responses' if self.api == 'responses' else 'chat/completions'}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}


def serve_upstream() -> None:
    """The fake upstream in this process until killed; its base URL goes to stdout (runs in its own process)."""
    from tests.fakes import upstream

    fake = upstream.FakeUpstream(api_key=UPSTREAM_KEY).start()
    fake.usage = {"input_tokens": 12, "output_tokens": 7}
    fake.embedding_dimensions = EMBED_DIMENSIONS
    print(fake.openai_base_url, flush=True)
    threading.Event().wait()


@contextmanager
def _processes() -> Iterator[list[subprocess.Popen]]:
    processes: list[subprocess.Popen] = []
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def environment(args: argparse.Namespace) -> Iterator[list[Target]]:
    """The upstream, aspweb (and LiteLLM when asked) running; yields the targets, upstream first. With
    --redis-url, aspweb runs as the production profile does: PostgreSQL, Redis, a Celery worker with its beat,
    and --workers uvicorn workers. When the run ends without error, the ledger is checked: one usage record
    per successful call (`args.ledger` holds the result; a difference ends the run with an error)."""
    from cryptography.fernet import Fernet

    if args.redis_url and not args.database_url:
        raise SystemExit("--redis-url is the production profile: it needs --database-url (PostgreSQL) too")
    data_dir = tempfile.mkdtemp(prefix="aspweb-gateway-bench-")
    Path(data_dir, "static").mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aspweb.settings", "ASPWEB_DATA_DIR": data_dir, "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50), "ASPWEB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
    }
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER", "ASPWEB_LOG_BODIES"):
        env.pop(name, None)
    if args.log_bodies == "on":
        env["ASPWEB_LOG_BODIES"] = "true"
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    if args.redis_url:
        import redis

        env["REDIS_URL"] = args.redis_url
        redis.Redis.from_url(args.redis_url).flushdb()  # an earlier run's kept versions, counters, tasks
    OK.clear()
    try:
        with _processes() as processes:
            upstream = subprocess.Popen([PYTHON, "-m", "bench.gateway_bench", "upstream"], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, text=True)
            processes.append(upstream)
            upstream_url = upstream.stdout.readline().strip()
            targets = [Target("upstream", upstream_url, UPSTREAM_KEY, "fake-model-a", upstream.pid,
                              embed_model="fake-embed")]

            subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
            if args.database_url:  # rows of an earlier run are encrypted with another run's key
                subprocess.run([PYTHON, "manage.py", "flush", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
            os.environ.clear()
            os.environ.update(env)  # this process seeds the same database with the same settings
            key = _seed(upstream_url, args)
            worker = None
            if args.redis_url:
                worker = subprocess.Popen(
                    [PYTHON, "-m", "celery", "-A", "aspweb", "--quiet", "worker", "-B", "-s",
                     str(Path(data_dir, "beat")), "--loglevel", "WARNING"], cwd=ROOT, env=env)
                processes.append(worker)
            port = free_port()
            app = subprocess.Popen(
                [PYTHON, "-m", "uvicorn", args.app, "--host", "127.0.0.1", "--port", str(port),
                 "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env)
            processes.append(app)
            wait_for_port(port, app, timeout=90)
            targets.append(Target("aspweb", f"http://127.0.0.1:{port}/v1", key, "bench/fake-model-a", app.pid,
                                  embed_model="bench/fake-embed"))
            if args.log_bodies == "both":  # a second server, logging every call (bench/logging_bench.py)
                targets.append(_server(args, {**env, "ASPWEB_LOG_BODIES": "true"}, processes, key, "aspweb-logging"))

            if args.litellm:
                targets.append(_litellm(args.litellm, data_dir, upstream_url, env, processes))
            for target in targets:  # warm up: imports, connections, first-call caches
                with httpx.Client(timeout=30) as client:
                    for _ in range(20):
                        response = client.post(f"{target.base_url}/chat/completions", headers=target.headers,
                                               json=target.body())
                        assert response.status_code == 200, (target.name, response.status_code, response.text)
                        OK[target.name] += 1
            if args.workers > 1:  # every worker's too: a kept-alive connection stays with one
                statuses, _ = asyncio.run(_load(targets[1], concurrency=4 * args.workers, calls=50 * args.workers))
                OK["aspweb"] += statuses[200]
            _alive(worker)
            yield targets
            _alive(worker)
            args.ledger = ledger_check(OK["aspweb"] + OK["aspweb-logging"])
            print(args.ledger.line(), file=sys.stderr, flush=True)
            if args.log_bodies != "off":
                logged = OK["aspweb-logging"] if args.log_bodies == "both" else OK["aspweb"]
                print(bodies_line(logged), file=sys.stderr, flush=True)
            if not args.ledger.exact:
                raise SystemExit(f"aspweb's ledger does not hold one record per successful call: {args.ledger.line()}")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _server(args: argparse.Namespace, env: dict[str, str], processes: list[subprocess.Popen], key: str,
            name: str) -> Target:
    port = free_port()
    app = subprocess.Popen(
        [PYTHON, "-m", "uvicorn", args.app, "--host", "127.0.0.1", "--port", str(port), "--workers",
         str(args.workers), "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env)
    processes.append(app)
    wait_for_port(port, app, timeout=90)
    return Target(name, f"http://127.0.0.1:{port}/v1", key, "bench/fake-model-a", app.pid)


def _alive(worker: subprocess.Popen | None) -> None:
    if worker is not None and worker.poll() is not None:
        raise SystemExit(f"the Celery worker exited with {worker.returncode}")


def _litellm(executable: str, data_dir: str, upstream_url: str, env: dict[str, str],
             processes: list[subprocess.Popen]) -> Target:
    port = free_port()
    config = Path(data_dir, "litellm.yaml")
    config.write_text(json.dumps({
        "model_list": [{"model_name": "fake-model-a", "litellm_params": {
            "model": "openai/fake-model-a", "api_base": upstream_url, "api_key": UPSTREAM_KEY}}],
        "general_settings": {"master_key": LITELLM_KEY},
    }))
    litellm_env = {name: value for name, value in env.items()
                   if name not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    litellm = subprocess.Popen(
        [executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
         "--num_workers", "1"], cwd=data_dir, env={**litellm_env, "LITELLM_LOG": "ERROR"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes.append(litellm)
    wait_for_port(port, litellm, timeout=90)
    return Target("litellm", f"http://127.0.0.1:{port}/v1", LITELLM_KEY, "fake-model-a", litellm.pid)


def _seed(upstream_url: str, args: argparse.Namespace) -> str:
    import django

    django.setup()
    key = seed(upstream_url, args.kind, budgets=args.budgets)
    from django.db import connection

    connection.close()  # not held open beside the workers' connections while measuring
    return key


# -- latency ----------------------------------------------------------------------------------------------


def _timed_call(client: httpx.Client, target: Target) -> float:
    started = time.perf_counter()
    response = client.post(target.url, headers=target.headers, json=target.body())
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (target.name, response.status_code, response.text)
    OK[target.tally or target.name] += 1
    return elapsed * 1000


def _timed_first_token(client: httpx.Client, target: Target) -> float:
    body = target.body(stream=True) if target.api == "responses" else target.body(
        stream=True, stream_options={"include_usage": True})
    started = time.perf_counter()
    first = None
    with client.stream("POST", target.url, headers=target.headers, json=body) as response:
        assert response.status_code == 200, (target.name, response.status_code)
        for line in response.iter_lines():
            if first is None and line.startswith("data: {"):
                event = json.loads(line[len("data: "):])
                choices = event.get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content") or event.get("type") == "response.output_text.delta":
                    first = time.perf_counter() - started
    assert first is not None, f"{target.name} streamed no content"
    OK[target.tally or target.name] += 1
    return first * 1000


def _timed_embedding(client: httpx.Client, target: Target, encoding: str, inputs: list[str]) -> float:
    # The upstream alone is asked as aspweb asks it: in the encoding the client asked for.
    body = {"model": target.embed_model, "input": inputs, "encoding_format": encoding}
    started = time.perf_counter()
    response = client.post(f"{target.base_url}/embeddings", headers=target.headers, json=body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (target.name, response.status_code, response.text)
    assert len(response.json()["data"]) == len(inputs)
    OK[target.name] += 1
    return elapsed * 1000


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return f"p50 {statistics.median(ordered):7.2f}  p90 {at(0.9):7.2f}  p99 {at(0.99):7.2f} ms"


def paired(targets: list[Target], measure: Any, requests: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """`requests` rounds, each measuring the upstream directly then each gateway in turn (kept-alive
    connections): every target's times, and per gateway the median of its differences with the upstream."""
    gateways = targets[1:]
    everyone = targets + [target.baseline for target in gateways if target.baseline is not None]
    clients = {target.name: httpx.Client(timeout=30) for target in everyone}
    times: dict[str, list[float]] = {target.name: [] for target in everyone}
    added: dict[str, list[float]] = {target.name: [] for target in gateways}
    try:
        for _ in range(requests):
            for target in gateways:
                upstream = target.baseline or targets[0]
                direct = measure(clients[upstream.name], upstream)
                through = measure(clients[target.name], target)
                times[upstream.name].append(direct)
                times[target.name].append(through)
                added[target.name].append(through - direct)
    finally:
        for client in clients.values():
            client.close()
    return times, {name: statistics.median(values) for name, values in added.items()}


def latency(args: argparse.Namespace) -> None:
    chat = (("chat completions, non-streamed, whole answer", _timed_call),
            ("chat completions, streamed, first token", _timed_first_token))
    embeddings = tuple((f"embeddings, {len(inputs)} input(s), {EMBED_DIMENSIONS} dimensions, {encoding}",
                        lambda client, target, encoding=encoding, inputs=inputs: _timed_embedding(
                            client, target, encoding, inputs))
                       for inputs in (EMBED_INPUTS, EMBED_INPUTS[:1]) for encoding in ("float", "base64"))
    measures = {"chat": chat, "embeddings": embeddings, "both": chat + embeddings}[args.endpoint]
    with environment(args) as all_targets:
        targets = all_targets  # for chat: with --api responses, the Responses endpoint beside them
        if args.api == "responses":
            upstream, gateway = targets[0], targets[1]
            native = dataclasses.replace(upstream, name="upstream (responses)", api="responses", tally=upstream.name)
            targets = [upstream, gateway, dataclasses.replace(gateway, name="responses", api="responses",
                                                              tally=gateway.name,
                                                              baseline=native if args.kind == "openai" else None)]
            with httpx.Client(timeout=30) as client:  # warm up the Responses path too (its SDK types load lazily)
                for _ in range(20):
                    _timed_call(client, targets[2])
                    _timed_first_token(client, targets[2])
        for label, measure in measures:
            measured = [t for t in all_targets if t.embed_model] if label.startswith("embeddings") else targets
            print(f"\n{label} ({args.requests} sequential requests, one client)")
            times, added = paired(measured, measure, args.requests)
            for name, values in times.items():
                print(f"  {name:9} {_percentiles(values)}")
            for name, median in added.items():
                print(f"  {name:9} added: median of paired differences {median:.2f} ms")


# -- throughput and memory -------------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status and whether the server keeps the connection, after reading the whole response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])
               if name}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers.get("connection", "").lower() != "close"


def _request_bytes(target: Target) -> tuple[str, int, bytes]:
    url = urlsplit(target.base_url)
    body = json.dumps(target.body()).encode()
    head = (f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
            f"Authorization: Bearer {target.key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return url.hostname or "127.0.0.1", url.port or 80, head.encode() + body


async def _load(target: Target, *, concurrency: int, seconds: float | None = None,
                calls: int | None = None, on_progress: Any = None) -> tuple[Counter, float]:
    """Send requests back to back on `concurrency` connections, for `seconds` or until `calls` are done."""
    host, port, request = _request_bytes(target)
    statuses: Counter = Counter()
    started = time.perf_counter()
    deadline = started + seconds if seconds else None
    remaining = [calls or 0]

    async def worker() -> None:
        reader = writer = None
        while True:
            if deadline is not None and time.perf_counter() >= deadline:
                break
            if calls is not None:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            writer.write(request)
            try:
                status, keep = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                status, keep = 0, False
            statuses[status] += 1
            if on_progress is not None:
                on_progress(sum(statuses.values()))
            if not keep:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses, time.perf_counter() - started


def throughput(args: argparse.Namespace) -> None:
    with environment(args) as targets:
        print(f"\nnon-streamed requests, {args.concurrency} connections, {args.seconds} s each")
        for target in targets:
            statuses, elapsed = asyncio.run(_load(target, concurrency=args.concurrency, seconds=args.seconds))
            ok = statuses.pop(200, 0)
            OK[target.name] += ok
            print(f"  {target.name:9} {ok / elapsed:8.1f} req/s ({ok} answers; "
                  f"other statuses: {dict(statuses) or 'none'})")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def memory(args: argparse.Namespace) -> None:
    with environment(args) as targets:
        for target in targets[1:]:
            print(f"\n{target.name}: worker RSS by calls made ({args.concurrency} connections)")
            samples: dict[int, int] = {}

            def progress(done: int, target: Target = target, samples: dict[int, int] = samples) -> None:
                if done % 10_000 == 0 and done not in samples:
                    samples[done] = _rss_kib(target.pid)
                    print(f"  {done:7} calls  {samples[done] / 1024:7.1f} MiB", flush=True)

            statuses, elapsed = asyncio.run(_load(target, concurrency=args.concurrency, calls=args.calls,
                                                  on_progress=progress))
            ok = statuses.pop(200, 0)
            OK[target.name] += ok
            print(f"  {ok} answers in {elapsed:.0f} s ({ok / elapsed:.1f} req/s); other statuses: "
                  f"{dict(statuses) or 'none'}")
            if 10_000 in samples and samples:
                last = max(samples)
                print(f"  from 10,000 to {last:,} calls: {samples[last] / samples[10_000] * 100 - 100:+.1f}%")


# -- breakdown -------------------------------------------------------------------------------------------


def breakdown(args: argparse.Namespace) -> None:
    """In this process, no HTTP in front: Django's ASGI handler called directly, sequentially, with parts of
    the call taken away one by one (patched, for measurement only)."""
    from cryptography.fernet import Fernet

    data_dir = tempfile.mkdtemp(prefix="aspweb-gateway-bench-")
    Path(data_dir, "static").mkdir()
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "aspweb.settings", "ASPWEB_DATA_DIR": data_dir, "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50), "ASPWEB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING",
    })
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("ASPWEB_LOG_BODIES", None)
    if args.log_bodies == "on":
        os.environ["ASPWEB_LOG_BODIES"] = "true"
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    with _processes() as processes:
        upstream = subprocess.Popen([PYTHON, "-m", "bench.gateway_bench", "upstream"], cwd=ROOT,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
        processes.append(upstream)
        upstream_url = upstream.stdout.readline().strip()
        import django

        django.setup()
        from django.core.management import call_command

        from aspweb.handler import ASGIHandler
        from providers import calls
        from providers.adapters import openai_compat
        from providers.adapters.base import Chunk, Embeddings, Usage
        from tests.asgi_support import asgi_request

        call_command("migrate", verbosity=0)
        if args.database_url:
            call_command("flush", interactive=False, verbosity=0)
        key = seed(upstream_url, args.kind, budgets=args.budgets)
        handler = ASGIHandler()
        body = json.dumps(Target("aspweb", "", key, "bench/fake-model-a").body()).encode()

        async def one(method: str, path: str, payload: bytes = body) -> int:
            headers = [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json"),
                       (b"content-length", str(len(payload)).encode())]
            received = await asgi_request(handler, method, path, headers=headers,
                                          body=payload if method == "POST" else b"")
            return received.status

        async def measure(label: str, method: str = "POST", path: str = "/v1/chat/completions",
                          payload: bytes = body) -> None:
            for _ in range(20):
                assert await one(method, path, payload) == 200, label
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.requests):
                await one(method, path, payload)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"  {label:52} {wall / args.requests * 1000:6.2f} ms wall  {cpu / args.requests * 1000:6.2f} ms CPU")

        async def no_http(conn: Any, request: Any) -> Any:
            yield Chunk(text="Hello from the fake upstream.")
            yield Chunk(usage=Usage(input_tokens=12, output_tokens=7), finish_reason="stop")

        async def no_ledger(*args: Any, **kwargs: Any) -> None:
            return None

        async def no_call(request: Any, *, caller: Any, record: Any, **kwargs: Any) -> Any:
            record.provider, record.model = "bench", "fake-model-a"
            async for chunk in no_http(None, request):
                yield chunk

        if args.profile:
            import cProfile

            embeddings = json.dumps({"model": "bench/fake-embed", "input": EMBED_INPUTS}).encode()
            with cProfile.Profile() as profile:
                if args.endpoint == "embeddings":
                    asyncio.run(measure("embeddings, profiled", path="/v1/embeddings", payload=embeddings))
                else:
                    asyncio.run(measure("the whole call, profiled"))
            profile.dump_stats(args.profile)
            print(f"profile of the whole call written to {args.profile} (python -m pstats {args.profile})")
            return
        print(f"\nper call, mean of {args.requests} sequential calls in process")
        asyncio.run(measure("the whole call"))
        embeddings = [(f"{len(inputs)} input(s), {encoding}", json.dumps(
            {"model": "bench/fake-embed", "input": inputs, "encoding_format": encoding}).encode())
            for inputs in (EMBED_INPUTS, EMBED_INPUTS[:1]) for encoding in ("float", "base64")]
        if args.endpoint != "chat":
            for label, payload in embeddings:
                asyncio.run(measure(f"embeddings, {label}", path="/v1/embeddings", payload=payload))
        openai_compat.stream = no_http
        asyncio.run(measure("without the provider's HTTP (adapter replaced)"))
        if args.endpoint != "chat":
            vector = [random.uniform(-0.1, 0.1) for _ in range(EMBED_DIMENSIONS)]

            async def no_http_embed(conn: Any, request: Any) -> Any:
                return Embeddings([list(vector) for _ in request.input], Usage(input_tokens=12))

            openai_compat.embed = no_http_embed
            for label, payload in embeddings:
                asyncio.run(measure(f"embeddings, {label}, without the provider's HTTP", path="/v1/embeddings",
                                    payload=payload))
            if args.endpoint == "embeddings":
                return
        calls._record = no_ledger
        asyncio.run(measure("... and without the usage record"))
        calls.stream_chat = no_call
        calls.prepare = lambda request, **kwargs: calls.Prepared(time.perf_counter())
        asyncio.run(measure("gateway alone (call path replaced)"))
        asyncio.run(measure("Django alone: GET /v1/openapi.json", "GET", "/v1/openapi.json"))
    shutil.rmtree(data_dir, ignore_errors=True)


def measure(args: argparse.Namespace) -> None:
    """(Internal, one configuration of `profiles`.) Its numbers as one JSON line on stdout, after RESULT."""
    result: dict[str, Any] = {"busy_before": cpu_busy()}
    try:
        with environment(args) as targets:
            if "throughput" in args.measures:
                for target in targets[1:]:
                    statuses, elapsed = asyncio.run(_load(target, concurrency=args.concurrency, seconds=args.seconds))
                    OK[target.name] += statuses[200]
                    result[f"{target.name}_rps"] = statuses.pop(200, 0) / elapsed
                    result[f"{target.name}_other_statuses"] = {str(status): n for status, n in statuses.items()}
            if "latency" in args.measures:
                result["added"] = paired(targets, _timed_call, args.requests)[1]
            if "ttft" in args.measures:
                result["ttft_added"] = paired(targets, _timed_first_token, args.requests)[1]
    finally:
        ledger = getattr(args, "ledger", None)
        result["ledger"] = ledger and {"calls": ledger.calls, "records": ledger.records,
                                       "other_records": ledger.other_records, "exact": ledger.exact}
        result["busy_after"] = cpu_busy()  # every process of the run has ended
        print("RESULT " + json.dumps(result), flush=True)


def _logging(args: argparse.Namespace) -> None:
    from bench.logging_bench import logging_cost  # it uses this module's environment and clients

    logging_cost(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("upstream", help="(internal) serve the fake upstream")
    for name, runner in (("latency", latency), ("throughput", throughput), ("memory", memory),
                         ("breakdown", breakdown), ("measure", measure), ("profiles", profiles),
                         ("logging", _logging)):
        command = commands.add_parser(name)
        command.set_defaults(run=runner)
        command.add_argument("--app", default="aspweb.asgi:application")
        command.add_argument("--litellm", help="the litellm executable of a separate virtualenv")
        command.add_argument("--database-url", help="PostgreSQL (an existing database, emptied first)")
        command.add_argument("--redis-url", help="the production profile: this Redis (emptied first), a Celery "
                                                 "worker, --database-url")
        command.add_argument("--workers", type=int, default=1, help="aspweb's uvicorn workers")
        command.add_argument("--budgets", action="store_true", help="seed 10 budgets covering every call and "
                                                                    "1,000 per-person budgets")
        command.add_argument("--kind", default="openai_compatible", choices=["openai_compatible", "openai"],
                             help="the provider's kind: openai_compatible is called directly, openai through its SDK")
        command.add_argument("--requests", type=int, default=300)
        command.add_argument("--api", default="chat", choices=["chat", "responses"],
                             help="latency: also measure /v1/responses beside chat completions")
        command.add_argument("--seconds", type=float, default=15 if name == "profiles" else 20)
        command.add_argument("--concurrency", type=int, default=10 if name in ("profiles", "measure") else 16)
        command.add_argument("--calls", type=int, default=100_000)
        command.add_argument("--profile", help="breakdown: write a cProfile of the whole call to this file")
        command.add_argument("--log-bodies", action="store_const", const="on", default="off",
                             help="every aspweb call logs its prompt and answer (ASPWEB_LOG_BODIES=true)")
        command.add_argument("--rounds", type=int, default=6, help="logging: throughput windows per server")
        command.add_argument("--measures", default="throughput,latency,ttft", help=argparse.SUPPRESS)
        command.add_argument("--endpoint", choices=["chat", "embeddings", "both"], default="chat",
                             help="latency and breakdown: chat completions, embeddings, or both in one run")
    args = parser.parse_args()
    if args.command == "upstream":
        serve_upstream()
    else:
        args.run(args)


if __name__ == "__main__":
    main()
