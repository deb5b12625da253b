"""System checks of aspweb's own settings.

Django's deployment checks look for its security, CSRF and clickjacking middleware by their dotted
paths; aspweb runs subclasses of them (aspweb/middleware.py), so those three checks are silenced in
settings and made here instead, by class: `manage.py check --deploy` still fails without them.
"""

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.middleware import clickjacking, csrf, security
from django.utils.module_loading import import_string

# Django's check id -> the middleware it requires.
REQUIRED = {
    "security.W001": security.SecurityMiddleware,
    "security.W002": clickjacking.XFrameOptionsMiddleware,
    "security.W003": csrf.CsrfViewMiddleware,
}


@register(Tags.security, deploy=True)
def required_middleware(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    classes = [import_string(path) for path in settings.MIDDLEWARE]
    return [
        Warning(f"No {required.__module__}.{required.__name__} (or a subclass) in MIDDLEWARE.",
                id=f"aspweb.{check_id}")
        for check_id, required in REQUIRED.items()
        if not any(issubclass(cls, required) for cls in classes if isinstance(cls, type))
    ]
