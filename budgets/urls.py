from django.urls import path

from . import views

urlpatterns = [
    path("budgets/", views.budget_list, name="budget_list"),
    path("budgets/add/", views.budget_add, name="budget_add"),
    path("budgets/<int:pk>/", views.budget_detail, name="budget_detail"),
    path("budgets/<int:pk>/edit/", views.budget_edit, name="budget_edit"),
    path("budgets/<int:pk>/delete/", views.budget_delete, name="budget_delete"),
    path("budgets/<int:pk>/test-alert/", views.budget_test_alert, name="budget_test_alert"),
    path("notifications/", views.notification_list, name="notification_list"),
    path("notifications/bell/", views.notification_bell, name="notification_bell"),
    path("notifications/read-all/", views.notification_read_all, name="notification_read_all"),
    path("notifications/<int:pk>/read/", views.notification_read, name="notification_read"),
]
