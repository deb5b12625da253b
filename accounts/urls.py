from django.contrib.auth import views as auth_views
from django.urls import path

from . import team_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.SignInView.as_view(), name="login"),
    path("login/sso/", views.sso_start, name="sso_start"),
    path("login/sso/callback/", views.sso_callback, name="sso_callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("users/", views.user_list, name="user_list"),
    path("users/add/", views.user_add, name="user_add"),
    path("users/<int:pk>/", views.user_edit, name="user_edit"),
    path("users/<int:pk>/password/", views.user_password, name="user_password"),
    path("users/<int:pk>/unlock/", views.user_unlock, name="user_unlock"),
    path("audit/", views.audit_list, name="audit_list"),
    path("teams/", team_views.team_list, name="team_list"),
    path("teams/<int:pk>/", team_views.team_edit, name="team_edit"),
    path("teams/<int:pk>/delete/", team_views.team_remove, name="team_delete"),
]
