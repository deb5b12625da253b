from django.urls import path

from . import apikey_views

urlpatterns = [
    path("apikeys/", apikey_views.apikey_list, name="apikey_list"),
    path("apikeys/add/", apikey_views.apikey_add, name="apikey_add"),
    path("apikeys/access/", apikey_views.apikey_access, name="apikey_access"),
    path("apikeys/<int:pk>/revoke/", apikey_views.apikey_revoke, name="apikey_revoke"),
]
