"""A serving process refuses DJANGO_ALLOW_ASYNC_UNSAFE (aspweb/checks.py): with it, Django would run queries
on the event loop instead of refusing them, and work run inline would block every request of the worker."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aspweb.checks import no_async_unsafe, shared_cache_refuses_inline

ROOT = Path(__file__).parents[1]


def _import_the_asgi_app(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return subprocess.run([sys.executable, "-c", "import aspweb.asgi"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**environment, "PYTHONPATH": str(ROOT), **env})


def test_the_asgi_app_refuses_to_start_with_async_unsafe_set() -> None:
    refused = _import_the_asgi_app(DJANGO_ALLOW_ASYNC_UNSAFE="true")
    assert refused.returncode != 0
    assert "ImproperlyConfigured: aspweb will not serve" in refused.stderr
    assert "aspweb.E001" in refused.stderr and "DJANGO_ALLOW_ASYNC_UNSAFE is set" in refused.stderr
    started = _import_the_asgi_app()
    assert started.returncode == 0, started.stderr


def test_the_check_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE", raising=False)
    assert no_async_unsafe() == []
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    assert [error.id for error in no_async_unsafe()] == ["aspweb.E001"]


def test_a_networked_cache_that_runs_inline_is_refused(settings: object) -> None:
    assert shared_cache_refuses_inline() == []
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    assert [error.id for error in shared_cache_refuses_inline()] == ["aspweb.E002"]
    settings.CACHES = {"default": {"BACKEND": "aspweb.sharedcache.SharedRedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    assert shared_cache_refuses_inline() == []
