"""System checks of aspweb's own settings and invariants.

Django's deployment checks look for its security, CSRF and clickjacking middleware by their dotted
paths; aspweb runs subclasses of them (aspweb/middleware.py), so those three checks are silenced in
settings and made here instead, by class: `manage.py check --deploy` still fails without them.

The others hold what running work inline on the event loop (aspweb/inline.py) relies on:
- a serving process (the ASGI app) refuses DJANGO_ALLOW_ASYNC_UNSAFE, which would let the ORM block the
  event loop instead of sending inline work to a thread (`serving` tag; asgi.py runs them and stops);
- a shared cache that is not this process's memory must refuse to run inline (aspweb/sharedcache.py);
- queryset writes must still tell the row caches (aspweb/rowcache.py), on every followed model's default
  and base managers.
"""

import os
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.core.management.color import no_style
from django.middleware import clickjacking, csrf, security
from django.utils.module_loading import import_string

SERVING = "serving"

# Django's check id -> the middleware it requires.
REQUIRED = {
    "security.W001": security.SecurityMiddleware,
    "security.W002": clickjacking.XFrameOptionsMiddleware,
    "security.W003": csrf.CsrfViewMiddleware,
}

QUERYSET_WRITES = ("update", "bulk_update", "bulk_create", "delete")


@register(Tags.security, deploy=True)
def required_middleware(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    classes = [import_string(path) for path in settings.MIDDLEWARE]
    return [
        Warning(f"No {required.__module__}.{required.__name__} (or a subclass) in MIDDLEWARE.",
                id=f"aspweb.{check_id}")
        for check_id, required in REQUIRED.items()
        if not any(issubclass(cls, required) for cls in classes if isinstance(cls, type))
    ]


@register(SERVING, deploy=True)
def no_async_unsafe(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    if not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE"):
        return []
    return [Error("DJANGO_ALLOW_ASYNC_UNSAFE is set: Django would then run database queries on the event loop, "
                  "blocking every request of the worker, instead of refusing them so that the work goes to a "
                  "thread.", hint="Unset it for the server; it is meant for notebooks and test harnesses.",
                  id="aspweb.E001")]


@register(Tags.caches)
def shared_cache_refuses_inline(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from aspweb.inline import cache_is_local
    from aspweb.sharedcache import SharedRedisCache

    backend = settings.CACHES["default"]["BACKEND"]
    if cache_is_local() or issubclass(import_string(backend), SharedRedisCache):
        return []
    return [Error(f"The default cache {backend} does network I/O but does not refuse to run inline on the event "
                  "loop.", hint="Use aspweb.sharedcache.SharedRedisCache (or a subclass).", id="aspweb.E002")]


@register()
def writes_tell_row_caches(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from aspweb.rowcache import followers

    errors = []
    for model in followers():
        for manager in {model._meta.default_manager, model._meta.base_manager}:
            queryset_class = type(manager.get_queryset())
            for write in QUERYSET_WRITES:
                if not getattr(getattr(queryset_class, write), "tells_row_caches", False):
                    errors.append(Error(
                        f"{queryset_class.__qualname__}.{write} of {model._meta.label} ({manager.name or 'base'} "
                        "manager) does not tell the row caches that follow the model.",
                        hint="Leave queryset writes of followed models to QuerySet's own (aspweb/rowcache.py).",
                        id="aspweb.E003"))
    return errors


def refuse_to_serve_unsafely() -> None:
    """Run the `serving` checks; ImproperlyConfigured, naming every problem, when one fails."""
    errors = checks.run_checks(tags=[SERVING], include_deployment_checks=True)
    if errors:
        style = no_style()
        raise ImproperlyConfigured("aspweb will not serve: " + "; ".join(style.ERROR(str(e)) for e in errors))
