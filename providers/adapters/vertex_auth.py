"""OAuth access tokens for Google Cloud, minted from a service account's JSON key with google-auth.

A token lasts an hour. It is kept per key until shortly before it expires, so a call with a fresh token
makes no request for one and takes no lock: a dictionary lookup and a comparison. Minting (signing a JWT
and posting it to the key's `token_uri`) is blocking I/O, so it runs in a worker thread, under a lock of
the key's own: calls that find the token stale at once wait for one mint, and take its token.
"""

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from google.auth import exceptions as google_exceptions
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from aspweb import outbound

from .base import Connection, ProviderError, redact

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# A token is minted again when it has less than this left: a call that starts with it may take minutes.
REFRESH_MARGIN_SECONDS = 600.0
FIELDS = ("type", "project_id", "private_key_id", "private_key", "client_email", "token_uri")
PROJECT_ID = re.compile(r"\A[a-z][a-z0-9-]{4,28}[a-z0-9]\Z")
# Keys kept at once in a worker; past it the oldest is dropped (its next call mints again).
_ACCOUNTS_KEPT = 256


class KeyProblem(ValueError):
    """What is wrong with a pasted service-account key, in words for the form; never any of the key."""


def parse_key(text: str) -> dict[str, Any]:
    """The key's fields, checked: a JSON object with every field a service account's key has, a private key
    google-auth can sign with, and a token endpoint that is not a cloud metadata service."""
    try:
        info = json.loads(text)
    except ValueError:
        raise KeyProblem("Paste the service account's key file whole, as Google Cloud downloaded it: it is "
                         "JSON, starting with { and ending with }.") from None
    if not isinstance(info, dict):
        raise KeyProblem("Paste the service account's key file whole: a JSON object, starting with {.")
    if info.get("type") != "service_account":
        raise KeyProblem('This is not a service account key: its "type" is not "service_account". Create a '
                         "key under IAM & Admin → Service accounts → Keys, and paste the JSON file.")
    missing = [name for name in FIELDS if not isinstance(info.get(name), str) or not info[name].strip()]
    if missing:
        raise KeyProblem(f"The key lacks {', '.join(missing)}: paste the whole JSON file Google Cloud downloaded.")
    if not PROJECT_ID.match(info["project_id"]):
        raise KeyProblem("The key's project_id is not a Google Cloud project ID.")
    try:
        outbound.check_not_metadata(info["token_uri"])
    except outbound.Refused as exc:
        raise KeyProblem(f"The key's token_uri is refused: {exc}") from None
    try:
        service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    except (ValueError, TypeError, google_exceptions.GoogleAuthError):
        # The library's words may quote the key: none of them are shown.
        raise KeyProblem("The key's private_key cannot be read as a private key: paste the JSON file as it "
                         "was downloaded, without editing it.") from None
    return info


@dataclass
class Account:
    """One key's credentials and its current token, as (token, expiry as a POSIX time), set in one
    assignment so that a reader never pairs one token with another's expiry."""

    credentials: service_account.Credentials
    project_id: str
    private_key: str = field(repr=False)
    current: tuple[str, float] = field(default=("", 0.0), repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    mints: int = 0

    def fresh_token(self) -> str:
        token, expires_at = self.current
        return token if token and expires_at - REFRESH_MARGIN_SECONDS > now() else ""

    def forget(self, token: str) -> None:
        """Drop a token the API refused (revoked, or the key was disabled): the next call mints anew."""
        if self.current[0] == token:
            self.current = ("", 0.0)


_accounts: dict[str, Account] = {}
_accounts_lock = threading.Lock()


def now() -> float:
    return time.time()


def account(conn: Connection) -> Account:
    """The key's account, parsed once per worker. A stored key that is not a service account's (a row written
    past the form) is the admin's to fix: an auth error that says so."""
    found = _accounts.get(conn.api_key)
    if found is not None:
        return found
    try:
        info = parse_key(conn.api_key)
    except KeyProblem as exc:
        raise ProviderError("auth", f"{conn.label}'s service account key cannot be used: {exc} An admin needs "
                                    "to paste the key again.", retryable=False) from None
    credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    with _accounts_lock:
        found = _accounts.get(conn.api_key)
        if found is None:
            if len(_accounts) >= _ACCOUNTS_KEPT:
                _accounts.pop(next(iter(_accounts)))
            found = _accounts[conn.api_key] = Account(credentials, info["project_id"], info["private_key"])
    return found


async def access_token(conn: Connection) -> tuple[Account, str]:
    """The account and a token good for a while yet: the kept one, or one minted off the event loop."""
    acct = account(conn)
    token = acct.fresh_token()
    if token:
        return acct, token
    return acct, await asyncio.to_thread(_mint, acct, conn)


def _mint(acct: Account, conn: Connection) -> str:
    with acct.lock:
        token = acct.fresh_token()  # minted by another call while this one waited for the lock
        if token:
            return token
        try:
            acct.credentials.refresh(_TimedRequest(conn.connect_timeout, conn.timeout))
        except google_exceptions.RefreshError as exc:
            raise _refused(exc, acct, conn) from None
        except google_exceptions.TransportError:
            raise ProviderError("network", f"Could not reach Google's token endpoint for {conn.label}: check "
                                           "the server's connection to Google (or the key's token_uri).") from None
        except (google_exceptions.GoogleAuthError, ValueError, TypeError, KeyError):  # an answer it could not read
            raise ProviderError("server", f"Google's token endpoint sent {conn.label} an answer that aspweb "
                                          "could not read; it is usually temporary.") from None
        expiry = acct.credentials.expiry
        expires_at = expiry.replace(tzinfo=UTC).timestamp() if expiry is not None else now() + 3600
        acct.current = (acct.credentials.token, expires_at)
        acct.mints += 1
        return acct.credentials.token


def _refused(exc: google_exceptions.RefreshError, acct: Account, conn: Connection) -> ProviderError:
    """The token endpoint's refusal: an OAuth error (`invalid_grant` for a deleted or disabled key, a key
    whose signature does not verify, a clock far off) is the key's fault; an answer worth retrying (a 5xx,
    `temporarily_unavailable`) is Google's."""
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    said = " ".join(str(data.get(name) or "") for name in ("error", "error_description")).strip()
    detail = redact(said or str(exc.args[0] if exc.args else ""), acct.private_key)[:200]
    if getattr(exc, "retryable", False):
        return ProviderError("server", f"Google's token endpoint failed for {conn.label}; it is usually "
                                       f"temporary. Google said: {detail}")
    return ProviderError("auth", f"Google refused {conn.label}'s service account key ({detail}). An admin "
                                 "needs to check that the key and its service account are enabled, or paste a "
                                 "new key.", retryable=False)


class _TimedRequest(Request):
    """google-auth's requests transport with aspweb's time limits (its own default waits 120 seconds)."""

    def __init__(self, connect_timeout: float, read_timeout: float) -> None:
        super().__init__()
        self._timeout = (connect_timeout, read_timeout)

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: Any = None, **kwargs: Any) -> Any:
        return super().__call__(url, method=method, body=body, headers=headers, timeout=self._timeout, **kwargs)
