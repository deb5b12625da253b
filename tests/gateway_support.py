"""Helpers for the gateway tests: providers on the fake upstream, keys, in-process calls of the /v1 views, and
a live uvicorn server for the SDK tests.

In-process calls go through Django's AsyncClient inside async_to_sync, so the ORM work of the views runs on
this thread's connection and plain `db` tests see it (and roll it back)."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import uvicorn
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from gateway import apikeys
from gateway.models import ApiKey
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream

OPENAI_MODEL = "local/fake-model-a"
ANTHROPIC_MODEL = "claude/fake-model-a"


def make_providers(upstream: FakeUpstream) -> dict[str, Model]:
    """An OpenAI-compatible provider "local" and an Anthropic provider "claude", both on the fake upstream,
    each with a priced fake-model-a; "local" also has an unpriced fake-model-b."""
    local = Provider.objects.create(name="local", kind="openai_compatible", base_url=upstream.openai_base_url,
                                    api_key="sk-upstream-0001", max_retries=0)
    claude = Provider.objects.create(name="claude", kind="anthropic", base_url=upstream.base_url,
                                     api_key="sk-ant-upstream-0001", max_retries=0)
    models = {
        OPENAI_MODEL: Model.objects.create(provider=local, name="fake-model-a"),
        "local/fake-model-b": Model.objects.create(provider=local, name="fake-model-b"),
        ANTHROPIC_MODEL: Model.objects.create(provider=claude, name="fake-model-a"),
    }
    for address in (OPENAI_MODEL, ANTHROPIC_MODEL):
        Price.objects.create(model=models[address], input=Decimal("1"), output=Decimal("2"))
    return models


def make_key(user: Any = None, **fields: Any) -> tuple[ApiKey, str]:
    return apikeys.api_key_create(name=fields.pop("name", "test key"), user=user, actor=None, **fields)


def chat_body(model: str = OPENAI_MODEL, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Say hello"}], **fields}


def messages_body(model: str = ANTHROPIC_MODEL, **fields: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "Say hello"}], **fields}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    content: bytes
    events: list[tuple[str | None, Any]] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.content)


def parse_events(content: bytes) -> list[tuple[str | None, Any]]:
    """Server-sent events as (event name, parsed data); data that is not JSON ([DONE]) stays text."""
    events = []
    for frame in content.decode().split("\n\n"):
        if not frame.strip():
            continue
        name, data = None, []
        for line in frame.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        text = "\n".join(data)
        try:
            events.append((name, json.loads(text)))
        except ValueError:
            events.append((name, text))
    return events


def call(path: str, body: Any = None, *, key: str | None = None, method: str = "POST", raw: bytes | None = None,
         headers: dict[str, str] | None = None, auth: str = "bearer") -> Answer:
    """One in-process request to the gateway; a streamed answer is read to its end."""
    sent = dict(headers or {})
    if key is not None:
        sent.update({"Authorization": f"Bearer {key}"} if auth == "bearer" else {"x-api-key": key})
    data = raw if raw is not None else (json.dumps(body) if body is not None else "")

    async def go() -> Answer:
        client = AsyncClient()
        response = await client.generic(method, path, data, content_type="application/json", headers=sent)
        if response.streaming:
            content = b"".join([part async for part in response.streaming_content])
        else:
            content = response.content
        answer = Answer(response.status_code, {k.lower(): v for k, v in response.items()}, content)
        if response.get("Content-Type", "").startswith("text/event-stream"):
            answer.events = parse_events(content)
        return answer

    return async_to_sync(go)()


@contextmanager
def live_server() -> Iterator[str]:
    """The ASGI app under uvicorn in a thread, as tests/e2e/conftest.py serves it; yields its base URL.
    Needs committed data (a transactional test): the server answers from its own threads."""
    from aspweb.asgi import application

    config = uvicorn.Config(application, host="127.0.0.1", port=0, lifespan="off", log_level="warning",
                            log_config=None, access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before it started serving"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "uvicorn did not stop"


def live_chat(base: str, key: str, **fields: Any) -> httpx.Response:
    """A chat completion through a live server (live_server's base URL)."""
    return httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json=chat_body(max_tokens=50, **fields), timeout=10)


def until(condition: Any, what: str, seconds: float = 10) -> None:
    """Wait for `condition()` to hold (work a live server finishes after its answer), failing with `what`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.02)


def writes_held_back(monkeypatch: Any) -> threading.Event:
    """Hold the ledger writer's commits back until the returned event is set (at most 10 s): what a call
    answers before its record is committed can be seen meanwhile."""
    from usage import writer

    gate = threading.Event()
    write = writer._write

    def held_back(specs: list, entry_ids: list) -> list:
        gate.wait(10)
        return write(specs, entry_ids)

    monkeypatch.setattr(writer, "_write", held_back)
    return gate
