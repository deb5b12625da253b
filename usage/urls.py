from django.urls import path

from . import dashboard_views, views

urlpatterns = [
    path("calls/", views.call_list, name="call_list"),
    path("calls/export.csv", views.call_export, name="call_export"),
    path("calls/<uuid:request_id>/", views.call_detail, name="call_detail"),
    path("models/<int:pk>/reprice/", views.usage_reprice, name="usage_reprice"),
    path("costs/", dashboard_views.dashboard, name="dashboard"),
    path("costs/export.csv", dashboard_views.dashboard_export, name="dashboard_export"),
    path("usage/", dashboard_views.my_usage, name="my_usage"),
    path("usage/export.csv", dashboard_views.my_usage_export, name="my_usage_export"),
]
