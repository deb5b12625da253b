"""The gateway's response cache: answers to identical requests, in Django's cache (Redis with REDIS_URL, so
all workers share it).

Opt-in, per request (`x-aspweb-cache: true`, and `x-aspweb-cache-ttl: SECONDS`) or per route (its cache
TTL). Identical means the same normalised request: the provider-neutral ChatRequest both wire formats
parse into (model as asked, system prompt, messages, sampling parameters, tools), so the same question
through /v1/chat/completions or /v1/messages shares an entry; `stream` is not part of it, and a cached
answer replays as a stream when a stream is asked for. Only answers that ended normally are stored.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from aspweb import metrics
from providers.adapters.base import ChatRequest, Completion, ToolCall, Usage

DEFAULT_TTL = 300
MAX_TTL = 7 * 24 * 3600
_VERSION = 1  # bump when the stored shape changes


def key_for(request: ChatRequest) -> str:
    fields = dataclasses.asdict(request)
    del fields["stream"]  # a streamed and a whole answer to the same request are the same answer
    del fields["metadata"]  # labels of the call, not part of the question
    normalised = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return f"gw:answer:{_VERSION}:{hashlib.sha256(normalised.encode()).hexdigest()}"


@dataclass(frozen=True)
class CachedAnswer:
    completion: Completion
    provider: str
    model: str


def lookup(key: str) -> CachedAnswer | None:
    stored = cache.get(key)
    metrics.response_cache_looked_up(isinstance(stored, dict))
    if not isinstance(stored, dict):
        return None
    usage = stored["usage"]
    completion = Completion(
        text=stored["text"], reasoning=stored["reasoning"],
        tool_calls=[ToolCall(*call) for call in stored["tool_calls"]],
        usage=Usage(**usage), finish_reason=stored["finish_reason"],
    )
    return CachedAnswer(completion, stored["provider"], stored["model"])


def store(key: str, completion: Completion, *, provider: str, model: str, ttl: int) -> None:
    if completion.finish_reason is None:
        return
    usage = dataclasses.asdict(completion.usage)
    usage.pop("reported_cost")  # what the provider charged then; a replay costs nothing
    value: dict[str, Any] = {
        "text": completion.text, "reasoning": completion.reasoning,
        "tool_calls": [[call.id, call.name, call.arguments] for call in completion.tool_calls],
        "usage": usage, "finish_reason": completion.finish_reason, "provider": provider, "model": model,
    }
    cache.set(key, value, ttl)
