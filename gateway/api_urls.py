"""/v1/: the gateway. Unnamed on purpose: these URLs authenticate with API keys, not sign-in, so the role
matrix does not cover them (tests/test_gateway_*.py does)."""

from django.urls import path, re_path

from . import api, embeddings

urlpatterns = [
    path("chat/completions", api.chat_completions),
    path("messages", api.messages),
    path("responses", api.responses),
    path("embeddings", embeddings.create),
    path("models", api.model_list),
    path("models/<path:model_id>", api.model_retrieve),
    path("openapi.json", api.openapi_description),
    re_path(r"^(?P<path>.*)$", api.not_found),
]
