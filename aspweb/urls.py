from django.contrib import admin
from django.urls import include, path

from . import ops

admin.site.site_header = "aspweb administration"
admin.site.site_title = "aspweb"

urlpatterns = [
    # The gateway first: its calls are the most frequent requests, and URLs are tried in order.
    # API keys authenticate there, not cookies, so its views are CSRF-exempt (gateway.api).
    path("v1/", include("gateway.api_urls")),
    path("", include("accounts.urls")),
    path("", include("providers.urls")),
    path("", include("playground.urls")),
    path("", include("usage.urls")),
    path("", include("gateway.apikey_urls")),
    path("", include("gateway.urls")),
    path("", include("budgets.urls")),
    path("", include("reconcile.urls")),
    path("django-admin/", admin.site.urls),
    # For load balancers, orchestrators and Prometheus: no sign-in (aspweb/ops.py).
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics_view, name="metrics"),
]
