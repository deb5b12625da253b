from django.urls import path

from . import views

urlpatterns = [
    path("routes/", views.route_list, name="route_list"),
    path("routes/add/", views.route_add, name="route_add"),
    path("routes/<int:pk>/", views.route_detail, name="route_detail"),
    path("routes/<int:pk>/edit/", views.route_edit, name="route_edit"),
    path("routes/<int:pk>/delete/", views.route_delete, name="route_delete"),
    path("deployments/<int:pk>/remove/", views.deployment_remove, name="deployment_remove"),
    path("deployments/<int:pk>/reset/", views.deployment_reset, name="deployment_reset"),
]
