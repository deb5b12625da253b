"""Logging filters, named in settings.LOGGING. Imported while logging is configured, before the apps load:
nothing here may import a model."""

import logging

from django.core.exceptions import PermissionDenied


class OneLineRefusals(logging.Filter):
    """A refused page (403) is an answer the app meant to give, not a fault: Django logs it at WARNING with
    the PermissionDenied traceback, which buried real warnings under hundreds of identical stacks. This
    keeps it to one line that says who was refused and why."""

    def filter(self, record: logging.LogRecord) -> bool:
        refusal = record.exc_info[1] if record.exc_info else None
        if isinstance(refusal, PermissionDenied):
            user = getattr(getattr(record, "request", None), "user", None)
            record.msg = f"{record.msg} for user %s: %s"
            record.args = (*record.args, getattr(user, "pk", None), refusal)
            record.exc_info = record.exc_text = None
        return True
