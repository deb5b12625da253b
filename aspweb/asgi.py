import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aspweb.settings")
django.setup(set_prefix=False)

from aspweb.handler import ASGIHandler  # noqa: E402  (after setup: it reads settings)

application = ASGIHandler()
