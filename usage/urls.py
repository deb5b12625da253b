from django.urls import path

from . import views

urlpatterns = [
    path("calls/", views.call_list, name="call_list"),
    path("calls/export.csv", views.call_export, name="call_export"),
    path("calls/<uuid:request_id>/", views.call_detail, name="call_detail"),
    path("models/<int:pk>/reprice/", views.usage_reprice, name="usage_reprice"),
    path("costs/", views.dashboard, name="dashboard"),
    path("costs/export.csv", views.dashboard_export, name="dashboard_export"),
    path("usage/", views.my_usage, name="my_usage"),
    path("usage/export.csv", views.my_usage_export, name="my_usage_export"),
]
