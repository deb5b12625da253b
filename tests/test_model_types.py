"""A catalog model's type (chat or embedding): set by sync from the listing or the id, preset and priced for the
kinds that have embedding models, shown and edited in the catalog, on the model's page and in the config file,
and kept out of the playground."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from aspweb.config import ConfigError, config_export, config_import, load_yaml
from playground import services as playground_services
from providers import services
from providers.adapters import wire
from providers.adapters.base import ModelInfo
from providers.kinds import KINDS, names_embedding
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("model_id", "embeds"), [
    ("text-embedding-3-small", True), ("gemini-embedding-001", True), ("embed-v4.0", True),
    ("nomic-embed-text", True), ("BAAI/bge-m3", True), ("thenlper/gte-large", True),
    ("intfloat/multilingual-e5-large-instruct", True), ("mxbai-embed-large:latest", True),
    ("gpt-4o", False), ("claude-sonnet-4-5", False), ("command-r-plus", False), ("llama3.1", False),
    ("deepseek-r1", False), ("qwen2.5:7b", False),
])
def test_an_id_that_clearly_names_an_embedding_model(model_id: str, embeds: bool) -> None:
    assert names_embedding(model_id) == embeds


def test_the_listing_the_preset_or_the_id_make_an_embedding_model() -> None:
    together = KINDS["together"]
    assert services.listed_type(together, ModelInfo("acme/vectors", type="embedding")) == "embedding"
    assert services.listed_type(KINDS["cohere"], ModelInfo("embed-english-v3.0")) == "embedding"
    assert services.listed_type(together, ModelInfo("BAAI/bge-large-en-v1.5")) == "embedding"
    assert services.listed_type(together, ModelInfo("meta-llama/Llama-3.3-70B-Instruct-Turbo")) == "chat"


def test_sync_sets_the_type_and_prices_embedding_models_from_genai_prices(upstream: FakeUpstream) -> None:
    upstream.models = ["gpt-4o-mini", "text-embedding-3-small", "text-embedding-3-large"]
    provider = Provider.objects.create(name="oa", kind="openai", base_url=upstream.openai_base_url, api_key="sk-x")
    services.models_sync(provider=provider, actor=None)
    types = dict(provider.models.values_list("name", "type"))
    assert types == {"gpt-4o-mini": "chat", "text-embedding-3-small": "embedding",
                     "text-embedding-3-large": "embedding"}
    small = provider.models.get(name="text-embedding-3-small").current_price()
    assert (small.input, small.output, small.source) == (Decimal("0.02"), Decimal(0), Price.Source.DEFAULT)
    assert provider.models.get(name="text-embedding-3-large").current_price().input == Decimal("0.13")


def test_a_server_that_says_a_models_type_is_believed(upstream: FakeUpstream,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Together's model list says each model's `type`; the fake's list says none, so its answer is replaced."""
    provider = Provider.objects.create(name="tg", kind="together", base_url=upstream.openai_base_url, api_key="k")
    listing = {"object": "list", "data": [{"id": "acme/vectors", "type": "embedding"},
                                          {"id": "acme/chatty", "type": "chat"}]}

    async def get(self: wire.Client, path: str) -> object:
        return listing

    monkeypatch.setattr(wire.Client, "get", get)
    services.models_sync(provider=provider, actor=None)
    assert dict(provider.models.values_list("name", "type")) == {"acme/vectors": "embedding", "acme/chatty": "chat"}


def test_without_a_listing_the_preset_embedding_models_are_added(upstream: FakeUpstream) -> None:
    provider = Provider.objects.create(name="co", kind="cohere", base_url=upstream.base_url + "/none", api_key="k")
    services.models_sync(provider=provider, actor=None)
    embedding = set(provider.models.filter(type="embedding").values_list("name", flat=True))
    assert embedding == set(KINDS["cohere"].embedding_models)
    assert set(provider.models.filter(type="chat").values_list("name", flat=True)) == set(KINDS["cohere"].models)
    assert provider.models.get(name="embed-v4.0").current_price().input == Decimal("0.12")


@pytest.mark.parametrize("kind", ["openai", "gemini", "cohere", "together", "fireworks", "deepinfra"])
def test_kinds_with_embedding_models_preset_them(kind: str) -> None:
    assert KINDS[kind].embedding_models
    assert all(services.listed_type(KINDS[kind], ModelInfo(name)) == "embedding"
               for name in KINDS[kind].embedding_models)


def test_the_playground_offers_chat_models_only() -> None:
    provider = Provider.objects.create(name="lab", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    Model.objects.create(provider=provider, name="chatty")
    Model.objects.create(provider=provider, name="vectors", type=Model.Type.EMBEDDING)
    assert [model.name for model in playground_services.catalog()] == ["chatty"]


def test_the_catalog_shows_the_type_and_the_model_page_edits_it(admin_client: Client) -> None:
    provider = Provider.objects.create(name="lab", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="vectors")
    page = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    assert "<th>Type</th>" in page and "<td>Chat</td>" in page
    response = admin_client.post(reverse("model_detail", args=[model.pk]), {
        "model-display_name": "", "model-type": "embedding", "model-enabled": "on"})
    assert response.status_code == 302
    model.refresh_from_db()
    assert model.type == "embedding"
    page = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    assert "<td>Embedding</td>" in page
    bad = admin_client.post(reverse("model_detail", args=[model.pk]), {"model-display_name": "", "model-type": "x"})
    assert bad.status_code == 200 and "Select a valid choice" in bad.content.decode()


def test_adding_a_model_sets_its_type(admin_client: Client) -> None:
    provider = Provider.objects.create(name="lab", kind="openai", api_key="sk-x")
    response = admin_client.post(reverse("model_add", args=[provider.pk]), {
        "name": "text-embedding-3-small", "type": "embedding", "enabled": "on"})
    assert response.status_code == 302
    model = provider.models.get()
    assert model.type == "embedding" and model.current_price().output == Decimal(0)


CONFIG = """
providers:
  - name: lab
    kind: openai_compatible
    base_url: http://127.0.0.1:9100/v1
    models:
      - name: chatty
        prices: {input: 1, output: 2}
      - name: vectors
        type: embedding
        prices: {input: 0.1, output: 0}
"""


def test_the_config_file_sets_and_exports_the_type() -> None:
    config_import(load_yaml(CONFIG, {}), actor="import_config")
    assert dict(Model.objects.values_list("name", "type")) == {"chatty": "chat", "vectors": "embedding"}
    exported = config_export()
    models = {model["name"]: model for model in exported["providers"][0]["models"]}
    assert models["vectors"]["type"] == "embedding" and "type" not in models["chatty"]
    with pytest.raises(ConfigError, match="type"):
        config_import(load_yaml(CONFIG.replace("type: embedding", "type: vectors"), {}), actor="import_config")


def test_ask_refuses_an_embedding_model_before_any_provider_is_asked(upstream: FakeUpstream) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    provider = Provider.objects.create(name="lab", kind="openai_compatible", base_url=upstream.openai_base_url)
    Model.objects.create(provider=provider, name="vectors", type=Model.Type.EMBEDDING)
    with pytest.raises(CommandError, match="lab/vectors is not a chat model"):
        call_command("ask", "Hello", "--provider", "lab", "--model", "vectors")
    assert upstream.requests == []
