"""The OpenAI Responses API format as the gateway's clients speak it (`POST /v1/responses`): a request body
in, a `response` object or a stream of its typed events out.

A request becomes the provider-neutral ChatRequest twice over: in chat form (system prompt, turns, tools),
which every adapter understands, and in the Responses API's own shape (`ChatRequest.responses`: the input
items as checked here), which the OpenAI and Azure OpenAI adapters send natively. Whichever deployment
answers, the answer is rebuilt here as output items: a reasoning summary, a message, function calls.

aspweb keeps no conversation state: `previous_response_id`, `conversation`, `store: true` and item
references are refused with a 400 (an omitted `store` is not: the answer says `"store": false`), and the
provider is asked not to store the response either. Parameters that need an answer aspweb cannot relay
(hosted tools, structured output formats, background responses, ...) are refused with a 400 naming them.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import orjson

from providers.adapters.base import (
    ChatRequest,
    Chunk,
    Completion,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    Usage,
)

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
from .openai_format import TOOL_NAME, attribution_fields

_STATELESS = ("aspweb does not store responses: send the conversation so far as `input` (the previous "
              "response's output items and your function_call_output items) instead.")
# Documented parameters aspweb cannot honour: refused when set to anything but null.
_UNSUPPORTED = {
    "previous_response_id": _STATELESS,
    "conversation": _STATELESS,
    "background": "Background responses are not supported by aspweb's gateway.",
    "prompt": "Prompt templates are not supported by aspweb's gateway.",
    "top_logprobs": "Log probabilities are not supported by aspweb's gateway.",
    "max_tool_calls": "max_tool_calls is not supported by aspweb's gateway.",
    "context_management": "Context management is not supported by aspweb's gateway.",
    "moderation": "Moderation settings are not supported by aspweb's gateway.",
    "prompt_cache_retention": "Prompt cache retention is not supported by aspweb's gateway.",
    "prompt_cache_options": "Prompt cache options are not supported by aspweb's gateway.",
    "background_options": "Background responses are not supported by aspweb's gateway.",
    "access_programs": "access_programs is not supported by aspweb's gateway.",
    "image": "Image settings are not supported by aspweb's gateway.",
}
# Accepted and not forwarded: they label or route the request at OpenAI and change nothing in the answer.
_IGNORED: dict[str, Any] = {
    "service_tier": lambda v, p: text(v, p),
    "safety_identifier": lambda v, p: text(v, p),
    "prompt_cache_key": lambda v, p: text(v, p),
    "stream_options": lambda v, p: {k: boolean(x, f"{p}.{k}") for k, x in obj(v, p).items()},
}
_KNOWN = {"model", "input", "instructions", "tools", "tool_choice", "max_output_tokens", "reasoning", "temperature",
          "top_p", "user", "metadata", "stream", "store", "parallel_tool_calls", "text", "truncation", "include",
          *_UNSUPPORTED, *_IGNORED}
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
SUMMARIES = ("auto", "concise", "detailed")


@dataclass(frozen=True)
class ParsedResponses:
    request: ChatRequest
    stream: bool
    # What the `response` object repeats of the request (instructions, tools, temperature, ...).
    echo: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    end_user: str = ""


def parse_responses(body: Any) -> ParsedResponses:
    body = obj(body, "body")
    unicode_text(body, dotted=False)
    for name, value in body.items():
        if name not in _KNOWN:
            raise BadRequest(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")
        if name in _UNSUPPORTED and value not in (None, False):
            raise BadRequest(_UNSUPPORTED[name], name, "unsupported_parameter")
    model = model_name(body.get("model"))
    values = {name: value for name, value in body.items() if value is not None}
    if values.get("store") is not None and boolean(values["store"], "store"):
        raise BadRequest(f"store: true is not supported. {_STATELESS}", "store", "unsupported_parameter")
    if "input" not in values:
        raise BadRequest("input is required: a string, or an array of input items.", "input",
                         "missing_required_parameter")
    for name, check in _IGNORED.items():
        if name in values:
            check(values[name], name)
    _check_text(values)

    instructions = text(values["instructions"], "instructions") if "instructions" in values else None
    system, messages, native_input = _input(values["input"])
    if instructions:
        system.insert(0, instructions)
    tools = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(array(values.get("tools", []), "tools", most=128))]
    tool_choice = _tool_choice(values["tool_choice"], bool(tools)) if "tool_choice" in values else None
    effort, reasoning = _reasoning(values["reasoning"]) if "reasoning" in values else (None, {})
    metadata, tags, end_user = attribution_fields(values)
    stream = boolean(values["stream"], "stream") if "stream" in values else False
    parallel = boolean(values["parallel_tool_calls"], "parallel_tool_calls") if "parallel_tool_calls" in values \
        else None
    max_output = integer(values["max_output_tokens"], "max_output_tokens", 1) if "max_output_tokens" in values \
        else None

    native: dict[str, Any] = {"input": native_input}
    if instructions is not None:
        native["instructions"] = instructions
    if tools:
        native["tools"] = tools
    if tool_choice is not None:
        native["tool_choice"] = tool_choice
    if reasoning:
        native["reasoning"] = reasoning
    if parallel is not None:
        native["parallel_tool_calls"] = parallel
    request = ChatRequest(
        model=model, messages=messages, system="\n\n".join(part for part in system if part),
        temperature=number(values["temperature"], "temperature", 0, 2) if "temperature" in values else None,
        top_p=number(values["top_p"], "top_p", 0, 1) if "top_p" in values else None,
        max_tokens=max_output, tools=tuple(_chat_tool(tool) for tool in tools),
        tool_choice=_chat_tool_choice(tool_choice), reasoning_effort=effort, stream=stream, metadata=metadata,
        responses=native,
    )
    echo = {
        "instructions": instructions, "max_output_tokens": max_output, "metadata": metadata or {},
        "parallel_tool_calls": True if parallel is None else parallel,
        "reasoning": {"effort": effort, "summary": reasoning.get("summary")},
        "temperature": request.temperature, "top_p": request.top_p, "tool_choice": tool_choice or "auto",
        "tools": tools, "user": values.get("user"),
    }
    return ParsedResponses(request, stream, echo, tags, end_user)


def _check_text(values: dict[str, Any]) -> None:
    """Plain text output only: no structured output formats."""
    if "text" in values:
        config = obj(values["text"], "text")
        if config.get("format") is not None:
            kind = obj(config["format"], "text.format").get("type")
            if kind != "text":
                raise BadRequest("Only the text output format is supported by aspweb's gateway.", "text.format.type",
                                 "unsupported_parameter")
        if config.get("verbosity") is not None:
            one_of(config["verbosity"], "text.verbosity", ("low", "medium", "high"))
    if "truncation" in values and one_of(values["truncation"], "truncation", ("auto", "disabled")) == "auto":
        raise BadRequest("truncation: auto is not supported by aspweb's gateway.", "truncation",
                         "unsupported_parameter")
    if "include" in values and array(values["include"], "include"):
        raise BadRequest("include is not supported by aspweb's gateway.", "include", "unsupported_parameter")


# -- input ------------------------------------------------------------------------------------------


def _input(value: Any) -> tuple[list[str], tuple[Message, ...], str | list[dict[str, Any]]]:
    """The system prompt's parts, the turns, and the input items as they go to a native provider."""
    if isinstance(value, str):
        return [], (Message("user", value),), value
    system: list[str] = []
    messages: list[Message] = []
    native: list[dict[str, Any]] = []
    for i, item in enumerate(content_array(value, "input", non_empty=True)):
        param = f"input[{i}]"
        item = obj(item, param)
        kind = item.get("type", "message" if "role" in item else None)
        kind = one_of(kind, f"{param}.type", ("message", "function_call", "function_call_output", "reasoning",
                                              "item_reference"))
        if kind == "item_reference":
            raise BadRequest(f"Item references are not supported. {_STATELESS}", f"{param}.type",
                             "unsupported_parameter")
        if kind == "reasoning":
            continue  # a previous answer's reasoning: neither format can take it back without stored state
        if kind == "function_call":
            call = ToolCall(text(item.get("call_id"), f"{param}.call_id", non_empty=True),
                            _name(item.get("name"), f"{param}.name"),
                            text(item.get("arguments", ""), f"{param}.arguments"))
            native.append({"type": "function_call", "call_id": call.id, "name": call.name,
                           "arguments": call.arguments})
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                messages[-1] = dataclasses.replace(last, tool_calls=(*last.tool_calls, call))
            else:
                messages.append(Message("assistant", "", tool_calls=(call,)))
        elif kind == "function_call_output":
            call_id = text(item.get("call_id"), f"{param}.call_id", non_empty=True)
            output = _output_text(item.get("output"), f"{param}.output")
            native.append({"type": "function_call_output", "call_id": call_id, "output": output})
            messages.append(Message("tool", output, tool_call_id=call_id))
        else:
            _message(item, param, system, messages, native)
    if not messages:
        raise BadRequest("input needs at least one user, assistant or function_call_output item besides system "
                         "and developer messages.", "input")
    return system, tuple(messages), native


def _message(item: dict[str, Any], param: str, system: list[str], messages: list[Message],
             native: list[dict[str, Any]]) -> None:
    role = one_of(item.get("role"), f"{param}.role", ("user", "assistant", "system", "developer"))
    content = item.get("content")
    if role == "assistant":
        said = _assistant_text(content, f"{param}.content")
        native.append({"type": "message", "role": "assistant", "content": said})
        messages.append(Message("assistant", said))
        return
    parts = _parts(content, f"{param}.content")
    native.append({"type": "message", "role": role, "content": content if isinstance(content, str) else
                   [_native_part(part) for part in parts]})
    if role in ("system", "developer"):
        if any(isinstance(part, ImagePart) for part in parts):
            raise BadRequest("Images go in user messages.", f"{param}.content")
        system.append(content if isinstance(content, str) else "".join(part.text for part in parts))
    else:
        messages.append(Message("user", content if isinstance(content, str) else tuple(parts)))


def _parts(content: Any, param: str) -> list[TextPart | ImagePart]:
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[TextPart | ImagePart] = []
    for n, part in enumerate(content_array(content, param, non_empty=True)):
        where = f"{param}[{n}]"
        part = obj(part, where)
        kind = part.get("type")
        if kind in ("input_file", "input_audio"):
            raise BadRequest(f"{kind} content is not supported by aspweb's gateway.", f"{where}.type",
                             "unsupported_parameter")
        if one_of(kind, f"{where}.type", ("input_text", "input_image")) == "input_text":
            parts.append(TextPart(text(part.get("text"), f"{where}.text")))
            continue
        if part.get("file_id") is not None:
            raise BadRequest("Images by file_id are not supported: send image_url.", f"{where}.file_id",
                             "unsupported_parameter")
        if part.get("detail") is not None:
            one_of(part["detail"], f"{where}.detail", ("auto", "low", "high", "original"))
        parts.append(ImagePart(image_url(part.get("image_url"), f"{where}.image_url")))
    return parts


def _native_part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, ImagePart):
        return {"type": "input_image", "image_url": part.url, "detail": "auto"}
    return {"type": "input_text", "text": part.text}


def _assistant_text(content: Any, param: str) -> str:
    """An earlier answer: a string, or output_text / refusal parts (as a response's output message holds
    them) or input_text parts."""
    if isinstance(content, str):
        return content
    said = []
    for n, part in enumerate(content_array(content, param)):
        part = obj(part, f"{param}[{n}]")
        kind = one_of(part.get("type"), f"{param}[{n}].type", ("output_text", "input_text", "refusal"))
        said.append(text(part.get("refusal" if kind == "refusal" else "text"), f"{param}[{n}].text"))
    return "".join(said)


def _output_text(output: Any, param: str) -> str:
    """A function's output: a string, or input_text parts."""
    if isinstance(output, str):
        return output
    said = []
    for n, part in enumerate(content_array(output, param)):
        part = obj(part, f"{param}[{n}]")
        if part.get("type") != "input_text":
            raise BadRequest("A function_call_output holds text only in aspweb's gateway.", f"{param}[{n}].type",
                             "unsupported_parameter")
        said.append(text(part.get("text"), f"{param}[{n}].text"))
    return "".join(said)


def _name(value: Any, param: str) -> str:
    name = text(value, param)
    if not TOOL_NAME.match(name):
        raise BadRequest("A function name is 1 to 64 letters, digits, underscores or dashes.", param)
    return name


# -- tools ------------------------------------------------------------------------------------------


def _tool(tool: Any, param: str) -> dict[str, Any]:
    tool = obj(tool, param)
    if tool.get("type") != "function":
        raise BadRequest(f"Only function tools are supported by aspweb's gateway; {param}.type is "
                         f"{tool.get('type')!r}.", f"{param}.type", "unsupported_parameter")
    wire: dict[str, Any] = {"type": "function", "name": _name(tool.get("name"), f"{param}.name")}
    if tool.get("description") is not None:
        wire["description"] = text(tool["description"], f"{param}.description")
    wire["parameters"] = obj(tool["parameters"], f"{param}.parameters") if tool.get("parameters") is not None \
        else None
    # OpenAI's Responses API makes function tools strict unless told otherwise; so does aspweb, natively.
    wire["strict"] = boolean(tool["strict"], f"{param}.strict") if tool.get("strict") is not None else None
    return wire


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {name: tool[name] for name in ("name", "description", "parameters", "strict")
                if tool.get(name) is not None}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, has_tools: bool) -> str | dict[str, Any]:
    if isinstance(choice, str):
        choice = one_of(choice, "tool_choice", ("none", "auto", "required"))
    else:
        choice = obj(choice, "tool_choice")
        if choice.get("type") != "function":
            raise BadRequest("tool_choice names a function, or is none, auto or required, in aspweb's gateway.",
                             "tool_choice.type", "unsupported_parameter")
        choice = {"type": "function", "name": _name(choice.get("name"), "tool_choice.name")}
    if choice != "none" and not has_tools:
        raise BadRequest("tool_choice is only allowed when tools are specified.", "tool_choice")
    return choice


def _chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if isinstance(choice, dict):
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def _reasoning(value: Any) -> tuple[str | None, dict[str, Any]]:
    """The effort (a ChatRequest field every adapter maps) and the rest, for native providers."""
    reasoning = obj(value, "reasoning")
    for name in reasoning:
        if name not in ("effort", "summary", "generate_summary"):
            raise BadRequest(f"Unrecognized request argument supplied: reasoning.{name}", f"reasoning.{name}",
                             "unknown_parameter")
    effort = one_of(reasoning["effort"], "reasoning.effort", EFFORTS) if reasoning.get("effort") is not None \
        else None
    summary = reasoning.get("summary") or reasoning.get("generate_summary")
    if summary is not None:
        summary = one_of(summary, "reasoning.summary", SUMMARIES)
    return effort, ({"summary": summary} if summary else {})


# -- answers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What names one response: its id, time, the model as the client named it, and the request's echo."""

    response_id: str
    created_at: int
    model: str
    echo: dict[str, Any]

    def item_id(self, prefix: str, n: int | None = None) -> str:
        base = f"{prefix}_{self.response_id.removeprefix('resp_')}"
        return base if n is None else f"{base}_{n}"

    def response(self, status: str, output: list[dict[str, Any]], usage: Usage | None = None,
                 incomplete: str | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "id": self.response_id, "object": "response", "created_at": self.created_at, "status": status,
            "error": error, "incomplete_details": {"reason": incomplete} if incomplete else None,
            **self.echo, "model": self.model, "output": output, "previous_response_id": None, "store": False,
            "text": {"format": {"type": "text"}}, "truncation": "disabled",
            "usage": usage_body(usage) if usage is not None else None,
        }


def usage_body(usage: Usage) -> dict[str, Any]:
    """The Responses API counts cached input inside input_tokens, and reasoning inside output_tokens."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
    }


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _reasoning_item(answer: Answer, said: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": answer.item_id("rs"), "summary": [{"type": "summary_text", "text": said}]}


def _text_part(said: str) -> dict[str, Any]:
    return {"type": "output_text", "text": said, "annotations": [], "logprobs": []}


def _message_item(answer: Answer, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"type": "message", "id": answer.item_id("msg"), "status": status, "role": "assistant", "content": parts}


def _call_item(answer: Answer, n: int, call: ToolCall, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": answer.item_id("fc", n), "call_id": call.id, "name": call.name,
            "arguments": call.arguments, "status": status}


def response_body(completion: Completion, answer: Answer) -> dict[str, Any]:
    output = [_reasoning_item(answer, completion.reasoning)] if completion.reasoning else []
    if completion.text or not completion.tool_calls:
        output.append(_message_item(answer, [_text_part(completion.text)], "completed"))
    output += [_call_item(answer, n, call, "completed") for n, call in enumerate(completion.tool_calls)]
    incomplete = _INCOMPLETE.get(completion.finish_reason or "")
    return answer.response("incomplete" if incomplete else "completed", output, completion.usage, incomplete)


class StreamWriter:
    """Neutral chunks to the Responses API's typed events, each with its `sequence_number`: the response
    created and in progress; per output item (reasoning summary, message, function call) its `added`
    event, its part, its deltas and its `done` events; then `response.completed` (or `.incomplete`) with
    the whole response."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.said = ""  # its text or arguments so far
        self.calls: dict[int, dict[str, Any]] = {}  # function calls by their index among the answer's calls

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(payload))

    def start(self) -> bytes:
        response = self.answer.response("in_progress", [])
        return self._event("response.created", response=response) + self._event("response.in_progress",
                                                                                 response=response)

    def _place(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item["id"], "output_index": len(self.output)}

    def _open(self, item: dict[str, Any]) -> bytes:
        out = self._close()
        self.open, self.said = item, ""
        out += self._event("response.output_item.added", output_index=len(self.output), item=item)
        if item["type"] == "reasoning":
            out += self._event("response.reasoning_summary_part.added", **self._place(item), summary_index=0,
                               part={"type": "summary_text", "text": ""})
        elif item["type"] == "message":
            out += self._event("response.content_part.added", **self._place(item), content_index=0,
                               part=_text_part(""))
        return out

    def _close(self) -> bytes:
        item = self.open
        if item is None:
            return b""
        place, said, out = self._place(item), self.said, b""
        if item["type"] == "reasoning":
            part = {"type": "summary_text", "text": said}
            out += self._event("response.reasoning_summary_text.done", **place, summary_index=0, text=said)
            out += self._event("response.reasoning_summary_part.done", **place, summary_index=0, part=part)
            item = {**item, "summary": [part]}
        elif item["type"] == "message":
            out += self._event("response.output_text.done", **place, content_index=0, text=said, logprobs=[])
            out += self._event("response.content_part.done", **place, content_index=0, part=_text_part(said))
            item = {**item, "status": "completed", "content": [_text_part(said)]}
        else:
            out += self._event("response.function_call_arguments.done", **place, arguments=said)
            item = {**item, "status": "completed", "arguments": said}
        out += self._event("response.output_item.done", output_index=place["output_index"], item=item)
        self.output.append(item)
        self.open = None
        return out

    def delta(self, chunk: Chunk) -> bytes:
        out = b""
        if chunk.reasoning:
            if self.open is None or self.open["type"] != "reasoning":
                out += self._open({"type": "reasoning", "id": self.answer.item_id("rs", len(self.output)),
                                   "summary": []})
            self.said += chunk.reasoning
            out += self._event("response.reasoning_summary_text.delta", **self._place(self.open), summary_index=0,
                               delta=chunk.reasoning)
        if chunk.text:
            if self.open is None or self.open["type"] != "message":
                out += self._open(_message_item(self.answer, [], "in_progress")
                                  | {"id": self.answer.item_id("msg", len(self.output))})
            self.said += chunk.text
            out += self._event("response.output_text.delta", **self._place(self.open), content_index=0,
                               delta=chunk.text, logprobs=[])
        if (piece := chunk.tool_call) is not None:
            if piece.index not in self.calls:
                item = _call_item(self.answer, piece.index, ToolCall(piece.id, piece.name, ""), "in_progress")
                out += self._open(item)
                self.calls[piece.index] = item
            if piece.arguments:
                if self.open is self.calls[piece.index]:
                    self.said += piece.arguments
                    out += self._event("response.function_call_arguments.delta", **self._place(self.open),
                                       delta=piece.arguments)
                else:  # a piece of a call already closed (no server interleaves them): kept, not streamed
                    done = next(item for item in self.output if item["id"] == self.calls[piece.index]["id"])
                    done["arguments"] += piece.arguments
        return out

    def end(self, usage: Usage, finish_reason: str | None) -> bytes:
        out = self._close()
        incomplete = _INCOMPLETE.get(finish_reason or "")
        response = self.answer.response("incomplete" if incomplete else "completed", self.output, usage, incomplete)
        return out + self._event("response.incomplete" if incomplete else "response.completed", response=response)

    def error(self, body: dict[str, Any]) -> bytes:
        """An error after the stream started: an `error` event, then the response failed."""
        error = body.get("error") or {}
        code, message = error.get("code") or "server_error", error.get("message") or "The call failed."
        out = self._event("error", code=code, message=message, param=error.get("param"))
        failed = self.answer.response("failed", self.output, error={"code": code, "message": message})
        return out + self._event("response.failed", response=failed)
