#!/usr/bin/env python3
"""A fake `claude` command-line client, for tests of the claude_cli adapter. Standard library only.

Speaks what the real CLI speaks for the flags aspweb uses: `--version`; and `-p`/`--print` with
`--output-format stream-json --verbose [--include-partial-messages] [--model M] [--system-prompt S]
[--append-system-prompt S] [--tools T] [--input-format text]`, the prompt as an argument or on stdin.
Like the real CLI it refuses unknown options and stream-json without --verbose, then prints one JSON
event per line: system/init; with --include-partial-messages, stream_event lines wrapping the Messages
API's streaming events (message_start with the input side of the usage, message_delta with the cumulative
counts); the whole assistant message; and the result with usage, total_cost_usd and modelUsage. The
result's usage is the Messages API's usage object as the CLI prints it: input_tokens (uncached),
cache_creation_input_tokens (all writes) split by duration in cache_creation {ephemeral_1h_input_tokens,
ephemeral_5m_input_tokens}, cache_read_input_tokens, output_tokens, server_tool_use and service_tier.

Driven by environment variables:
- FAKE_CLAUDE_MODE: ok (default) | error (a result with is_error, exit 1) | not_logged_in (the CLI's
  "Invalid API key · Please run /login" result, exit 1) | slow (the first text delta, then silence for
  FAKE_CLAUDE_HANG seconds, default 30) | crash (some text, then a message on stderr and exit 1, no result)
- FAKE_CLAUDE_REPLY: the answer (default DEFAULT_REPLY), streamed word by word
- FAKE_CLAUDE_DELAY: seconds between events (default 0)
- FAKE_CLAUDE_USAGE: JSON object for the result's usage, sent as it is, or "null" to leave usage out
- FAKE_CLAUDE_COST: total_cost_usd (default 0.0123)
- FAKE_CLAUDE_ERROR: the error text of the error mode (default an "API Error: 500 ..." line)
- FAKE_CLAUDE_THINKING: when set, a thinking block with this text comes before the answer
- FAKE_CLAUDE_RECORD: a file to write {"argv", "stdin", "pid", "cwd", "env"} to, as JSON, before answering

aspweb starts the CLI with an environment of its own: tests pass these variables on by naming ENV_NAMES in
settings.CLAUDE_CLI_ENV, as an operator would name a variable their CLI needs.
"""

import json
import os
import re
import sys
import time
import uuid

DEFAULT_REPLY = "Hello from the fake Claude CLI."
DEFAULT_MODEL = "claude-sonnet-4-5-20250929"
VERSION = "2.1.0 (Claude Code)"
ENV_NAMES = tuple(f"FAKE_CLAUDE_{name}" for name in (
    "MODE", "REPLY", "DELAY", "USAGE", "COST", "ERROR", "THINKING", "RECORD", "HANG"))
# Option -> whether it takes a value.
OPTIONS = {
    "-p": False, "--print": False, "--verbose": False, "--include-partial-messages": False,
    "--output-format": True, "--input-format": True, "--model": True, "--system-prompt": True,
    "--append-system-prompt": True, "--tools": True,
}


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(code)


def parse(argv: list[str]) -> tuple[dict[str, str | bool], list[str]]:
    options: dict[str, str | bool] = {}
    positional: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            positional.extend(args)
        elif arg.startswith("-"):
            if arg not in OPTIONS:
                fail(f"error: unknown option '{arg}'")
            if OPTIONS[arg]:
                value = next(args, None)
                if value is None:
                    fail(f"error: option '{arg} <value>' argument missing")
                options[arg] = value
            else:
                options[arg] = True
        else:
            positional.append(arg)
    return options, positional


def emit(event: dict, delay: float) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()
    if delay:
        time.sleep(delay)


def cumulative(usage: dict) -> dict:
    """A message_delta's usage: the counts so far, input side included; never the split by duration."""
    names = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    return {name: usage[name] for name in names if name in usage}


def model_usage(model: str, usage: dict, cost: float) -> dict:
    """The result's modelUsage: the same counts per model, in the CLI's camelCase, with its cost."""
    return {model: {
        "inputTokens": usage.get("input_tokens", 0), "outputTokens": usage.get("output_tokens", 0),
        "cacheReadInputTokens": usage.get("cache_read_input_tokens", 0),
        "cacheCreationInputTokens": usage.get("cache_creation_input_tokens", 0), "webSearchRequests": 0,
        "costUSD": cost, "contextWindow": 200000, "maxOutputTokens": 64000,
    }}


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        print(VERSION)
        return
    options, positional = parse(sys.argv[1:])
    if not (options.get("-p") or options.get("--print")):
        fail("Error: this fake only supports print mode (-p)")
    if options.get("--output-format") != "stream-json":
        fail("Error: this fake only supports --output-format stream-json")
    if not options.get("--verbose"):
        fail("Error: When using --print, --output-format=stream-json requires --verbose")
    stdin = "" if sys.stdin.isatty() else sys.stdin.read()
    prompt = " ".join(positional) or stdin
    record = os.environ.get("FAKE_CLAUDE_RECORD")
    if record:
        with open(record, "w") as file:
            json.dump({"argv": sys.argv[1:], "stdin": stdin, "pid": os.getpid(), "cwd": os.getcwd(),
                       "env": dict(os.environ)}, file)
    if not prompt:
        fail("Error: Input must be provided either through stdin or as a prompt argument when using --print")

    mode = os.environ.get("FAKE_CLAUDE_MODE", "ok")
    reply = os.environ.get("FAKE_CLAUDE_REPLY", DEFAULT_REPLY)
    delay = float(os.environ.get("FAKE_CLAUDE_DELAY", "0"))
    thinking = os.environ.get("FAKE_CLAUDE_THINKING", "")
    model = str(options.get("--model") or DEFAULT_MODEL)
    session = str(uuid.uuid4())
    usage = json.loads(os.environ.get("FAKE_CLAUDE_USAGE") or json.dumps({
        "input_tokens": max(1, len(prompt) // 4), "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        "output_tokens": len(reply.split()), "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard", "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
    }))
    cost = float(os.environ.get("FAKE_CLAUDE_COST", "0.0123"))
    partial = bool(options.get("--include-partial-messages"))
    base = {"session_id": session, "parent_tool_use_id": None}

    emit({"type": "system", "subtype": "init", "cwd": os.getcwd(), "session_id": session,
          "tools": [] if options.get("--tools") == "" else ["Bash", "Read", "Edit"], "mcp_servers": [],
          "model": model, "permissionMode": "default", "apiKeySource": "none",
          "claude_code_version": VERSION.split()[0], "uuid": str(uuid.uuid4())}, delay)

    if mode in ("not_logged_in", "error"):
        # The CLI reports these as a synthetic assistant message, then a result with is_error.
        text = "Invalid API key · Please run /login" if mode == "not_logged_in" else os.environ.get(
            "FAKE_CLAUDE_ERROR",
            'API Error: 500 {"type":"error","error":{"type":"api_error","message":"Internal server error"}}')
        emit({"type": "assistant", "message": {"id": "msg_fake", "type": "message", "role": "assistant",
              "model": "<synthetic>", "content": [{"type": "text", "text": text}], "stop_reason": "stop_sequence",
              "usage": {"input_tokens": 0, "output_tokens": 0}}, **base}, delay)
        emit({"type": "result", "subtype": "success", "is_error": True, "duration_ms": 12, "num_turns": 1,
              "result": text, "session_id": session, "total_cost_usd": 0,
              "usage": {"input_tokens": 0, "output_tokens": 0}}, delay)
        sys.exit(1)

    words = re.findall(r"\S+\s*|\s+", reply)
    content = ([{"type": "thinking", "thinking": thinking, "signature": "sig"}] if thinking else []) + [
        {"type": "text", "text": reply}]
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {**(usage or {}), "output_tokens": 1}}
    if partial:
        emit({"type": "stream_event", "event": {"type": "message_start", "message": message}, **base}, delay)
        index = 0
        if thinking:
            emit({"type": "stream_event", "event": {"type": "content_block_start", "index": 0,
                  "content_block": {"type": "thinking", "thinking": ""}}, **base}, delay)
            emit({"type": "stream_event", "event": {"type": "content_block_delta", "index": 0,
                  "delta": {"type": "thinking_delta", "thinking": thinking}}, **base}, delay)
            emit({"type": "stream_event", "event": {"type": "content_block_stop", "index": 0}, **base}, delay)
            index = 1
        emit({"type": "stream_event", "event": {"type": "content_block_start", "index": index,
              "content_block": {"type": "text", "text": ""}}, **base}, delay)
        for position, word in enumerate(words):
            emit({"type": "stream_event", "event": {"type": "content_block_delta", "index": index,
                  "delta": {"type": "text_delta", "text": word}}, **base}, delay)
            if mode == "slow" and position == 0:
                time.sleep(float(os.environ.get("FAKE_CLAUDE_HANG", "30")))
            if mode == "crash" and position == len(words) // 2:
                fail("Error: the fake CLI crashed: ECONNRESET")
        emit({"type": "stream_event", "event": {"type": "content_block_stop", "index": index}, **base}, delay)
        emit({"type": "stream_event", "event": {"type": "message_delta", "delta": {"stop_reason": "end_turn",
              "stop_sequence": None}, "usage": cumulative(usage or {})}, **base}, delay)
        emit({"type": "stream_event", "event": {"type": "message_stop"}, **base}, delay)
    elif mode == "slow":
        time.sleep(float(os.environ.get("FAKE_CLAUDE_HANG", "30")))
    elif mode == "crash":
        fail("Error: the fake CLI crashed: ECONNRESET")
    emit({"type": "assistant", "message": {**message, "content": content, "stop_reason": "end_turn",
          "usage": usage or {}}, **base}, delay)
    result = {"type": "result", "subtype": "success", "is_error": False, "duration_ms": 900,
              "duration_api_ms": 850, "num_turns": 1, "result": reply, "stop_reason": "end_turn",
              "session_id": session, "total_cost_usd": cost, "modelUsage": model_usage(model, usage or {}, cost),
              "permission_denials": [], "uuid": str(uuid.uuid4())}
    if usage is not None:
        result["usage"] = usage
    emit(result, 0)


if __name__ == "__main__":
    main()
