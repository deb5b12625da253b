"""An experiment, not shipped: aspweb's ASGI app with the OpenAI-compatible adapter keeping one SDK client
per connection instead of building one per call (each build makes an SSL context and a connection pool,
about 20 ms of CPU). Serve it to see what the rest of the app adds:

    .venv/bin/python -m bench.playground_bench ttft --app bench.sdk_client_reuse:application
"""

from typing import Any

from aspweb.asgi import application
from providers.adapters import openai_compat

_build = openai_compat.client
_clients: dict[Any, Any] = {}


class _Kept:
    """The adapter enters and leaves its client around every call: leave this one open."""

    def __init__(self, api: Any) -> None:
        self.api = api

    async def __aenter__(self) -> Any:
        return self.api

    async def __aexit__(self, *exc: object) -> None:
        return None


def _client(conn: Any) -> _Kept:
    key = (conn.kind, conn.base_url, conn.api_key, tuple(sorted(conn.headers.items())))
    if key not in _clients:
        _clients[key] = _build(conn)
    return _Kept(_clients[key])


openai_compat.client = _client

__all__ = ["application"]
