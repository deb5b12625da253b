"""Django's middleware, run on the event loop under ASGI.

Django's own middleware is written for sync code: under ASGI, `MiddlewareMixin` runs every hook in
Django's sync thread (`sync_to_async`), two thread hops per middleware and request, and a sync-only
middleware (WhiteNoise) makes Django adapt the whole chain around it. For a streamed answer those hops
come before the first token; for a gateway call they were a third of its CPU.

The hooks of the middleware below do no I/O on their own: they read headers and cookies, set headers,
create lazy objects. So here they run inline on the event loop. The two that can do I/O hop only when
they must: the session saves when it changed, and messages store themselves (maybe into the session)
when a view added or read some. In WSGI and the sync test client every class behaves as Django's.

Hooks that would meet the database inline fail loudly (Django raises SynchronousOnlyOperation), so a
change that breaks these assumptions shows up in the tests rather than as a blocked event loop.
"""

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from csp import middleware as csp
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import get_messages
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security
from django.utils.deprecation import MiddlewareMixin
from whitenoise.middleware import WhiteNoiseMiddleware

from .text import request_text_problem


class InlineHooks:
    """For a `MiddlewareMixin` whose hooks never do I/O: under ASGI they run on the event loop."""

    async_mode: bool
    get_response: Any

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)  # type: ignore[call-arg]
        view_hook = getattr(self, "process_view", None)
        if self.async_mode and view_hook is not None:
            # The handler wraps a sync process_view in sync_to_async; an async one it awaits as it is.
            async def process_view(request: HttpRequest, view: Any, args: Any, kwargs: Any) -> Any:
                return view_hook(request, view, args, kwargs)

            self.process_view = process_view

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = await self.respond(request, response)
        return response

    async def respond(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return self.process_response(request, response)  # type: ignore[attr-defined]


class SecurityMiddleware(InlineHooks, security.SecurityMiddleware):
    pass


class CommonMiddleware(InlineHooks, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(InlineHooks, csrf.CsrfViewMiddleware):
    """The token is a cookie (CSRF_USE_SESSIONS is off), so checking and setting it is header work."""


class AuthenticationMiddleware(InlineHooks, auth.AuthenticationMiddleware):
    """Sets lazy `request.user` and `request.auser`; the session is read when a view asks for the user."""


class XFrameOptionsMiddleware(InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass


class CSPMiddleware(InlineHooks, csp.CSPMiddleware):
    """django-csp: a lazy nonce on the request, the policy header built from settings on the response.

    The gateway's /v1/ answers are JSON for programs, not documents a browser renders: they go without it.
    django-csp builds the header anew for every response, about 38 µs, 5% of the gateway's own time."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if request.path_info.startswith("/v1/"):
            return response
        return super().process_response(request, response)


class SessionMiddleware(InlineHooks, sessions.SessionMiddleware):
    """The session store is lazy; the response hop is taken only when the session must be saved."""

    async def respond(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        session = getattr(request, "session", None)
        if session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST):
            return await sync_to_async(self.process_response)(request, response)
        return self.process_response(request, response)


class MessageMiddleware(InlineHooks, messages.MessageMiddleware):
    """Messages store themselves only when a view added or read some; only then the response hops."""

    async def respond(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        storage = get_messages(request)  # the request's storage; [] when the request has none
        if getattr(storage, "used", False) or getattr(storage, "added_new", False):
            return await sync_to_async(self.process_response)(request, response)
        return self.process_response(request, response)


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, async-capable: a static file is served from its in-memory index (headers from memory,
    the body streamed by Django); every other request goes on without leaving the event loop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any = None, settings: Any = settings) -> None:
        super().__init__(get_response, settings)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        static_file = (self.find_file(request.path_info) if self.autorefresh
                       else self.files.get(request.path_info))
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)


class StorableTextMiddleware(InlineHooks, MiddlewareMixin):
    """Refuse, with a 400 naming the field, a page request whose address, query or form fields hold text
    the database cannot store (aspweb/text.py): one check for every form, filter and inline edit (a
    conversation's title), before any of them looks the text up or writes it. Django's forms stop NUL on
    their own, not lone surrogates, and views that read a field themselves stop neither. The gateway (/v1/)
    reads JSON, checks it itself and answers in its own error shape."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        if request.path_info.startswith("/v1/") or not (found := request_text_problem(request)):
            return None
        where, problem = found
        return HttpResponseBadRequest(f"{where} contains {problem}, which cannot be stored.",
                                      content_type="text/plain; charset=utf-8")
