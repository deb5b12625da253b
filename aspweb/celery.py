"""Celery app. Without REDIS_URL tasks run eagerly in the calling process (the embedded default)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aspweb.settings")

app = Celery("aspweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
