"""The OpenAI chat-completions format as the gateway's clients speak it: a request body in, a
`chat.completion` or a stream of `chat.completion.chunk` events out, and OpenAI's error shape.

Parameters aspweb understands become the provider-neutral ChatRequest; a few more that change the answer
(`seed`, `response_format`, penalties, ...) pass through to the provider as they are; parameters that would
need an answer aspweb cannot relay (`n` > 1, `logprobs`, audio) are refused with a 400 naming them, as is
any parameter OpenAI does not document.
"""

import re
from dataclasses import dataclass
from typing import Any

import orjson

from providers.adapters.base import ChatRequest, Chunk, Completion, ImagePart, Message, TextPart, ToolCall, Usage
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

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Passed to the provider as they are; the checks only make sure they are of the documented type.
_PASSTHROUGH: dict[str, Any] = {
    "frequency_penalty": lambda v, p: number(v, p, -2, 2),
    "presence_penalty": lambda v, p: number(v, p, -2, 2),
    "seed": lambda v, p: integer(v, p, -(2**63), 2**63 - 1),
    "logit_bias": lambda v, p: {k: number(x, f"{p}.{k}", -100, 100) for k, x in obj(v, p).items()},
    "response_format": lambda v, p: _response_format(v, p),
    "reasoning_effort": lambda v, p: one_of(v, p, ("minimal", "low", "medium", "high")),
    "verbosity": lambda v, p: one_of(v, p, ("low", "medium", "high")),
}
# Accepted and not forwarded: they label or route the request at OpenAI and change nothing in the answer.
# (`user` and `metadata` attribute the call: see attribution_fields.)
_IGNORED: dict[str, Any] = {
    "store": lambda v, p: boolean(v, p),
    "service_tier": lambda v, p: text(v, p),
    "parallel_tool_calls": lambda v, p: boolean(v, p),
    "safety_identifier": lambda v, p: text(v, p),
    "prompt_cache_key": lambda v, p: text(v, p),
}
_UNSUPPORTED = {
    "functions": "functions is deprecated: use tools.",
    "function_call": "function_call is deprecated: use tool_choice.",
    "audio": "Audio output is not supported by aspweb's gateway.",
    "prediction": "Predicted outputs are not supported by aspweb's gateway.",
    "web_search_options": "Web search options are not supported by aspweb's gateway.",
    "top_logprobs": "Log probabilities are not supported by aspweb's gateway.",
}
_KNOWN = {"model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens", "user", "metadata",
          "max_completion_tokens", "stop", "n", "tools", "tool_choice", "logprobs", "modalities",
          *_PASSTHROUGH, *_IGNORED, *_UNSUPPORTED}
ROLES = ("system", "developer", "user", "assistant", "tool")


# OpenAI's bounds on `metadata`: 16 pairs, keys of 64 characters, values of 512.
METADATA_PAIRS, METADATA_KEY_MAX, METADATA_VALUE_MAX = 16, 64, 512


@dataclass(frozen=True)
class ParsedChat:
    request: ChatRequest
    stream: bool
    include_usage: bool
    # Attribution from the body (usage/attribution.py): `metadata.tags` and `user`.
    tags: tuple[str, ...] = ()
    end_user: str = ""


def _metadata(value: Any) -> dict[str, str]:
    """OpenAI's `metadata`: at most 16 pairs of strings, keys up to 64 characters, values up to 512."""
    metadata = obj(value, "metadata")
    if len(metadata) > METADATA_PAIRS:
        raise BadRequest(f"metadata holds {len(metadata)} pairs; at most {METADATA_PAIRS} are allowed.", "metadata")
    for key, item in metadata.items():
        if len(key) > METADATA_KEY_MAX:
            raise BadRequest(f"metadata keys have at most {METADATA_KEY_MAX} characters.", f"metadata.{key[:20]}")
        text(item, f"metadata.{key}", longest=METADATA_VALUE_MAX)
    return metadata


def attribution_fields(values: dict[str, Any]) -> tuple[dict[str, str] | None, tuple[str, ...], str]:
    """The call's `metadata` (forwarded to providers that accept it), its tags (`metadata.tags`, "a,b") and
    its end user (`user`)."""
    metadata = _metadata(values["metadata"]) if "metadata" in values else None
    try:
        tags = attribution.tags_parse([metadata["tags"]], "metadata.tags") if metadata and "tags" in metadata else ()
        end_user = attribution.end_user_clean(text(values["user"], "user"), "user") if "user" in values else ""
    except attribution.AttributionError as exc:
        raise BadRequest(exc.message, exc.param, "invalid_attribution") from None
    return metadata or None, tags, end_user


def parse_chat(body: Any) -> ParsedChat:
    body = obj(body, "body")
    unicode_text(body, dotted=False)
    for name, value in body.items():
        if name not in _KNOWN:
            raise BadRequest(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")
        if name in _UNSUPPORTED and value is not None:
            raise BadRequest(_UNSUPPORTED[name], name, "unsupported_parameter")
    model = model_name(body.get("model"))
    if body.get("messages") is None:
        raise BadRequest("messages is required.", "messages", "missing_required_parameter")
    system, messages = _messages(array(body["messages"], "messages", non_empty=True))
    values = {name: value for name, value in body.items() if value is not None}

    stream = boolean(values["stream"], "stream") if "stream" in values else False
    include_usage = False
    if "stream_options" in values:
        if not stream:
            raise BadRequest("stream_options is only allowed when stream is true.", "stream_options")
        options = obj(values["stream_options"], "stream_options")
        if options.get("include_usage") is not None:
            include_usage = boolean(options["include_usage"], "stream_options.include_usage")
    if "n" in values and integer(values["n"], "n", 1) != 1:
        raise BadRequest("n > 1 is not supported: ask once per answer.", "n", "unsupported_parameter")
    if values.get("logprobs") is not None and boolean(values["logprobs"], "logprobs"):
        raise BadRequest("Log probabilities are not supported by aspweb's gateway.", "logprobs",
                         "unsupported_parameter")
    if "modalities" in values and array(values["modalities"], "modalities") != ["text"]:
        raise BadRequest("Only text output is supported by aspweb's gateway.", "modalities", "unsupported_parameter")

    max_tokens = None
    for name in ("max_tokens", "max_completion_tokens"):  # the newer name wins when both are sent
        if name in values:
            max_tokens = integer(values[name], name, 1)
    tools = tuple(_tool(tool, f"tools[{i}]") for i, tool in enumerate(array(values.get("tools", []), "tools",
                                                                             most=128)))
    tool_choice = _tool_choice(values["tool_choice"], bool(tools)) if "tool_choice" in values else None
    for name in _IGNORED:
        if name in values:
            _IGNORED[name](values[name], name)
    extra = {name: _PASSTHROUGH[name](values[name], name) for name in _PASSTHROUGH if name in values}
    metadata, tags, end_user = attribution_fields(values)
    request = ChatRequest(
        model=model, messages=messages, system=system,
        temperature=number(values["temperature"], "temperature", 0, 2) if "temperature" in values else None,
        top_p=number(values["top_p"], "top_p", 0, 1) if "top_p" in values else None,
        max_tokens=max_tokens, stop=_stop(values.get("stop")), tools=tools, tool_choice=tool_choice,
        extra=extra, stream=stream, metadata=metadata,
    )
    return ParsedChat(request, stream, include_usage, tags, end_user)


def _messages(items: list[Any]) -> tuple[str, tuple[Message, ...]]:
    """System and developer messages join the system prompt, in their order; the rest are turns."""
    system: list[str] = []
    messages: list[Message] = []
    for i, item in enumerate(items):
        param = f"messages[{i}]"
        item = obj(item, param)
        role = one_of(item.get("role"), f"{param}.role", (*ROLES, "function"))
        content = item.get("content")
        if role == "function":
            raise BadRequest("The function role is deprecated: use tool.", f"{param}.role", "unsupported_parameter")
        if role in ("system", "developer"):
            system.append(_text_content(content, f"{param}.content"))
        elif role == "user":
            messages.append(Message("user", _user_content(content, f"{param}.content")))
        elif role == "tool":
            call_id = text(item.get("tool_call_id"), f"{param}.tool_call_id", non_empty=True)
            messages.append(Message("tool", _text_content(content, f"{param}.content"), tool_call_id=call_id))
        else:
            calls = tuple(_tool_call(call, f"{param}.tool_calls[{n}]")
                          for n, call in enumerate(array(item.get("tool_calls") or [], f"{param}.tool_calls")))
            if content is None and not calls:
                raise BadRequest("An assistant message needs content or tool_calls.", f"{param}.content")
            said = "" if content is None else _text_content(content, f"{param}.content", refusal=True)
            messages.append(Message("assistant", said, tool_calls=calls))
    if not messages:
        raise BadRequest("messages needs at least one user, assistant or tool message besides system messages.",
                         "messages")
    return "\n\n".join(part for part in system if part), tuple(messages)


def _text_content(content: Any, param: str, *, refusal: bool = False) -> str:
    """A string, or an array of text parts (an assistant's may hold refusal parts)."""
    if isinstance(content, str):
        return content
    parts = []
    for n, part in enumerate(content_array(content, param)):
        part = obj(part, f"{param}[{n}]")
        kinds = ("text", "refusal") if refusal else ("text",)
        kind = one_of(part.get("type"), f"{param}[{n}].type", kinds)
        parts.append(text(part.get(kind), f"{param}[{n}].{kind}"))
    return "".join(parts)


def _user_content(content: Any, param: str) -> str | tuple[TextPart | ImagePart, ...]:
    if isinstance(content, str):
        return content
    parts: list[TextPart | ImagePart] = []
    for n, part in enumerate(content_array(content, param, non_empty=True)):
        where = f"{param}[{n}]"
        part = obj(part, where)
        kind = part.get("type")
        if kind in ("input_audio", "file"):
            raise BadRequest(f"{kind} content is not supported by aspweb's gateway.", f"{where}.type",
                             "unsupported_parameter")
        kind = one_of(kind, f"{where}.type", ("text", "image_url"))
        if kind == "text":
            parts.append(TextPart(text(part.get("text"), f"{where}.text")))
        else:
            image = obj(part.get("image_url"), f"{where}.image_url")
            if image.get("detail") is not None:
                one_of(image["detail"], f"{where}.image_url.detail", ("auto", "low", "high"))
            parts.append(ImagePart(image_url(image.get("url"), f"{where}.image_url.url")))
    return tuple(parts)


def _tool_call(call: Any, param: str) -> ToolCall:
    call = obj(call, param)
    one_of(call.get("type", "function"), f"{param}.type", ("function",))
    function = obj(call.get("function"), f"{param}.function")
    return ToolCall(
        id=text(call.get("id"), f"{param}.id", non_empty=True),
        name=text(function.get("name"), f"{param}.function.name", non_empty=True),
        arguments=text(function.get("arguments", ""), f"{param}.function.arguments"),
    )


def _tool(tool: Any, param: str) -> dict[str, Any]:
    tool = obj(tool, param)
    one_of(tool.get("type"), f"{param}.type", ("function",))
    function = obj(tool.get("function"), f"{param}.function")
    name = text(function.get("name"), f"{param}.function.name")
    if not TOOL_NAME.match(name):
        raise BadRequest("A tool name is 1 to 64 letters, digits, underscores or dashes.", f"{param}.function.name")
    wire: dict[str, Any] = {"name": name}
    if function.get("description") is not None:
        wire["description"] = text(function["description"], f"{param}.function.description")
    if function.get("parameters") is not None:
        wire["parameters"] = obj(function["parameters"], f"{param}.function.parameters")
    if function.get("strict") is not None:
        wire["strict"] = boolean(function["strict"], f"{param}.function.strict")
    return {"type": "function", "function": wire}


def _tool_choice(choice: Any, has_tools: bool) -> str | dict[str, Any]:
    if isinstance(choice, str):
        choice = one_of(choice, "tool_choice", ("none", "auto", "required"))
    else:
        choice = obj(choice, "tool_choice")
        one_of(choice.get("type"), "tool_choice.type", ("function",))
        function = obj(choice.get("function"), "tool_choice.function")
        choice = {"type": "function", "function": {"name": text(function.get("name"), "tool_choice.function.name",
                                                                 non_empty=True)}}
    if choice != "none" and not has_tools:
        raise BadRequest("tool_choice is only allowed when tools are specified.", "tool_choice")
    return choice


def _stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    return tuple(text(item, f"stop[{n}]", non_empty=True) for n, item in enumerate(array(stop, "stop", most=4)))


def _response_format(value: Any, param: str) -> dict[str, Any]:
    value = obj(value, param)
    kind = one_of(value.get("type"), f"{param}.type", ("text", "json_object", "json_schema"))
    if kind == "json_schema":
        obj(value.get("json_schema"), f"{param}.json_schema")
    return value


# -- answers ----------------------------------------------------------------------------------------


def usage_body(usage: Usage) -> dict[str, Any]:
    """OpenAI counts cached input inside prompt_tokens, and reasoning inside completion_tokens."""
    prompt = usage.prompt_tokens
    details: dict[str, int] = {"cached_tokens": usage.cache_read_tokens}
    if writes := usage.cache_write_tokens + usage.cache_write_1h_tokens:
        details["cache_write_tokens"] = writes
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def completion_body(completion: Completion, *, completion_id: str, created: int, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": completion.text or None, "refusal": None}
    if completion.reasoning:
        # Not OpenAI's field (it never shows reasoning) but the one DeepSeek and vLLM add, and SDKs keep.
        message["reasoning_content"] = completion.reasoning
    if completion.tool_calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in completion.tool_calls
        ]
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": completion.finish_reason or "stop"}],
        "usage": usage_body(completion.usage),
        "system_fingerprint": None,
    }


def _event(payload: dict[str, Any] | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
    return b"data: %s\n\n" % data


class StreamWriter:
    """Neutral chunks to `chat.completion.chunk` events, in OpenAI's order: the role first, the deltas, a
    chunk with the finish reason, then (when asked) one with no choices and the usage, then [DONE]."""

    def __init__(self, *, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self.completion_id, self.created, self.model = completion_id, created, model
        self.include_usage = include_usage

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        payload: dict[str, Any] = {
            "id": self.completion_id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            payload["usage"] = None
        return _event(payload)

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def delta(self, chunk: Chunk) -> bytes:
        out = b""
        if chunk.reasoning:
            out += self._chunk({"reasoning_content": chunk.reasoning})
        if chunk.text:
            out += self._chunk({"content": chunk.text})
        if chunk.tool_call is not None:
            call = chunk.tool_call
            piece: dict[str, Any] = {"index": call.index}
            function: dict[str, str] = {"arguments": call.arguments}
            if call.id or call.name:
                piece.update(id=call.id, type="function")
                function = {"name": call.name, "arguments": call.arguments}
            piece["function"] = function
            out += self._chunk({"tool_calls": [piece]})
        return out

    def end(self, usage: Usage, finish_reason: str | None) -> bytes:
        out = self._chunk({}, finish_reason or "stop")
        if self.include_usage:
            out += _event({
                "id": self.completion_id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": None, "choices": [], "usage": usage_body(usage),
            })
        return out + _event("[DONE]")

    @staticmethod
    def error(body: dict[str, Any]) -> bytes:
        """An error after the stream started: OpenAI sends the error object as an event of its own."""
        return _event(body) + _event("[DONE]")


def error_body(message: str, *, type: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
