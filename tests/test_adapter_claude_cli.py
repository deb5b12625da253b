"""The claude_cli adapter against a fake `claude` executable placed on PATH by the test."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace as changed
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from providers.adapters import claude_cli
from providers.adapters.base import (
    ChatRequest,
    Chunk,
    Connection,
    ImagePart,
    Message,
    ProviderError,
    TextPart,
    ToolCall,
    Usage,
    estimate_tokens,
)
from tests.fakes import claude_cli as fake_cli

CONN = Connection(kind="claude_cli", label="Claude CLI", base_url="", timeout=10.0)
HELLO = ChatRequest(model="claude-haiku-4-5", messages=(Message("user", "Say hi."),))


@dataclass
class FakeClaude:
    bin_dir: Path
    record_file: Path
    monkeypatch: pytest.MonkeyPatch

    def env(self, **values: str) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv(f"FAKE_CLAUDE_{name.upper()}", value)

    @property
    def record(self) -> dict[str, Any]:
        return json.loads(self.record_file.read_text())


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any) -> FakeClaude:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "claude"
    # exec: the wrapper's pid becomes the fake's, so the adapter's child is the fake itself.
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake_cli.__file__}" "$@"\n')
    wrapper.chmod(0o755)
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_CLAUDE_RECORD", str(record))
    settings.CLAUDE_CLI_PATH = str(wrapper)
    settings.CLAUDE_CLI_ENV = fake_cli.ENV_NAMES
    return FakeClaude(bin_dir, record, monkeypatch)


def stream(request: ChatRequest = HELLO, conn: Connection = CONN) -> list[Chunk]:
    async def run() -> list[Chunk]:
        return [chunk async for chunk in claude_cli.stream(conn, request)]

    return asyncio.run(run())


def failure(request: ChatRequest = HELLO, conn: Connection = CONN) -> tuple[list[Chunk], ProviderError]:
    """The chunks received before the call failed, and the error."""
    received: list[Chunk] = []

    async def run() -> None:
        async for chunk in claude_cli.stream(conn, request):
            received.append(chunk)

    with pytest.raises(ProviderError) as caught:
        asyncio.run(run())
    return received, caught.value


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_text_streams_word_by_word_then_usage_from_the_result(fake: FakeClaude) -> None:
    fake.env(reply="alpha beta gamma delta", usage=json.dumps({
        "input_tokens": 12, "output_tokens": 34, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200,
    }))
    chunks = stream()
    assert [c.text for c in chunks[:-1]] == ["alpha ", "beta ", "gamma ", "delta"]  # deltas, not the repeat
    assert chunks[-1] == Chunk(
        usage=Usage(input_tokens=12, cache_read_tokens=1000, cache_write_tokens=200, output_tokens=34,
                    reported_cost=Decimal("0.0123")),
        finish_reason="stop",
    )


def test_the_results_cache_writes_are_split_by_duration(fake: FakeClaude) -> None:
    # The result's usage as Claude Code 2.1 prints it, cache_creation splitting the 8982 written tokens.
    fake.env(cost="0.0745213", usage=json.dumps({
        "input_tokens": 6, "cache_creation_input_tokens": 8982, "cache_read_input_tokens": 42853, "output_tokens": 583,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0}, "service_tier": "standard",
        "cache_creation": {"ephemeral_1h_input_tokens": 6000, "ephemeral_5m_input_tokens": 2982},
    }))
    assert stream()[-1].usage == Usage(input_tokens=6, cache_read_tokens=42853, cache_write_tokens=2982,
                                       cache_write_1h_tokens=6000, output_tokens=583,
                                       reported_cost=Decimal("0.0745213"))


def test_text_is_passed_on_as_the_cli_prints_it(fake: FakeClaude) -> None:
    fake.env(reply="one two three four", delay="0.1")

    async def arrivals() -> list[float]:
        return [time.monotonic() async for chunk in claude_cli.stream(CONN, HELLO) if chunk.text]

    times = asyncio.run(arrivals())
    assert len(times) == 4
    assert times[-1] - times[0] >= 0.25


def test_flags_and_the_prompt_on_stdin(fake: FakeClaude) -> None:
    stream(changed(HELLO, system="Be brief."))
    assert fake.record["argv"] == [
        "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages", "--tools", "",
        "--model", "claude-haiku-4-5", "--system-prompt", "Be brief.",
    ]
    assert fake.record["stdin"] == "Say hi."
    assert os.path.realpath(fake.record["cwd"]) == os.path.realpath(tempfile.gettempdir())


# The server's secrets, as a production server's environment holds them.
SERVER_SECRETS = {
    "SECRET_KEY": "django-secret", "ASPWEB_ENCRYPTION_KEYS": "fernet-key", "DATABASE_URL": "postgres://u:p@db/a",
    "REDIS_URL": "redis://redis:6379/0", "ASPWEB_ADMIN_PASSWORD": "admin-password", "ANTHROPIC_API_KEY": "sk-ant-x",
    "OPENAI_API_KEY": "sk-openai-x", "EMAIL_HOST_PASSWORD": "smtp-password",
}
# What the CLI needs from it: where it runs, its language and temporary files, its login, proxy and CA.
CLI_NEEDS = {
    "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/aspweb", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
    "LC_CTYPE": "C.UTF-8", "TMPDIR": "/tmp", "CLAUDE_CONFIG_DIR": "/home/aspweb/.claude",
    "CLAUDE_CODE_OAUTH_TOKEN": "cli-login-token", "HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "localhost",
    "NODE_EXTRA_CA_CERTS": "/etc/ssl/corp.pem", "DISABLE_AUTOUPDATER": "1",
}


def test_the_cli_gets_its_own_variables_and_none_of_the_servers_secrets(
    fake: FakeClaude, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {**SERVER_SECRETS, **CLI_NEEDS}.items():
        monkeypatch.setenv(name, value)
    stream()
    env = fake.record["env"]
    assert not set(SERVER_SECRETS) & set(env)
    assert {name: env.get(name) for name in CLI_NEEDS} == CLI_NEEDS
    # Nothing else but who runs it, what the test passes on for the fake, and what its wrapper's shell sets.
    others = {"USER", "LOGNAME", "SHELL", "LANGUAGE", "PWD", "SHLVL", "_", "OLDPWD"}
    assert set(env) - set(CLI_NEEDS) - set(fake_cli.ENV_NAMES) <= others


def test_a_variable_the_operator_names_is_passed_on(fake: FakeClaude, monkeypatch: pytest.MonkeyPatch,
                                                    settings: Any) -> None:
    monkeypatch.setenv("AWS_PROFILE", "bedrock")
    stream()
    assert "AWS_PROFILE" not in fake.record["env"]
    settings.CLAUDE_CLI_ENV = [*fake_cli.ENV_NAMES, "AWS_PROFILE"]
    stream()
    assert fake.record["env"]["AWS_PROFILE"] == "bedrock"


def test_no_model_leaves_its_flag_out_and_no_system_prompt_replaces_claude_code_s_all_the_same(
        fake: FakeClaude) -> None:
    stream(changed(HELLO, model=""))
    assert fake.record["argv"] == [
        "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages", "--tools", "",
        "--system-prompt", "You are a helpful assistant.",
    ]


def test_a_prompt_that_looks_like_an_option_is_still_the_prompt(fake: FakeClaude) -> None:
    chunks = stream(changed(HELLO, messages=(Message("user", "--help me"),)))
    assert fake.record["stdin"] == "--help me"
    assert "".join(c.text for c in chunks) == fake_cli.DEFAULT_REPLY


def test_earlier_turns_are_rendered_into_the_prompt(fake: FakeClaude) -> None:
    history = (
        Message("user", "What is 2 + 2?"),
        Message("assistant", "4", tool_calls=(ToolCall("t1", "calc", '{"x": 2}'),)),
        Message("tool", "4", tool_call_id="t1"),
        Message("assistant", "It is 4."),
        Message("user", "And doubled?"),
    )
    stream(changed(HELLO, messages=history))
    assert fake.record["stdin"] == (
        "Earlier turns of this conversation, oldest first:\n\n"
        "<user>\nWhat is 2 + 2?\n</user>\n"
        '<assistant>\n4\n[called tool calc with {"x": 2}]\n</assistant>\n'
        "<tool_result>\n4\n</tool_result>\n"
        "<assistant>\nIt is 4.\n</assistant>\n\n"
        "Reply to the user's latest message, which follows.\n\nAnd doubled?"
    )


def test_complete_collects_the_stream(fake: FakeClaude) -> None:
    fake.env(reply="All of it.", usage=json.dumps({"input_tokens": 5, "output_tokens": 3}))
    result = asyncio.run(claude_cli.complete(CONN, HELLO))
    assert result.text == "All of it."
    assert result.usage == Usage(input_tokens=5, output_tokens=3, reported_cost=Decimal("0.0123"))
    assert result.finish_reason == "stop"


def test_the_cli_reported_cost_keeps_its_printed_digits(fake: FakeClaude) -> None:
    fake.env(cost="0.1", usage="null")
    assert stream()[-1].usage.reported_cost == Decimal("0.1")


def test_usage_is_estimated_and_flagged_when_the_result_has_none(fake: FakeClaude) -> None:
    fake.env(reply="Some words here.", usage="null")
    assert stream()[-1].usage == Usage(input_tokens=estimate_tokens("Say hi."),
                                       output_tokens=estimate_tokens("Some words here."), estimated=True,
                                       reported_cost=Decimal("0.0123"))


def test_thinking_deltas_are_reasoning(fake: FakeClaude) -> None:
    fake.env(thinking="Let me think.", reply="Done.")
    chunks = stream()
    assert "".join(c.reasoning for c in chunks) == "Let me think."
    assert "".join(c.text for c in chunks) == "Done."


def test_the_cli_is_found_on_path(fake: FakeClaude, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.CLAUDE_CLI_PATH = "claude"
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert "".join(c.text for c in stream()) == fake_cli.DEFAULT_REPLY


def test_a_missing_binary_is_a_clear_error(settings: Any, tmp_path: Path) -> None:
    settings.CLAUDE_CLI_PATH = str(tmp_path / "no-claude-here")
    chunks, error = failure()
    assert chunks == []
    assert (error.kind, error.retryable) == ("network", False)
    assert "is not installed on this server, or not on its PATH" in error.message


def test_not_logged_in_is_auth_with_what_to_do(fake: FakeClaude) -> None:
    fake.env(mode="not_logged_in")
    chunks, error = failure()
    assert chunks == []  # the CLI's synthetic error message is not passed off as the answer
    assert (error.kind, error.retryable) == ("auth", False)
    assert "is not signed in" in error.message and "Invalid API key · Please run /login" in error.message


def test_an_error_result_is_a_provider_error_with_the_cli_message(fake: FakeClaude) -> None:
    fake.env(mode="error")
    chunks, error = failure()
    assert chunks == []
    assert (error.kind, error.retryable) == ("server", True)
    assert error.message.startswith("Claude CLI had a server error")
    assert "API Error: 500" in error.message


def test_a_crash_is_a_provider_error_with_its_stderr(fake: FakeClaude) -> None:
    fake.env(mode="crash", reply="one two three four")
    chunks, error = failure()
    assert "".join(c.text for c in chunks) == "one two three "  # what came before the crash was passed on
    assert error.kind == "server"
    assert "the fake CLI crashed: ECONNRESET" in error.message


def test_a_cli_refusing_a_flag_is_invalid_request(fake: FakeClaude) -> None:
    # As an older CLI would refuse a flag it does not know yet.
    wrapper = Path(claude_cli.executable())
    wrapper.write_text(wrapper.read_text().replace('"$@"', '--no-such-flag "$@"'))
    _, error = failure()
    assert (error.kind, error.retryable) == ("invalid_request", False)
    assert "unknown option '--no-such-flag'" in error.message


def test_keys_in_the_cli_output_are_redacted(fake: FakeClaude) -> None:
    secret = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"
    fake.env(mode="error", error=f'API Error: 401 {{"type":"authentication_error","message":"bad key {secret}"}}')
    _, error = failure()
    assert error.kind == "auth"
    assert secret not in error.message and "[redacted]" in error.message


def test_a_timeout_kills_the_cli(fake: FakeClaude) -> None:
    fake.env(mode="slow")
    started = time.monotonic()
    chunks, error = failure(conn=changed(CONN, timeout=1.0))
    assert time.monotonic() - started < 5
    assert chunks and chunks[0].text  # the first word came, then silence
    assert (error.kind, error.retryable) == ("timeout", True)
    assert not alive(fake.record["pid"])


def test_a_cli_that_never_reads_its_prompt_times_out_and_is_killed(fake: FakeClaude, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    Path(claude_cli.executable()).write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nexec sleep 30\n')
    long_prompt = changed(HELLO, messages=(Message("user", "x" * 1_000_000),))  # more than a pipe holds
    started = time.monotonic()
    _, error = failure(long_prompt, changed(CONN, timeout=0.5))
    assert time.monotonic() - started < 5
    assert error.kind == "timeout"
    assert not alive(int(pid_file.read_text()))


def test_cancelling_the_caller_kills_the_cli_and_reraises(fake: FakeClaude) -> None:
    fake.env(mode="slow")

    async def scenario() -> None:
        received: list[Chunk] = []

        async def consume() -> None:
            async for chunk in claude_cli.stream(CONN, HELLO):
                received.append(chunk)

        task = asyncio.create_task(consume())
        await wait_for(lambda: bool(received))
        pid = fake.record["pid"]
        assert alive(pid)
        cancelled = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - cancelled < 3  # killed, not waited for
        assert not alive(pid)  # gone before asyncio.run's own clean-up could reap it

    asyncio.run(scenario())


def test_a_caller_that_stops_reading_kills_the_cli(fake: FakeClaude) -> None:
    fake.env(mode="slow")

    async def scenario() -> None:
        chunks = claude_cli.stream(CONN, HELLO)
        assert (await anext(chunks)).text
        pid = fake.record["pid"]
        assert alive(pid)
        closed = time.monotonic()
        await chunks.aclose()
        assert time.monotonic() - closed < 3
        assert not alive(pid)

    asyncio.run(scenario())


@pytest.mark.parametrize("message", [
    Message("user", (TextPart("What is this?"), ImagePart("https://example.com/cat.png"))),
    Message("assistant", "A last message that is not the user's."),
])
def test_requests_the_cli_cannot_carry_are_refused_before_it_starts(fake: FakeClaude, message: Message) -> None:
    _, error = failure(changed(HELLO, messages=(message,)))
    assert (error.kind, error.retryable) == ("invalid_request", False)
    assert not fake.record_file.exists()


def test_tools_are_refused_before_the_cli_starts(fake: FakeClaude) -> None:
    tool = {"type": "function", "function": {"name": "now", "description": "The time", "parameters": {}}}
    _, error = failure(changed(HELLO, tools=(tool,)))
    assert error.kind == "invalid_request" and "tool definitions" in error.message
    assert not fake.record_file.exists()
