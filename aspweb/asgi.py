"""The ASGI application of a serving process (uvicorn): it refuses to start on settings that would let
work run inline block the event loop (the checks tagged `serving`, aspweb/checks.py), and with Redis starts
listening for row cache changes at once (aspweb/rowcache_bus.py)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aspweb.settings")
django.setup(set_prefix=False)

from aspweb.checks import refuse_to_serve_unsafely  # noqa: E402  (after setup: checks read settings)
from aspweb.handler import ASGIHandler  # noqa: E402
from aspweb.rowcache import listen  # noqa: E402

refuse_to_serve_unsafely()
listen()
application = ASGIHandler()
