"""A fake Google Cloud for Vertex AI over real loopback HTTP: an OAuth token endpoint and Vertex's endpoints.

- ``POST /token``: the JWT-bearer grant a service account's key makes (RFC 7523), form fields ``grant_type``
  (``urn:ietf:params:oauth:grant-type:jwt-bearer``) and ``assertion``. The assertion's RS256 signature is
  checked with the public half of the test key, and its claims as Google checks them: ``iss`` the account's
  e-mail, ``aud`` Google's token endpoint, a ``scope``, ``iat`` and ``exp``. The answer is
  ``{"access_token", "expires_in", "token_type": "Bearer"}``; a refusal is an OAuth error,
  ``{"error": "invalid_grant", "error_description": ...}`` with status 400.
- ``POST /v1/projects/{project}/locations/{region}/endpoints/openapi/chat/completions``: OpenAI's format.
- ``POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`` and
  ``:streamRawPredict``: Anthropic's Messages API, the body carrying ``anthropic_version``
  ``"vertex-2023-10-16"`` and no ``model`` (the URL names it), as Anthropic's Vertex docs say.
- ``GET /v1/projects/{project}/locations/{region}``: the location, as a health check reads it.

Vertex's endpoints take only a bearer token that ``/token`` issued and that was not revoked; errors come in
Google's shape, ``{"error": {"code", "message", "status"}}``. Answers, usage, tool calls and faults are
``FakeUpstream``'s (``reply``, ``usage``, ``raw_usage``, ``usage_style``, ``tool_call``, ``fail_next``, ...).
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .upstream import FakeUpstream, RecordedRequest, _Handler

PROJECT = "aspweb-test"
REGION = "us-central1"
CLIENT_EMAIL = f"aspweb-caller@{PROJECT}.iam.gserviceaccount.com"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ANTHROPIC_VERSION = "vertex-2023-10-16"
GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 529: "UNAVAILABLE"}
GOOGLE_MESSAGES = {
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
         "valid authentication credential.",
    403: "Permission 'aiplatform.endpoints.predict' denied on resource (or it may not exist).",
    404: "Publisher Model was not found or your project does not have access to it.",
    429: "Quota exceeded for aiplatform.googleapis.com/"
         "generate_content_requests_per_minute_per_project_per_base_model.",
}

_OPENAPI = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/endpoints/openapi/"
                      r"chat/completions$")
_CLAUDE = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/publishers/anthropic/models/"
                     r"(?P<model>[^/:]+):(?P<method>rawPredict|streamRawPredict)$")
_LOCATION = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)$")


@functools.cache
def test_key() -> rsa.RSAPrivateKey:
    """One RSA key for the test run, made when first asked for: no key is kept in the repository."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_key(token_uri: str, *, project: str = PROJECT, key: rsa.RSAPrivateKey | None = None) -> dict:
    """A service account's JSON key, as Google Cloud's console downloads it, whose token_uri is the fake's."""
    pem = (key or test_key()).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode()
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "109876543210987654321",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{CLIENT_EMAIL}",
        "universe_domain": "googleapis.com",
    }


def _unbase64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verified_claims(assertion: str, public_key: rsa.RSAPublicKey) -> dict[str, Any] | None:
    """The claims of a JWT signed RS256 by the key's private half, or None where the signature is not its."""
    try:
        header, payload, signature = assertion.split(".")
        public_key.verify(_unbase64(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        if json.loads(_unbase64(header)).get("alg") != "RS256":
            return None
        claims = json.loads(_unbase64(payload))
    except (ValueError, InvalidSignature):
        return None
    return claims if isinstance(claims, dict) else None


class FakeVertex(FakeUpstream):
    """Fake Google token endpoint and Vertex AI on 127.0.0.1; ``token_uri`` for the key, ``base_url + "/v1"``
    as the provider's base URL.

    ``expires_in``: the lifetime of the tokens issued; ``refuse``: an OAuth error code the token endpoint
    answers instead (e.g. "invalid_grant"); ``malformed_token``: it answers 200 with something not JSON;
    ``mints``: the tokens issued so far; ``revoke()`` makes every issued token one Vertex refuses."""

    thread_name = "fake-vertex"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _VertexHandler

    def __init__(self, *, project: str = PROJECT, region: str = REGION) -> None:
        super().__init__()
        self.project = project
        self.region = region
        self.expires_in = 3599
        self.refuse: str | None = None
        self.malformed_token = False
        self.public_key = test_key().public_key()
        self._tokens: dict[str, float] = {}
        self._token_ids = itertools.count(1)
        self._token_lock = threading.Lock()

    @property
    def token_uri(self) -> str:
        return self.base_url + "/token"

    @property
    def vertex_base_url(self) -> str:
        return self.base_url + "/v1"

    def key(self, **options: Any) -> dict:
        return service_account_key(self.token_uri, **options)

    @property
    def mints(self) -> int:
        with self._token_lock:
            return len(self._tokens)

    def revoke(self) -> None:
        with self._token_lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def _issue(self) -> str:
        token = f"ya29.fake-{next(self._token_ids):04d}"
        with self._token_lock:
            self._tokens[token] = time.time() + self.expires_in
        return token

    def _token_valid(self, token: str | None) -> bool:
        with self._token_lock:
            return token is not None and self._tokens.get(token, 0.0) > time.time()

    def reset(self) -> None:
        super().reset()
        self.expires_in = 3599
        self.refuse = None
        self.malformed_token = False
        with self._token_lock:
            self._tokens.clear()
            self._token_ids = itertools.count(1)


class _VertexHandler(_Handler):
    server: Any

    @staticmethod
    def _route(method: str, path: str, headers: dict[str, str]) -> tuple[Any, str] | None:
        if method == "POST" and path == "/token":
            return ("token", "token")
        if method == "POST" and _OPENAPI.match(path):
            return ("openai", "chat")
        if method == "POST" and _CLAUDE.match(path):
            return ("anthropic", "messages")
        if method == "GET" and _LOCATION.match(path):
            return ("location", "location")
        return None

    def _respond(self, record: RecordedRequest, route: tuple[Any, str] | None) -> None:
        fake: FakeVertex = self.server.fake
        if route is not None and route[0] == "token":
            self._token(record)
            return
        if route is None:
            self._google_error(404, f"The requested URL {record.path} was not found on this server.")
            return
        if not self._token_valid(record):
            return
        match = _OPENAPI.match(record.path) or _CLAUDE.match(record.path) or _LOCATION.match(record.path)
        assert match is not None
        if match["project"] != fake.project:
            self._google_error(403, f"Permission denied on resource project {match['project']}.")
            return
        if match["region"] != fake.region:
            self._google_error(404, f"Location {match['region']} is not found or access is unallowed.")
            return
        if route[0] == "location":
            self._send_json(200, {"name": f"projects/{fake.project}/locations/{fake.region}",
                                  "locationId": fake.region})
            return
        if route[0] == "anthropic" and not self._claude_body(record, match):
            return
        super()._respond(record, route)

    def _token_valid(self, record: RecordedRequest) -> bool:
        if self.server.fake._token_valid(record.api_key):
            return True
        self._google_error(401, GOOGLE_MESSAGES[401])
        return False

    def _claude_body(self, record: RecordedRequest, match: re.Match[str]) -> bool:
        body = record.body if isinstance(record.body, dict) else {}
        if body.get("anthropic_version") != ANTHROPIC_VERSION:
            self._error("anthropic", 400, f"anthropic_version: expected {ANTHROPIC_VERSION!r}")
            return False
        if "model" in body:
            self._error("anthropic", 400, "model: Extra inputs are not permitted")
            return False
        if (match["method"] == "streamRawPredict") != bool(body.get("stream")):
            self._error("anthropic", 400, "stream: rawPredict answers whole, streamRawPredict streams")
            return False
        body["model"] = match["model"]  # what the answer names
        return True

    def _token(self, record: RecordedRequest) -> None:
        fake: FakeVertex = self.server.fake
        form = dict(parse_qsl(record.body if isinstance(record.body, str) else ""))
        if form.get("grant_type") != JWT_BEARER:
            self._oauth_error("unsupported_grant_type", "Invalid grant_type: ")
            return
        claims = verified_claims(form.get("assertion", ""), fake.public_key)
        if claims is None:
            self._oauth_error("invalid_grant", "Invalid JWT Signature.")
            return
        now = time.time()
        if (claims.get("iss") != CLIENT_EMAIL or claims.get("aud") != GOOGLE_TOKEN_AUDIENCE
                or "cloud-platform" not in str(claims.get("scope", ""))):
            self._oauth_error("invalid_grant", "Invalid JWT: claims do not match the service account.")
            return
        if not (claims.get("iat", 0) - 60 <= now < claims.get("exp", 0)):
            self._oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and "
                                               "in a reasonable timeframe.")
            return
        if fake.refuse:
            self._oauth_error(fake.refuse, "Invalid grant: account not found")
            return
        if fake.malformed_token:
            self._send_json(200, "<html>not a token</html>")
            return
        self._send_json(200, {"access_token": fake._issue(), "expires_in": fake.expires_in, "token_type": "Bearer"})

    def _oauth_error(self, error: str, description: str) -> None:
        self._send_json(400, {"error": error, "error_description": description})

    def _google_error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": {"code": status, "message": message, "status": GOOGLE_STATUS[status]}})

    def _error(self, provider: Any, status: int, message: str | None = None, *, retry_after: int = 0) -> None:
        """Google's front end answers for auth, quotas and unknown models; the model's own refusals and
        failures of Claude come in Anthropic's shape."""
        if provider == "anthropic" and status not in GOOGLE_MESSAGES:
            super()._error(provider, status, message, retry_after=retry_after)
            return
        self._google_error(status, message or GOOGLE_MESSAGES.get(status, "Internal error encountered."))
