"""A small OpenID provider on loopback for the single sign-on tests, built on Authlib's authorization server:
discovery, a sign-in page, the authorization code grant with PKCE and client_secret_basic, ID tokens signed
RS256 with a key published at its JWKS URL, and a userinfo endpoint. aspweb's client meets it as it meets
Okta, Entra ID, Google or Keycloak: over HTTP, with real signed tokens.

Knobs for the failures the client must refuse, set between sign-ins:
- ``sign_with_rogue_key``: sign ID tokens with a key that is not published, under the published key's id;
- ``audience``: the ID token's ``aud`` (default: the client id);
- ``expired``: the ID token expired ten minutes ago.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet, RSAKey

from .loopback import LoopbackFake

CLIENT_ID = "aspweb-test"
CLIENT_SECRET = "test-client-secret-not-a-real-one"
KEY_ID = "test-key-1"


@dataclass
class Account:
    username: str
    password: str
    email: str
    name: str = ""
    groups: list[str] = field(default_factory=list)
    email_verified: bool = True
    # Further claims, as a provider's mappers add them (Keycloak's {"realm_access": {"roles": [...]}}).
    extra_claims: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0] if self.redirect_uris else ""

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in {"openid", "email", "profile", "groups"})

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # The test's server picks its port: any loopback callback of aspweb's is registered.
        return not self.redirect_uris or redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: Account
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _Payload(OAuth2Payload):
    def __init__(self, values: list[tuple[str, str]]) -> None:
        self._datalist: dict[str, list[str]] = {}
        for key, value in values:
            self._datalist.setdefault(key, []).append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):
    def __init__(self, method: str, uri: str, headers: dict[str, str], form: list[tuple[str, str]]) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._args = dict(parse_qsl(urlsplit(uri).query))
        self._form = dict(form)
        self.payload = _Payload(parse_qsl(urlsplit(uri).query) + form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class FakeOpenIDProvider(LoopbackFake):
    thread_name = "fake-openid-provider"

    def __init__(self) -> None:
        super().__init__()
        self.key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig", "alg": "RS256"})
        # Another key under the same id: tokens it signs must fail the signature check.
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig", "alg": "RS256"})
        self.accounts: dict[str, Account] = {}
        self.client = _Client(CLIENT_ID, CLIENT_SECRET, [])
        self.sign_with_rogue_key = False
        self.audience: str | None = None
        self.expired = False
        self.tokens_issued = 0
        self._codes: dict[str, _Code] = {}
        self._lock = threading.Lock()
        self.server = self._authorization_server()

    @property
    def issuer(self) -> str:
        return self.base_url

    def add_account(self, account: Account) -> Account:
        self.accounts[account.username] = account
        return account

    # -- Authlib's authorization server, with this fake's storage -------------------------------------------

    def _authorization_server(self) -> AuthorizationServer:
        fake = self

        class Server(AuthorizationServer):
            def query_client(self, client_id: str) -> _Client | None:
                return fake.client if client_id == fake.client.client_id else None

            def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
                fake.tokens_issued += 1

            def create_oauth2_request(self, request: _Request) -> _Request:
                return request

            def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> tuple:
                return status, body, headers

            def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
                pass

        class CodeGrant(AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

            def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
                payload = request.payload.data
                with fake._lock:
                    fake._codes[code] = _Code(
                        code=code, client_id=request.client.client_id, redirect_uri=payload.get("redirect_uri", ""),
                        scope=request.scope, user=request.user, nonce=payload.get("nonce"),
                        code_challenge=payload.get("code_challenge"),
                        code_challenge_method=payload.get("code_challenge_method"), auth_time=int(time.time()))

            def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
                with fake._lock:
                    found = fake._codes.get(code)
                return found if found is not None and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                with fake._lock:
                    fake._codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: _Code) -> Account:
                return authorization_code.user

        class IDToken(OpenIDCode):
            def resolve_client_private_key(self, client: _Client) -> RSAKey:
                return fake.rogue_key if fake.sign_with_rogue_key else fake.key

            def get_client_algorithm(self, client: _Client) -> str:
                return "RS256"

            def get_encode_header(self, client: _Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": KEY_ID}

            def get_client_claims(self, client: _Client) -> dict[str, Any]:
                # azp names the client that asked, as Google's tokens do, whatever the audience says.
                claims: dict[str, Any] = {"iss": fake.issuer, "aud": [fake.audience or client.client_id],
                                          "azp": client.client_id}
                if fake.expired:
                    now = int(time.time())
                    claims.update(iat=now - 1200, exp=now - 600)
                return claims

            def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
                return False

            def generate_user_info(self, user: Account, scope: str) -> UserInfo:
                info = UserInfo(sub=user.username, name=user.name, email=user.email,
                                email_verified=user.email_verified)
                info["groups"] = list(user.groups)
                info.update(user.extra_claims)
                return info

        def bearer_token(grant_type: str, client: _Client, user: Any = None, scope: str | None = None,
                         expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
            return {"token_type": "Bearer", "access_token": secrets.token_urlsafe(24), "expires_in": 3600,
                    "scope": scope or ""}

        server = Server(scopes_supported=["openid", "email", "profile", "groups"])
        server.register_token_generator("default", bearer_token)
        server.register_grant(CodeGrant, [IDToken(require_nonce=True), CodeChallenge(required=True)])
        return server

    def metadata(self) -> dict[str, Any]:
        base = self.base_url
        return {
            "issuer": base, "authorization_endpoint": f"{base}/authorize", "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/jwks", "userinfo_endpoint": f"{base}/userinfo",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile", "groups"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def jwks(self) -> dict[str, Any]:
        return KeySet([self.key]).as_dict(private=False)

    # -- HTTP -------------------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _request(self, form: list[tuple[str, str]]) -> _Request:
                return _Request(self.command, fake.base_url + self.path, dict(self.headers.items()), form)

            def _send(self, status: int, body: Any, headers: list[tuple[str, str]] | None = None,
                      content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else (
                    body.encode() if isinstance(body, str) else json.dumps(body).encode())
                self.send_response(status)
                names = {name.lower() for name, _ in headers or []}
                if "content-type" not in names:
                    self.send_header("Content-Type", content_type)
                for name, value in headers or []:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/.well-known/openid-configuration":
                    self._send(200, fake.metadata())
                elif path == "/jwks":
                    self._send(200, fake.jwks())
                elif path == "/authorize":
                    self._authorize(None)
                else:
                    self._send(404, {"error": "not_found"})

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qsl(self.rfile.read(length).decode())
                if path == "/token":
                    self._send(*fake.server.create_token_response(self._request(form)))
                elif path == "/authorize":
                    self._authorize(form)
                else:
                    self._send(404, {"error": "not_found"})

            def _authorize(self, form: list[tuple[str, str]] | None) -> None:
                request = self._request(form or [])
                try:
                    grant = fake.server.get_consent_grant(request)
                except OAuth2Error as error:
                    self._send(*fake.server.handle_error_response(request, error))
                    return
                if form is None:
                    self._send(200, _sign_in_page(self.path, ""), content_type="text/html; charset=utf-8")
                    return
                values = dict(form)
                account = fake.accounts.get(values.get("username", ""))
                if account is None or not secrets.compare_digest(account.password, values.get("password", "")):
                    self._send(200, _sign_in_page(self.path, "Wrong username or password."),
                               content_type="text/html; charset=utf-8")
                    return
                self._send(*fake.server.create_authorization_response(request, grant_user=account, grant=grant))

        return Handler


def _sign_in_page(action: str, error: str) -> str:
    message = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html><html><head><title>Test identity provider</title>
<link rel="icon" href="data:,"></head><body>
<h1>Test identity provider</h1>{message}
<form method="post" action="{html.escape(action)}">
<label>Username <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Continue</button>
</form></body></html>"""
