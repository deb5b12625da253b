"""What every adapter speaks: requests, streamed chunks, normalised usage, and one error type.

Adapters know wire formats and nothing else: no database, no budgets, no retries.
"""

import re
from dataclasses import dataclass, field
from typing import Any, Literal

ErrorKind = Literal[
    "auth", "rate_limit", "quota", "timeout", "network", "server",
    "model_not_found", "invalid_request", "content_filter",
]
RETRYABLE: frozenset[str] = frozenset({"rate_limit", "timeout", "network", "server"})


@dataclass(frozen=True)
class Connection:
    """What an adapter needs to reach one provider; built from a Provider row by the caller."""

    kind: str
    label: str
    base_url: str
    api_key: str = field(default="", repr=False)
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class ModelInfo:
    id: str
    display_name: str = ""
    context_window: int | None = None


@dataclass(frozen=True)
class Health:
    ok: bool
    latency_ms: int
    message: str
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Usage:
    """Token counts, normalised: `input_tokens` excludes cache reads and writes; `output_tokens`
    includes reasoning tokens (reasoning is billed once, as output)."""

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False


class ProviderError(Exception):
    """Any failure talking to a provider, in one taxonomy. `message` is plain words for people and
    never holds a secret."""

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None,
                 retry_after: float | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.retryable = kind in RETRYABLE if retryable is None else retryable

    def __repr__(self) -> str:
        return f"ProviderError({self.kind!r}, {self.message!r}, status={self.status})"


_KEYLIKE = re.compile(r"\b(sk|pk|rk|key|api|tok|ghp|xai|gsk|AIza)[-_A-Za-z0-9*]{12,}", re.IGNORECASE)


def redact(text: str, *secrets: str) -> str:
    """Remove the given secrets, and anything shaped like an API key, from text shown to people."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def plain_message(kind: ErrorKind, label: str, status: int | None, detail: str = "",
                  retry_after: float | None = None) -> str:
    """One sentence a member or admin can act on, then the provider's own (redacted) words."""
    code = f" (HTTP {status})" if status else ""
    sentences = {
        "auth": f"{label} rejected the API key{code}. An admin needs to check the provider's key.",
        "quota": f"{label} says the account is out of credit or quota{code}.",
        "rate_limit": f"{label} is rate limiting requests{code}"
        + (f"; retry in {retry_after:g} seconds." if retry_after else "; retry in a moment."),
        "timeout": f"{label} did not answer in time.",
        "network": f"Could not connect to {label}: check the base URL and that the server is running.",
        "server": f"{label} had a server error{code}; it is usually temporary.",
        "model_not_found": f"{label} does not know this model{code}.",
        "invalid_request": f"{label} refused the request as invalid{code}.",
        "content_filter": f"{label} refused the request under its content policy{code}.",
    }
    text = sentences[kind]
    detail = detail.strip()
    if detail:
        text += f" {label} said: {detail[:300]}"
    return text


async def timed_listing(conn: Connection, list_models: Any) -> Health:
    """A health check for adapters whose provider lists models: the listing proves key and URL."""
    import time

    started = time.perf_counter()
    models = await list_models(conn)
    latency_ms = round((time.perf_counter() - started) * 1000)
    noun = "model" if len(models) == 1 else "models"
    return Health(True, latency_ms, f"Connected; {len(models)} {noun} listed.", tuple(m.id for m in models))
