"""One HTTP request straight into an ASGI app, as uvicorn hands it over, for tests and benchmarks that
need what a test client hides: the client going away mid-stream, the handler's own threads."""

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def _after_the_answer(answer: Received, finished: bool) -> bool:
    return finished


async def asgi_request(app: Any, method: str, path: str, *, headers: Iterable[tuple[bytes, bytes]] = (),
                       body: bytes = b"",
                       disconnect_when: Callable[[Received, bool], bool] = _after_the_answer) -> Received:
    """Send one request to `app` and collect its answer. The client goes away (`http.disconnect`) once
    `disconnect_when(the answer so far, whether it is finished)` says so: by default when the answer is complete."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers], "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    gone = asyncio.Event()
    answer = Received()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers.update({k.decode().lower(): v.decode() for k, v in message["headers"]})
        elif message["type"] == "http.response.body":
            answer.chunks.append(message.get("body", b""))
            if disconnect_when(answer, not message.get("more_body")):
                gone.set()

    await app(scope, receive, send)
    return answer
