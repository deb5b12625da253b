from django.urls import path

from . import views

urlpatterns = [
    path("reconciliation/", views.reconcile_index, name="reconcile_index"),
    path("reconciliation/<int:pk>/settings/", views.reconcile_settings, name="reconcile_settings"),
    path("reconciliation/<int:pk>/settings/delete/", views.reconcile_settings_delete,
         name="reconcile_settings_delete"),
    path("reconciliation/<int:pk>/<str:day>/", views.reconcile_day, name="reconcile_day"),
]
