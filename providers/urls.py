from django.urls import path

from . import views

urlpatterns = [
    path("providers/", views.provider_list, name="provider_list"),
    path("providers/add/", views.provider_add_choose, name="provider_add_choose"),
    path("providers/add/<slug:kind>/", views.provider_add, name="provider_add"),
    path("providers/<int:pk>/", views.provider_detail, name="provider_detail"),
    path("providers/<int:pk>/edit/", views.provider_edit, name="provider_edit"),
    path("providers/<int:pk>/enabled/", views.provider_set_enabled, name="provider_set_enabled"),
    path("providers/<int:pk>/delete/", views.provider_delete, name="provider_delete"),
    path("providers/<int:pk>/test/", views.provider_test, name="provider_test"),
    path("providers/<int:pk>/sync/", views.provider_sync, name="provider_sync"),
    path("providers/<int:pk>/models/add/", views.model_add, name="model_add"),
    path("providers/<int:pk>/prices/", views.model_bulk_prices, name="model_bulk_prices"),
    path("models/<int:pk>/enabled/", views.model_set_enabled, name="model_set_enabled"),
    path("models/<int:pk>/", views.model_detail, name="model_detail"),
]
