"""Browser tests: headless Chromium against the real ASGI handler served by uvicorn in this process.

The server here is a test harness, not a serving process: it builds aspweb's handler itself instead of
importing aspweb.asgi, which refuses DJANGO_ALLOW_ASYNC_UNSAFE (set below for Playwright's sync API). Work
run inline by the server still goes to a thread when it needs the database: aspweb.inline refuses queries
inline whatever that variable says.

Fixtures:
- ``live_server_url``: "http://127.0.0.1:PORT", a fresh uvicorn server for the test. It brings a
  transactional database (committed data, visible to the server's threads) restored to its migrated
  state (the role groups) before each test.
- ``page``: a Playwright page in a new browser context whose base URL is the live server, so
  ``page.goto("/providers/")`` works; uncaught JavaScript errors and every error on the console (htmx's
  among them, and anything the Content-Security-Policy refused) fail the test. A test that provokes
  one on purpose names it: ``@pytest.mark.console_errors(r"regex", ...)``.
- ``sign_in(user)``: signs in through the real login page and returns the page.
- ``browser``: the shared Chromium, for tests that need several contexts (two users at once).

Every test in this folder gets the ``e2e`` marker (``make test-fast`` leaves them out).
"""

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import uvicorn
from django.db import connections
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from accounts.models import User
from aspweb.handler import ASGIHandler
from tests.conftest import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HERE = Path(__file__).parent
SCREENSHOTS = HERE.parents[1] / "docs" / "screenshots"
SERVER_START_TIMEOUT = 10.0
# Long enough for a request in flight to finish; a stream still open after it is cancelled, as when
# a browser goes away.
SERVER_STOP_TIMEOUT = 5


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "console_errors(*patterns): console errors the test provokes on purpose (regexes)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


_handlers: list[ASGIHandler] = []


def _application() -> ASGIHandler:
    """One handler for every live server of the session, as a serving process has one."""
    if not _handlers:
        _handlers.append(ASGIHandler())
    return _handlers[0]


@pytest.fixture
def live_server_url(transactional_db: None, django_db_serialized_rollback: None) -> Iterator[str]:
    # Transactional: the server answers from its own threads and connections, so it only sees committed
    # data. Serialized rollback: the flush after each transactional test also empties what migrations
    # created (the role groups); this puts it back before the next test.
    # log_config=None: uvicorn's own dictConfig would reset the process's logging (Django's, pytest's).
    config = uvicorn.Config(
        _application(),
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=SERVER_STOP_TIMEOUT,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not server.started:
        if not thread.is_alive():
            pytest.fail("uvicorn stopped before it started serving; its log is in the captured output")
        if time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail(f"uvicorn did not start within {SERVER_START_TIMEOUT} s")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(SERVER_STOP_TIMEOUT + 5)
        # The database is flushed right after this; a server still answering would race with it.
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="package")
def browser(django_db_setup: None) -> Iterator[Browser]:
    """One Chromium for the e2e tests, closed when the last of them has run.

    Package scope, not session: while Playwright's sync API is started, its event loop counts as
    running in the main thread, which changes three things there until it stops:
    - Django refuses ORM calls (SynchronousOnlyOperation): DJANGO_ALLOW_ASYNC_UNSAFE lifts that;
    - async_to_sync refuses to run: reach services that use it through the browser, not the test;
    - Django's connections live in asgiref's async-context storage, not the thread's, so they are
      other connection objects than the ones the test databases were created with.
    """
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("ASPWEB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ASPWEB_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(f"browser tests need Chromium: {reason}")
    # The migrated state that serialized rollback restores hangs on the creating connection objects;
    # hand it to the ones the tests will use once the loop runs.
    serialized = {alias: getattr(connections[alias], "_test_serialized_contents", None) for alias in connections}
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            for alias, contents in serialized.items():
                if contents is not None:
                    connections[alias]._test_serialized_contents = contents
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def is_csp_violation(message: ConsoleMessage) -> bool:
    """Chromium reports what the policy refused only on the console, worded by version ("Refused to ...",
    "Applying inline style violates the following Content Security Policy directive ...")."""
    return message.type == "error" and "Content Security Policy" in message.text


def collect_csp_violations(page: Page) -> list[str]:
    """The page's CSP violations from now on, as Chromium words them."""
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if is_csp_violation(message) else None)
    return violations


def watch_console(page: Page, allowed: tuple[str, ...] = ()) -> Callable[[], None]:
    """Watch `page` for uncaught JavaScript errors and console errors; the returned check fails on any,
    except console errors matching one of the `allowed` regexes."""
    js_errors: list[str] = []
    console_errors: list[str] = []
    page.on("pageerror", lambda error: js_errors.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not any(re.search(pattern, message.text) for pattern in allowed):
            console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    page.on("console", on_console)

    def check() -> None:
        assert not js_errors, f"uncaught JavaScript errors: {js_errors}"
        assert not console_errors, f"errors on the browser's console: {console_errors}"

    return check


@pytest.fixture
def page(browser: Browser, live_server_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    # Depending on live_server_url makes the context close before the server stops.
    context = browser.new_context(base_url=live_server_url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    allowed = tuple(p for marker in request.node.iter_markers("console_errors") for p in marker.args)
    check = watch_console(page, allowed)
    yield page
    context.close()
    check()


@pytest.fixture
def sign_in(page: Page) -> Callable[..., Page]:
    """sign_in(user, password=PASSWORD, next_path=None) -> the page, signed in, on the page it landed on."""

    def sign_in(user: User, password: str = PASSWORD, next_path: str | None = None) -> Page:
        page.goto("/login/" + (f"?{urlencode({'next': next_path})}" if next_path else ""))
        page.get_by_label("E-mail").fill(user.email)
        page.get_by_label("Password").fill(password)
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in").click()
        if urlsplit(page.url).path == "/login/":
            errors = page.locator(".errors, .error").all_inner_texts()
            raise AssertionError(f"signing in as {user.email} failed: {errors}")
        return page

    return sign_in


def readme_screenshot(page: Page, name: str) -> None:
    """Redraw one of the README's pictures under docs/screenshots/. They are tracked files, so they are
    redrawn only when asked (ASPWEB_SCREENSHOTS=1): a test run leaves the tree as it was."""
    if os.environ.get("ASPWEB_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / name, full_page=True, caret="initial")
