"""Settings from the environment, checked in fresh processes as production would start them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x" * 20 + "-a-long-random-production-secret-key-0123456789",
    "ASPWEB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "aspweb.example.com",
    "ASPWEB_HTTPS": "true",
}


def _run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if k not in ("DEBUG", "SECRET_KEY", "ASPWEB_ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**base, "ASPWEB_DATA_DIR": str(tmp_path / "data"), **env},
    )


def _setting(name: str, env: dict[str, str], tmp_path: Path) -> str:
    code = f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='aspweb.settings'; django.setup(); " \
           f"from django.conf import settings; print(repr({name}))"
    result = _run(["-c", code], env, tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_check_deploy_is_clean_under_the_production_profile(tmp_path: Path) -> None:
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ASPWEB_ENCRYPTION_KEYS"])
def test_missing_secret_with_debug_off_stops_start_up_clearly(missing: str, tmp_path: Path) -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = _run(["manage.py", "check"], env, tmp_path)
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr
    assert not (tmp_path / "data" / "secret_key").exists()


def test_bad_boolean_is_refused_by_name(tmp_path: Path) -> None:
    result = _run(["manage.py", "check"], {"DEBUG": "maybe"}, tmp_path)
    assert result.returncode != 0
    assert "DEBUG must be true or false" in result.stderr


def test_embedded_default_generates_secrets_once(tmp_path: Path) -> None:
    first = _setting("settings.SECRET_KEY", {}, tmp_path)
    keys = _setting("settings.ENCRYPTION_KEYS", {}, tmp_path)
    assert first == _setting("settings.SECRET_KEY", {}, tmp_path)
    assert keys == _setting("settings.ENCRYPTION_KEYS", {}, tmp_path)
    key_file = tmp_path / "data" / "encryption_keys"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    Fernet(key_file.read_text().strip().encode())  # a valid key
    assert "sqlite3" in _setting("settings.DATABASES['default']['ENGINE']", {}, tmp_path)
    assert "locmem" in _setting("settings.CACHES['default']['BACKEND']", {}, tmp_path)
    assert _setting("settings.CELERY_TASK_ALWAYS_EAGER", {}, tmp_path) == "True"


# As `make run` serves: requests to 127.0.0.1 through the app and its middleware, static files included.
_SERVE = """
import django, os
os.environ['DJANGO_SETTINGS_MODULE'] = 'aspweb.settings'
django.setup()
from django.test import Client
client = Client(HTTP_HOST='127.0.0.1', raise_request_exception=False)
page = client.get('/nope/')
css = client.get('/static/css/app.css')
print(page.status_code, css.status_code, 'URLconf' in page.content.decode())
print(page.content.decode())
"""


def test_the_embedded_default_serves_no_debug_pages(tmp_path: Path) -> None:
    result = _run(["-c", _SERVE], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    status, page = result.stdout.split("\n", 1)
    assert status == "404 200 False"  # no URL patterns listed; the CSS still served
    assert "There is nothing at this address" in page
    assert _setting("settings.DEBUG", {}, tmp_path) == "False"


def test_debug_true_is_a_developers_switch_for_debug_pages(tmp_path: Path) -> None:
    result = _run(["-c", _SERVE], {"DEBUG": "true"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("404 200 True")
    assert (tmp_path / "data" / "secret_key").exists()  # and its secrets are generated, as before


def test_database_and_redis_urls_switch_backends(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/aspweb", "REDIS_URL": "redis://127.0.0.1:6379/3"}
    assert "postgresql" in _setting("settings.DATABASES['default']['ENGINE']", env, tmp_path)
    assert _setting("settings.CACHES['default']['BACKEND']", env, tmp_path) == "'aspweb.sharedcache.SharedRedisCache'"
    # One session engine in both profiles: the database, in a row cache of each worker.
    assert _setting("settings.SESSION_ENGINE", env, tmp_path) == _setting("settings.SESSION_ENGINE", {}, tmp_path) \
        == "'accounts.sessions'"
    assert _setting("settings.CELERY_BROKER_URL", env, tmp_path) == "'redis://127.0.0.1:6379/3'"
    assert _setting("settings.CELERY_TASK_ALWAYS_EAGER", env, tmp_path) == "False"


@pytest.mark.django_db
def test_sqlite_runs_in_write_ahead_log_mode() -> None:
    import sqlite3

    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: the embedded default")
    connection.ensure_connection()
    # Another connection, not Django's: the mode is the file's, set once, not each connection's.
    other = sqlite3.connect(connection.settings_dict["NAME"])
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()
