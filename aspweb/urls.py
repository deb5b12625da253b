from django.contrib import admin
from django.urls import include, path

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
    path("django-admin/", admin.site.urls),
]
