"""The `claude` command-line client as a subprocess; it signs in with its own login."""

import asyncio
import shutil
import time

from django.conf import settings

from ..kinds import get_kind
from .base import Connection, Health, ModelInfo, ProviderError


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


async def list_models(conn: Connection) -> list[ModelInfo]:
    # The CLI has no model listing: it accepts the model names of the preset.
    executable()
    return [ModelInfo(name) for name in get_kind("claude_cli").models]


async def health_check(conn: Connection) -> Health:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        executable(), "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=conn.timeout)
    except TimeoutError:
        process.kill()
        raise ProviderError("timeout", "The Claude CLI did not answer `--version` in time.") from None
    latency_ms = round((time.perf_counter() - started) * 1000)
    if process.returncode != 0:
        raise ProviderError("server", f"The Claude CLI failed: {stderr.decode(errors='replace')[:300]}",
                            retryable=False)
    return Health(True, latency_ms, f"Claude CLI {stdout.decode(errors='replace').strip()} is installed.")
