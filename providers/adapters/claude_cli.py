"""The `claude` command-line client as a subprocess; it signs in with its own login.

One call is one process, never through a shell:

    claude -p --output-format stream-json --verbose --include-partial-messages --tools "" \
        [--model M] --system-prompt S

with the prompt written to stdin: `-p` reads it from there when no prompt argument is given, which keeps
long conversations clear of the argument-length limit and of option parsing (`--tools` takes several
values and would swallow a prompt that follows it). `--tools ""` turns off Claude Code's built-in tools:
this is a chat model, not an agent with the server's files and shell. `--system-prompt` replaces Claude
Code's own system prompt, so the model answers as the request asks; a request without one gets
DEFAULT_SYSTEM_PROMPT instead of Claude Code's, which is long, written for an agent, billed on every call
and beyond what a hard limit's reservation can see (providers/bounds.py). The process runs in the temporary
directory so that no project's CLAUDE.md or settings join the conversation.

The process gets an environment of its own (`environment()`), not the server's: the server's holds its
secret key, encryption keys, database and Redis URLs and provider keys, none of which the CLI needs. The CLI
signs in with its own login, so the server's ANTHROPIC_API_KEY is withheld too: passed on, it would bill
that key instead of the login the operator set up.

The CLI takes one prompt, so earlier turns are rendered into it, each in a <user> or <assistant> tag,
before the message to answer. Sampling parameters (temperature, top_p, max_tokens, stop) have no CLI
flag and are not sent; tool definitions and images are refused with a clear error.

Output is one JSON event per line: `system/init`, then `stream_event`s wrapping the Messages API's
streaming events (text deltas, with --include-partial-messages), the whole `assistant` message, and a
final `result` carrying usage (Anthropic's fields: input excludes cache reads and writes) and
`total_cost_usd`.
"""

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from django.conf import settings

from ..kinds import get_kind
from .anthropic import usage_from_anthropic
from .base import (
    ChatRequest,
    Chunk,
    Completion,
    Connection,
    ErrorKind,
    FinishReason,
    Health,
    ImagePart,
    ModelInfo,
    ProviderError,
    Usage,
    collect,
    estimate_tokens,
    plain_message,
    redact,
    reported_cost,
)

# stream-json lines hold whole messages; asyncio's default 64 KiB line limit is too small for long answers.
_LINE_LIMIT = 16 * 1024 * 1024

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# What the CLI says, in its own words, for failures that are not a server error.
_PATTERNS: tuple[tuple[re.Pattern[str], ErrorKind], ...] = (
    (re.compile(r"/login|not logged in|\blog ?in\b|invalid api key|missing api key|oauth|authenticat",
                re.I), "auth"),
    (re.compile(r"credit balance|billing", re.I), "quota"),
    (re.compile(r"usage limit|limit reached|rate.?limit|\b429\b", re.I), "rate_limit"),
    (re.compile(r"not_found_error|model.*not (found|exist)|invalid model|\b404\b", re.I), "model_not_found"),
    (re.compile(r"prompt is too long|invalid_request_error|unknown option|\b400\b", re.I), "invalid_request"),
)


# What the CLI runs on: where programs and its login live, the language, the temporary directory.
_SYSTEM_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TMPDIR")
# Claude Code's own settings (its docs' "network config" and "settings"): where its configuration and login
# are, a long-lived login token from `claude setup-token`, a corporate proxy and CA, client certificates,
# and the switches that keep a server's CLI from updating itself or phoning home.
_CLI_ENV = (
    "CLAUDE_CONFIG_DIR", "CLAUDE_CODE_OAUTH_TOKEN", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy",
    "http_proxy", "no_proxy", "NODE_EXTRA_CA_CERTS", "CLAUDE_CODE_CLIENT_CERT", "CLAUDE_CODE_CLIENT_KEY",
    "CLAUDE_CODE_CLIENT_KEY_PASSPHRASE", "DISABLE_AUTOUPDATER", "DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
)


def environment() -> dict[str, str]:
    """The CLI's environment: the variables above, every locale category (LC_*), and the names an operator
    added with ASPWEB_CLAUDE_CLI_ENV, taken from the server's environment when set there; nothing else."""
    names = {*_SYSTEM_ENV, *_CLI_ENV, *settings.CLAUDE_CLI_ENV}
    return {name: value for name, value in os.environ.items() if name in names or name.startswith("LC_")}


def executable() -> str:
    path = shutil.which(settings.CLAUDE_CLI_PATH)
    if not path:
        raise ProviderError(
            "network",
            f"The Claude CLI ({settings.CLAUDE_CLI_PATH!r}) is not installed on this server, or not on its PATH. "
            "Install it and sign in as the user that runs aspweb, or set ASPWEB_CLAUDE_CLI to its full path.",
            retryable=False,
        )
    return path


def _failure(conn: Connection, detail: str) -> ProviderError:
    detail = redact(" ".join(detail.split()))[:300]
    kind: ErrorKind = next((kind for pattern, kind in _PATTERNS if pattern.search(detail)), "server")
    if kind == "auth":
        return ProviderError(
            "auth",
            f"The Claude CLI behind {conn.label} is not signed in: run “claude” once as the user that runs "
            f"aspweb and sign in with /login. The CLI said: {detail}",
        )
    return ProviderError(kind, plain_message(kind, conn.label, None, detail or "it stopped without saying why."))


def _prompt(conn: Connection, request: ChatRequest) -> str:
    if request.tools:
        raise ProviderError("invalid_request", f"{conn.label}: the Claude CLI kind cannot take tool definitions; "
                                               "remove the tools or use the Anthropic kind.")
    if any(isinstance(part, ImagePart) for m in request.messages if not isinstance(m.content, str)
           for part in m.content):
        raise ProviderError("invalid_request", f"{conn.label}: the Claude CLI kind cannot take images; "
                                               "use the Anthropic kind for images.")
    if not request.messages or request.messages[-1].role != "user":
        raise ProviderError("invalid_request", f"{conn.label}: the conversation must end with a user message.")
    *earlier, last = request.messages
    if not earlier:
        return last.text
    turns = []
    for message in earlier:
        text = message.text
        if message.role == "tool":
            turns.append(f"<tool_result>\n{text}\n</tool_result>")
        else:
            calls = "".join(f"\n[called tool {c.name} with {c.arguments}]" for c in message.tool_calls)
            turns.append(f"<{message.role}>\n{text}{calls}\n</{message.role}>")
    return (
        "Earlier turns of this conversation, oldest first:\n\n" + "\n".join(turns)
        + "\n\nReply to the user's latest message, which follows.\n\n" + last.text
    )


DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."


def _argv(request: ChatRequest) -> list[str]:
    argv = [executable(), "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
            "--tools", ""]
    if request.model:
        argv += ["--model", request.model]
    return [*argv, "--system-prompt", request.system or DEFAULT_SYSTEM_PROMPT]


def _usage(result: dict[str, Any], prompt: str, text: str) -> Usage:
    """The result's `usage` (the Messages API's usage object, its 5-minute and 1-hour cache writes apart)
    and `total_cost_usd`, the CLI's cost of the whole run. That cost covers every model the run called (its
    `modelUsage` lists them, side calls to a small model among them) while `usage` counts the main model's
    tokens only, so the reported cost may exceed what those tokens cost."""
    raw = result.get("usage")
    cost = reported_cost(result.get("total_cost_usd"))
    if not isinstance(raw, dict) or not isinstance(raw.get("output_tokens"), int):
        return Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(text), estimated=True,
                     reported_cost=cost)
    return replace(usage_from_anthropic(raw), reported_cost=cost)


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        # The whole process group: the CLI (node) may have started helpers of its own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


async def stream(conn: Connection, request: ChatRequest) -> AsyncIterator[Chunk]:
    prompt = _prompt(conn, request)
    argv = _argv(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + conn.timeout

    async def within_deadline(awaitable: Any) -> Any:
        try:
            return await asyncio.wait_for(awaitable, max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise ProviderError("timeout", plain_message("timeout", conn.label, None)) from None

    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=tempfile.gettempdir(), env=environment(), start_new_session=True, limit=_LINE_LIMIT,
        )
    except OSError:  # gone or not executable since `executable()` looked
        executable()
        raise ProviderError("network", f"The Claude CLI at {argv[0]} could not be started.",
                            retryable=False) from None
    # Drained alongside stdout, so a chatty stderr cannot fill its pipe and stall the CLI.
    stderr = asyncio.ensure_future(process.stderr.read())
    try:
        with contextlib.suppress(ConnectionError):  # the CLI exited before reading: its exit status says why
            process.stdin.write(prompt.encode())
            await within_deadline(process.stdin.drain())
            process.stdin.close()
        text, streamed, finish, result = "", False, None, None
        while True:
            line = await within_deadline(process.stdout.readline())
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not an event (the CLI's own warnings); the exit status tells failure apart
            kind = event.get("type") if isinstance(event, dict) else None
            if kind == "stream_event":
                inner = event.get("event") or {}
                delta = inner.get("delta") or {}
                if inner.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
                    streamed = True
                    text += delta.get("text", "")
                    yield Chunk(text=delta.get("text", ""))
                elif inner.get("type") == "content_block_delta" and delta.get("type") == "thinking_delta":
                    yield Chunk(reasoning=delta.get("thinking", ""))
                elif inner.get("type") == "message_delta" and delta.get("stop_reason"):
                    finish = _FINISH.get(delta["stop_reason"], "stop")
            elif kind == "assistant" and not streamed:
                # Without partial messages (older CLIs) the text comes whole, one message at a time. A
                # "<synthetic>" message is the CLI's own error text, which the result event reports again.
                message = event.get("message") or {}
                blocks = [] if message.get("model") == "<synthetic>" else message.get("content") or []
                for block in blocks:
                    if block.get("type") == "text" and block.get("text"):
                        text += block["text"]
                        yield Chunk(text=block["text"])
            elif kind == "result":
                result = event
        returncode = await within_deadline(process.wait())
        if result is not None and result.get("is_error"):
            errors = result.get("errors") if isinstance(result.get("errors"), list) else []
            raise _failure(conn, str(result.get("result") or "; ".join(map(str, errors)) or result.get("subtype")))
        if returncode != 0 or result is None:
            raise _failure(conn, (await stderr).decode(errors="replace").strip()[-300:])
        finish = finish or _FINISH.get(str(result.get("stop_reason")), "stop")
        yield Chunk(usage=_usage(result, prompt, text), finish_reason=finish)
    finally:
        # Reached on success, error, timeout, and when the caller cancels or stops reading: no orphan.
        _kill(process)
        stderr.cancel()
        await process.wait()


async def complete(conn: Connection, request: ChatRequest) -> Completion:
    return await collect(stream(conn, request))


async def list_models(conn: Connection) -> list[ModelInfo]:
    # The CLI has no model listing: it accepts the model names of the preset.
    executable()
    return [ModelInfo(name) for name in get_kind("claude_cli").models]


async def health_check(conn: Connection) -> Health:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        executable(), "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=environment(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=conn.timeout)
    except TimeoutError:
        process.kill()
        raise ProviderError("timeout", "The Claude CLI did not answer “claude --version” in time.") from None
    latency_ms = round((time.perf_counter() - started) * 1000)
    if process.returncode != 0:
        raise ProviderError("server", f"The Claude CLI failed: {stderr.decode(errors='replace')[:300]}",
                            retryable=False)
    return Health(True, latency_ms, f"Claude CLI {stdout.decode(errors='replace').strip()} is installed.")
