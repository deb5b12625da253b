"""The Anthropic messages format as the gateway's clients speak it, so that Anthropic SDK clients can use
aspweb as their base URL: a request body in, a `message` or its event stream out, Anthropic's error shape.

Thinking blocks a client sends back are dropped (their signatures belong to the provider that made them);
thinking the model streams comes out as thinking blocks with an empty signature.
"""

import json
from dataclasses import dataclass
from typing import Any

import orjson

from providers.adapters.base import (
    ChatRequest,
    Chunk,
    Completion,
    FinishReason,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    Usage,
)
from usage import attribution

from .checks import (
    BadRequest,
    array,
    boolean,
    content_array,
    image_url,
    integer,
    model_name,
    number,
    obj,
    one_of,
    text,
    unicode_text,
)

_KNOWN = {"model", "messages", "max_tokens", "system", "stop_sequences", "temperature", "top_p", "top_k",
          "stream", "tools", "tool_choice", "metadata", "thinking", "service_tier"}
_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


@dataclass(frozen=True)
class ParsedMessages:
    request: ChatRequest
    stream: bool
    # Attribution from the body: Anthropic's `metadata.user_id` names the end user.
    tags: tuple[str, ...] = ()
    end_user: str = ""


def _end_user(metadata: dict[str, Any]) -> str:
    """Anthropic's `metadata` has one field, `user_id`: the end user."""
    for name in metadata:
        if name != "user_id":
            raise BadRequest(f"metadata.{name}: Extra inputs are not permitted", f"metadata.{name}")
    if metadata.get("user_id") is None:
        return ""
    try:
        return attribution.end_user_clean(text(metadata["user_id"], "metadata.user_id"), "metadata.user_id")
    except attribution.AttributionError as exc:
        raise BadRequest(f"metadata.user_id: {exc.message}", exc.param, "invalid_attribution") from None


def parse_messages(body: Any) -> ParsedMessages:
    body = obj(body, "body")
    unicode_text(body, dotted=True)
    for name in body:
        if name not in _KNOWN:
            raise BadRequest(f"{name}: Extra inputs are not permitted", name)
    model = model_name(body.get("model"))
    if body.get("max_tokens") is None:
        raise BadRequest("max_tokens: Field required", "max_tokens")
    max_tokens = integer(body["max_tokens"], "max_tokens", 1)
    if body.get("messages") is None:
        raise BadRequest("messages: Field required", "messages")
    messages = _messages(array(body["messages"], "messages", non_empty=True))
    values = {name: value for name, value in body.items() if value is not None}
    system, system_cache = _system(values.get("system", ""))
    tools = tuple(_tool(tool, f"tools.{i}") for i, tool in enumerate(array(values.get("tools", []), "tools")))
    end_user = _end_user(obj(values["metadata"], "metadata")) if "metadata" in values else ""
    if "service_tier" in values:
        text(values["service_tier"], "service_tier")
    extra = {"top_k": integer(values["top_k"], "top_k", 0)} if "top_k" in values else {}
    stream = boolean(values["stream"], "stream") if "stream" in values else False
    request = ChatRequest(
        model=model, messages=messages, system=system, cache_system=bool(system_cache),
        system_cache_ttl=system_cache if system_cache == "1h" else "", max_tokens=max_tokens,
        temperature=number(values["temperature"], "temperature", 0, 1) if "temperature" in values else None,
        top_p=number(values["top_p"], "top_p", 0, 1) if "top_p" in values else None,
        stop=tuple(text(item, f"stop_sequences.{n}", non_empty=True)
                   for n, item in enumerate(array(values.get("stop_sequences", []), "stop_sequences"))),
        tools=tools,
        tool_choice=_tool_choice(values["tool_choice"]) if "tool_choice" in values else None,
        thinking_budget=_thinking(values["thinking"], max_tokens) if "thinking" in values else None,
        extra=extra, stream=stream,
    )
    return ParsedMessages(request, stream, end_user=end_user)


def _system(system: Any) -> tuple[str, str]:
    """The system prompt's text, and its longest cache breakpoint's lifetime ("" for none): the blocks are
    joined into one, cached whole."""
    if isinstance(system, str):
        return system, ""
    parts, cache = [], ""
    for n, block in enumerate(content_array(system, "system")):
        block = obj(block, f"system.{n}")
        one_of(block.get("type"), f"system.{n}.type", ("text",))
        parts.append(text(block.get("text"), f"system.{n}.text"))
        cache = max(cache, _cache(block, f"system.{n}"), key=_CACHE_ORDER.index)
    return "\n\n".join(parts), cache


_CACHE_ORDER = ("", "5m", "1h")


def _cache(block: dict[str, Any], param: str) -> str:
    """A block's `cache_control` ({"type": "ephemeral", "ttl": "5m" | "1h"}) as its lifetime; "" without one."""
    if block.get("cache_control") is None:
        return ""
    control = obj(block["cache_control"], f"{param}.cache_control")
    one_of(control.get("type"), f"{param}.cache_control.type", ("ephemeral",))
    if control.get("ttl") is None:
        return "5m"
    return one_of(control["ttl"], f"{param}.cache_control.ttl", ("5m", "1h"))


def _messages(items: list[Any]) -> tuple[Message, ...]:
    """Anthropic turns to neutral messages: a user turn's tool results become tool messages, its text and
    images a user message; an assistant turn's text and tool uses one assistant message."""
    messages: list[Message] = []
    for i, item in enumerate(items):
        param = f"messages.{i}"
        item = obj(item, param)
        role = one_of(item.get("role"), f"{param}.role", ("user", "assistant"))
        content = item.get("content")
        if isinstance(content, str):
            messages.append(Message(role, content))
            continue
        blocks = content_array(content, f"{param}.content", non_empty=True)
        if role == "assistant":
            messages.append(_assistant(blocks, f"{param}.content"))
            continue
        parts: list[TextPart | ImagePart] = []
        for n, block in enumerate(blocks):
            where = f"{param}.content.{n}"
            block = obj(block, where)
            kind = one_of(block.get("type"), f"{where}.type", ("text", "image", "tool_result"))
            if kind == "tool_result":
                if parts:
                    messages.append(Message("user", tuple(parts)))
                    parts = []
                messages.append(_tool_result(block, where))
            elif kind == "text":
                parts.append(TextPart(text(block.get("text"), f"{where}.text"), cache=_cache(block, where)))
            else:
                parts.append(ImagePart(_image(block, where)))
        if parts:
            messages.append(Message("user", tuple(parts)))
    return tuple(messages)


def _assistant(blocks: list[Any], param: str) -> Message:
    said: list[str] = []
    calls: list[ToolCall] = []
    for n, block in enumerate(blocks):
        where = f"{param}.{n}"
        block = obj(block, where)
        kind = one_of(block.get("type"), f"{where}.type", ("text", "tool_use", "thinking", "redacted_thinking"))
        if kind == "text":
            said.append(text(block.get("text"), f"{where}.text"))
        elif kind == "tool_use":
            calls.append(ToolCall(
                id=text(block.get("id"), f"{where}.id", non_empty=True),
                name=text(block.get("name"), f"{where}.name", non_empty=True),
                arguments=json.dumps(obj(block.get("input"), f"{where}.input")),
            ))
    return Message("assistant", "".join(said), tool_calls=tuple(calls))


def _tool_result(block: dict[str, Any], param: str) -> Message:
    call_id = text(block.get("tool_use_id"), f"{param}.tool_use_id", non_empty=True)
    if block.get("is_error") is not None:
        boolean(block["is_error"], f"{param}.is_error")
    content = block.get("content", "")
    if not isinstance(content, str):
        pieces = []
        for n, part in enumerate(content_array(content, f"{param}.content")):
            part = obj(part, f"{param}.content.{n}")
            one_of(part.get("type"), f"{param}.content.{n}.type", ("text",))
            pieces.append(text(part.get("text"), f"{param}.content.{n}.text"))
        content = "".join(pieces)
    return Message("tool", content, tool_call_id=call_id, cache=_cache(block, param))


def _image(block: dict[str, Any], param: str) -> str:
    source = obj(block.get("source"), f"{param}.source")
    kind = one_of(source.get("type"), f"{param}.source.type", ("base64", "url"))
    if kind == "url":
        return image_url(source.get("url"), f"{param}.source.url")
    media_type = one_of(source.get("media_type"), f"{param}.source.media_type", _MEDIA_TYPES)
    data = text(source.get("data"), f"{param}.source.data", non_empty=True)
    return f"data:{media_type};base64,{data}"


def _tool(tool: Any, param: str) -> dict[str, Any]:
    tool = obj(tool, param)
    if tool.get("type") not in (None, "custom"):
        raise BadRequest(f"{param}.type: server tools ({tool.get('type')!r}) are not supported by aspweb's "
                         "gateway; declare client tools with name and input_schema.", f"{param}.type")
    function: dict[str, Any] = {
        "name": text(tool.get("name"), f"{param}.name", non_empty=True, longest=128),
        "parameters": obj(tool.get("input_schema"), f"{param}.input_schema"),
    }
    if tool.get("description") is not None:
        function["description"] = text(tool["description"], f"{param}.description")
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> str | dict[str, Any]:
    choice = obj(choice, "tool_choice")
    kind = one_of(choice.get("type"), "tool_choice.type", ("auto", "any", "none", "tool"))
    if choice.get("disable_parallel_tool_use") is not None:
        boolean(choice["disable_parallel_tool_use"], "tool_choice.disable_parallel_tool_use")
    if kind == "tool":
        return {"type": "function", "function": {"name": text(choice.get("name"), "tool_choice.name",
                                                              non_empty=True)}}
    return {"auto": "auto", "any": "required", "none": "none"}[kind]


def _thinking(thinking: Any, max_tokens: int) -> int | None:
    thinking = obj(thinking, "thinking")
    if one_of(thinking.get("type"), "thinking.type", ("enabled", "disabled")) == "disabled":
        return None
    budget = integer(thinking.get("budget_tokens"), "thinking.budget_tokens", 1024)
    if budget >= max_tokens:
        raise BadRequest("thinking.budget_tokens must be less than max_tokens.", "thinking.budget_tokens")
    return budget


# -- answers ----------------------------------------------------------------------------------------


def usage_body(usage: Usage) -> dict[str, Any]:
    """Anthropic's usage object: `cache_creation_input_tokens` counts both write durations, which
    `cache_creation` splits."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens + usage.cache_write_1h_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": usage.cache_write_tokens,
                           "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens},
    }


def stop_reason(finish: FinishReason | None) -> str:
    return STOP_REASONS.get(finish or "stop", "end_turn")


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def message_body(completion: Completion, *, message_id: str, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if completion.reasoning:
        content.append({"type": "thinking", "thinking": completion.reasoning, "signature": ""})
    if completion.text or not completion.tool_calls:
        content.append({"type": "text", "text": completion.text})
    content.extend({"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call.arguments)}
                   for call in completion.tool_calls)
    return {
        "id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason(completion.finish_reason), "stop_sequence": None,
        "usage": usage_body(completion.usage),
    }


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(payload))


class StreamWriter:
    """Neutral chunks to Anthropic's event sequence: message_start, then per content block
    content_block_start, its deltas and content_block_stop, then message_delta with the stop reason and
    the usage, then message_stop.

    message_start carries zero usage: the counts are known only once the provider has answered, and
    message_delta carries all of them (its counts are cumulative, and the SDKs take input and cache
    counts from it too).
    """

    def __init__(self, *, message_id: str, model: str) -> None:
        self.message_id, self.model = message_id, model
        self.index = -1
        self.open: tuple[str, int] | None = None  # ("text" | "thinking" | "tool", tool index)

    def start(self) -> bytes:
        return _event("message_start", {"type": "message_start", "message": {
            "id": self.message_id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage_body(Usage()),
        }})

    def _open(self, kind: str, tool_index: int, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.index += 1
        self.open = (kind, tool_index)
        return out + _event("content_block_start", {"type": "content_block_start", "index": self.index,
                                                    "content_block": block})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})

    def delta(self, chunk: Chunk) -> bytes:
        out = b""
        if chunk.reasoning:
            if self.open != ("thinking", -1):
                out += self._open("thinking", -1, {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta({"type": "thinking_delta", "thinking": chunk.reasoning})
        if chunk.text:
            if self.open != ("text", -1):
                out += self._open("text", -1, {"type": "text", "text": ""})
            out += self._delta({"type": "text_delta", "text": chunk.text})
        if chunk.tool_call is not None:
            call = chunk.tool_call
            if self.open != ("tool", call.index):
                out += self._open("tool", call.index, {"type": "tool_use", "id": call.id, "name": call.name,
                                                       "input": {}})
            if call.arguments:
                out += self._delta({"type": "input_json_delta", "partial_json": call.arguments})
        return out

    def end(self, usage: Usage, finish_reason: FinishReason | None) -> bytes:
        out = self._close()
        if self.index < 0:  # an empty answer still has its (empty) text block
            out += self._open("text", -1, {"type": "text", "text": ""}) + self._close()
        out += _event("message_delta", {"type": "message_delta",
                                        "delta": {"stop_reason": stop_reason(finish_reason), "stop_sequence": None},
                                        "usage": usage_body(usage)})
        return out + _event("message_stop", {"type": "message_stop"})

    @staticmethod
    def error(body: dict[str, Any]) -> bytes:
        return _event("error", body)


def error_body(message: str, *, type: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type, "message": message}}
