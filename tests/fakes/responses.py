"""The fake upstream's OpenAI Responses API (`POST /v1/responses`, and Azure OpenAI's `/openai/responses`):
a `response` object, or its typed events with their sequence numbers, as OpenAI documents them, so that the
openai SDK's `responses.create` runs against it as in production.

It says what the fake says to chat requests (FakeUpstream's ``reply``, ``tool_call``, ``reasoning`` — as
a reasoning summary, only when the request asks for reasoning — and ``usage``), with the Responses API's
usage object: ``input_tokens`` including ``input_tokens_details.cached_tokens``, ``output_tokens``
including ``output_tokens_details.reasoning_tokens``. Faults: an HTTP status (handled before this), "slow",
"cut", "malformed" and "error_event" (a ``response.failed`` event after some deltas).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .upstream import Fault, _Answer, _Handler, _Snapshot, _Usage


def _input_text(body: dict[str, Any]) -> str:
    """All prompt text of a Responses API request, for the default input count."""
    texts = [body.get("instructions") or ""]
    items = body.get("input")
    for item in items if isinstance(items, list) else [{"content": items}]:
        if not isinstance(item, dict):
            continue
        content = item.get("content", item.get("output", item.get("arguments", "")))
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part.get("text", "") for part in content if isinstance(part, dict))
    return "".join(texts)


def usage_body(usage: _Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def serve(handler: _Handler, body: dict[str, Any], snapshot: _Snapshot, fault: Fault, *,
          answer_cls: type[_Answer], usage_cls: type[_Usage]) -> None:
    fake = handler.server.fake
    answer = answer_cls.build(fake, snapshot, "call_", reasoning=bool(body.get("reasoning")))
    usage = snapshot.raw_usage or usage_body(usage_cls.build(snapshot, {"system": _input_text(body)}, answer))
    response_id = fake._new_id("resp_")
    base = {
        "id": response_id, "object": "response", "created_at": int(time.time()), "status": "in_progress",
        "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "metadata": body.get("metadata") or {},
        "model": str(body.get("model", "")), "output": [], "parallel_tool_calls": True,
        "previous_response_id": None, "reasoning": {"effort": None, "summary": None}, "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0), "text": {"format": {"type": "text"}}, "tool_choice": "auto",
        "tools": body.get("tools") or [], "top_p": body.get("top_p", 1.0), "truncation": "disabled", "usage": None,
    }
    # Each item: (as it is added, its streamed pieces, as it is done).
    items: list[tuple[dict[str, Any], list[str], dict[str, Any]]] = []
    if answer.reasoning:
        item_id = fake._new_id("rs_")
        done = {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": snapshot.reasoning}]}
        items.append(({**done, "summary": []}, answer.reasoning, done))
    if answer.text:
        item_id = fake._new_id("msg_")
        part = {"type": "output_text", "text": snapshot.reply, "annotations": [], "logprobs": []}
        done = {"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        items.append(({**done, "status": "in_progress", "content": []}, answer.text, done))
    for call in answer.tool_calls:
        done = {"id": fake._new_id("fc_"), "type": "function_call", "status": "completed", "call_id": call.id,
                "name": call.name, "arguments": call.arguments}
        items.append(({**done, "status": "in_progress", "arguments": ""}, call.pieces, done))
    final = {**base, "status": "completed", "output": [done for _, _, done in items], "usage": usage}
    if not body.get("stream"):
        handler._send_json(200, final, fault)
        return
    counted = sum(len(pieces) for _, pieces, _ in items)
    sequence = iter(range(10**9))

    def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, **fields, "sequence_number": next(sequence)}

    def events() -> Iterator[tuple[str | None, Any]]:
        yield event("response.created", response=base)
        yield event("response.in_progress", response=base)
        position = 0
        for index, (added, pieces, done) in enumerate(items):
            place = {"item_id": added["id"], "output_index": index}
            yield event("response.output_item.added", output_index=index, item=added)
            kind = added["type"]
            if kind == "reasoning":
                yield event("response.reasoning_summary_part.added", **place, summary_index=0,
                            part={"type": "summary_text", "text": ""})
            elif kind == "message":
                yield event("response.content_part.added", **place, content_index=0,
                            part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
            for piece in pieces:
                if handler._breaks(fault, position, counted):
                    if fault.kind == "error_event":
                        error = {"code": "server_error", "message": "The model failed to generate a response."}
                        yield event("response.failed", response={**base, "status": "failed", "error": error})
                    else:
                        yield "response.output_text.delta", json.dumps(event("x", delta=piece)[1])[:40]
                    return
                position += 1
                if kind == "reasoning":
                    yield event("response.reasoning_summary_text.delta", **place, summary_index=0, delta=piece)
                elif kind == "message":
                    yield event("response.output_text.delta", **place, content_index=0, delta=piece, logprobs=[])
                else:
                    yield event("response.function_call_arguments.delta", **place, delta=piece)
            if kind == "reasoning":
                text = done["summary"][0]["text"]
                yield event("response.reasoning_summary_text.done", **place, summary_index=0, text=text)
                yield event("response.reasoning_summary_part.done", **place, summary_index=0,
                            part=done["summary"][0])
            elif kind == "message":
                yield event("response.output_text.done", **place, content_index=0, text=snapshot.reply, logprobs=[])
                yield event("response.content_part.done", **place, content_index=0, part=done["content"][0])
            else:
                yield event("response.function_call_arguments.done", **place, arguments=done["arguments"])
            yield event("response.output_item.done", output_index=index, item=done)
        yield event("response.completed", response=final)

    handler._stream(events(), snapshot, fault)
