from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "aspweb administration"
admin.site.site_title = "aspweb"

urlpatterns = [
    path("", include("accounts.urls")),
    path("", include("providers.urls")),
    path("django-admin/", admin.site.urls),
]
