from django.urls import path

from . import extra_views, views

urlpatterns = [
    path("playground/", views.index, name="playground"),
    path("playground/send/", views.send, name="playground_send"),
    path("playground/estimate/", views.estimate, name="playground_estimate"),
    path("playground/c/<int:pk>/", views.conversation_detail, name="playground_conversation"),
    path("playground/c/<int:pk>/regenerate/", views.regenerate, name="playground_regenerate"),
    path("playground/c/<int:pk>/rename/", views.rename, name="playground_rename"),
    path("playground/c/<int:pk>/delete/", views.delete, name="playground_delete"),
    path("playground/turns/<int:pk>/versions/<int:version>/", views.turn_version, name="playground_turn_version"),
    path("playground/answers/<int:pk>/stream/", views.answer_stream, name="playground_stream"),
    path("playground/answers/<int:pk>/stop/", views.answer_stop, name="playground_stop"),
    path("playground/code/", extra_views.request_code, name="playground_code"),
    path("playground/c/<int:pk>/cost/", extra_views.conversation_cost, name="playground_cost"),
]
