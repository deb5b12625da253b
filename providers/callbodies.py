"""What the call path hands the ledger of a call whose prompt and answer are logged (opt-in): the request and
the answer as plain data. The ledger redacts, caps, encrypts and stores it (usage/bodies.py)."""

from collections.abc import Iterable
from typing import Any

from django.conf import settings

from accounts.teams import team_logs_bodies

from .adapters.base import ChatRequest, Chunk, Message, TextPart


def logged(caller: Any) -> bool:
    """Whether the call's prompt and answer are logged (usage/bodies.py): the playground's calls when
    LOG_BODIES_PLAYGROUND is on; others when LOG_BODIES is, or when their API key says so; and any call
    counted for a team that says so (a key's team, the team picked in the playground).

    Read from memory on every call, on the event loop: the key is the cached row the gateway checked, the
    teams' switches are in a row cache (accounts/teams.py), so run inline a miss raises NeedsThread and a hit
    makes no query."""
    if caller.source == "playground":
        if settings.LOG_BODIES_PLAYGROUND:
            return True
    elif settings.LOG_BODIES or getattr(caller.api_key, "log_bodies", False):
        return True
    return caller.team_id is not None and team_logs_bodies(caller.team_id)


def body(request: ChatRequest, answer: Iterable[Chunk], finish_reason: str | None) -> dict[str, Any]:
    """The call's prompt and answer as plain data, for the ledger to redact, cap and store (usage/bodies.py)."""
    text, reasoning, tool_calls = [], [], {}
    for chunk in answer:
        text.append(chunk.text)
        reasoning.append(chunk.reasoning)
        if (delta := chunk.tool_call) is not None:
            call = tool_calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"], call["name"] = call["id"] or delta.id, call["name"] or delta.name
            call["arguments"] += delta.arguments
    parameters = {name: value for name, value in (
        ("temperature", request.temperature), ("top_p", request.top_p), ("max_tokens", request.max_tokens),
        ("stop", list(request.stop) or None), ("tool_choice", request.tool_choice),
        ("thinking_budget", request.thinking_budget), ("extra", request.extra or None),
    ) if value is not None}
    return {
        "request": {"model": request.model, "system": request.system,
                    "messages": [message_data(message) for message in request.messages],
                    "parameters": parameters, "tools": list(request.tools)},
        "answer": {"text": "".join(text), "reasoning": "".join(reasoning), "tool_calls": list(tool_calls.values()),
                   "finish_reason": finish_reason or ""},
    }


def message_data(message: Message) -> dict[str, Any]:
    if isinstance(message.content, str):
        content: Any = message.content
    else:  # an image sent inline is kept as its size, not its bytes
        content = [{"type": "text", "text": part.text} if isinstance(part, TextPart) else
                   {"type": "image", "url": part.url if not part.url.startswith("data:")
                    else f"[inline image, {len(part.url):,} characters]"} for part in message.content]
    data: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        data["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls]
    if message.tool_call_id:
        data["tool_call_id"] = message.tool_call_id
    return data
