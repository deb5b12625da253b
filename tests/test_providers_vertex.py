"""A Vertex AI provider end to end against the Vertex fakes: its form (the service account's key checked,
stored encrypted, never shown again), test and sync, the ledger with genai-prices' prices, `manage.py ask`,
and the playground in compare mode."""

import json
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from aspweb.config import ConfigError, config_export, config_import, load_yaml
from playground.models import Answer
from providers import calls, services
from providers.adapters import vertex_auth
from providers.adapters.base import ChatRequest, Message
from providers.models import Model, Provider
from tests.fakes.vertex import PROJECT, REGION, FakeVertex
from tests.playground_support import answers_of, send_data
from tests.test_config import provider_file
from tests.test_crypto import raw_column
from tests.test_playground_stream import _asgi_get, _session_cookie, run_asgi, send
from usage.models import UsageRecord

GEMINI = "google/gemini-2.5-flash"
CLAUDE = "claude-sonnet-4-5@20250929"
FORM = {"enabled": "on", "timeout_seconds": "120", "max_retries": "0"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeVertex]:
    with FakeVertex() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeVertex) -> Iterator[FakeVertex]:
    server.reset()
    vertex_auth._accounts.clear()
    cache.clear()
    yield server
    vertex_auth._accounts.clear()


def key_text(fake: FakeVertex) -> str:
    return json.dumps(fake.key(), indent=2)


@pytest.fixture
def provider(fake: FakeVertex, admin_user: User) -> Provider:
    """Provider "gcp" on the fakes, with the two models and genai-prices' default prices."""
    provider = Provider.objects.create(name="gcp", kind="vertex", base_url=fake.vertex_base_url,
                                       api_key=key_text(fake), extra={"region": REGION}, max_retries=0)
    for name in (GEMINI, CLAUDE):
        services.model_add(provider=provider, name=name, actor=admin_user)
    return provider


# -- the form ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_form_asks_for_the_key_in_a_text_area_a_project_and_a_region(admin_client: Client) -> None:
    html = admin_client.get(reverse("provider_add", args=["vertex"])).content.decode()
    assert '<textarea name="api_key"' in html and "Service account key (JSON)" in html
    assert 'name="project"' in html and 'name="region"' in html and 'value="us-central1"' in html
    assert "Vertex AI User" in html


@pytest.mark.django_db
def test_adding_a_provider_stores_the_key_encrypted_and_never_shows_it(admin_client: Client,
                                                                       fake: FakeVertex) -> None:
    text = key_text(fake)
    response = admin_client.post(reverse("provider_add", args=["vertex"]),
                                 {**FORM, "name": "gcp", "api_key": text, "region": "europe-west4"})
    assert response.status_code == 302
    provider = Provider.objects.get(name="gcp")
    assert provider.api_key.reveal() == text.strip()
    assert provider.extra == {"region": "europe-west4"}  # a blank project is the key's own
    stored = raw_column(provider)
    assert stored.startswith("fernet1:") and "PRIVATE" not in stored
    for page in (reverse("provider_detail", args=[provider.pk]), reverse("provider_edit", args=[provider.pk])):
        html = admin_client.get(page).content.decode()
        assert "PRIVATE KEY" not in html and fake.key()["private_key_id"] not in html
        assert "client_email" not in html
    assert "A key is stored" in admin_client.get(reverse("provider_edit", args=[provider.pk])).content.decode()
    detail = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    assert "Service account key (JSON)</dt><dd>stored</dd>" in detail and "by region" in detail


@pytest.mark.django_db
def test_a_form_sent_back_with_an_error_does_not_echo_the_key(admin_client: Client, fake: FakeVertex) -> None:
    response = admin_client.post(reverse("provider_add", args=["vertex"]),
                                 {**FORM, "name": "bad name!", "api_key": key_text(fake), "region": REGION})
    assert response.status_code == 200
    assert "PRIVATE KEY" not in response.content.decode()
    assert Provider.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"api_key": '{"type": "authorized_user"}'}, "api_key", "not a service account key"),
    ({"api_key": "AIzaSy-an-api-key-instead"}, "api_key", "it is JSON"),
    ({"api_key": ""}, "api_key", "This field is required."),
    ({"region": "us-central1.evil.example"}, "region", "Enter a Vertex AI region"),
    ({"region": ""}, "region", "This field is required."),
    ({"project": "../../other"}, "project", "Enter the project ID as Google Cloud shows it"),
])
def test_bad_settings_are_form_errors_and_write_nothing(admin_client: Client, fake: FakeVertex, changes: dict,
                                                        field: str, words: str) -> None:
    data = {**FORM, "name": "gcp", "api_key": key_text(fake), "region": REGION, **changes}
    response = admin_client.post(reverse("provider_add", args=["vertex"]), data)
    assert response.status_code == 200
    assert words in " ".join(response.context["form"].errors[field])
    assert Provider.objects.count() == 0


@pytest.mark.django_db
def test_test_and_sync_reach_the_fakes_and_price_the_presets(admin_client: Client, fake: FakeVertex) -> None:
    provider = Provider.objects.create(name="gcp", kind="vertex", base_url=fake.vertex_base_url,
                                       api_key=key_text(fake), extra={"region": REGION})
    html = admin_client.post(reverse("provider_test", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert f"Connected to project {PROJECT} in {REGION}." in html.decode()
    admin_client.post(reverse("provider_sync", args=[provider.pk]), headers={"HX-Request": "true"})
    gemini = Model.objects.get(provider=provider, name=GEMINI)
    claude = Model.objects.get(provider=provider, name=CLAUDE)
    gemini_price, claude_price = gemini.price_at(timezone.now()), claude.price_at(timezone.now())
    assert (gemini_price.input, gemini_price.output) == (Decimal("0.3"), Decimal("2.5"))
    assert (claude_price.cache_write, claude_price.cache_write_1h) == (Decimal("3.75"), Decimal("6"))
    assert claude.max_output_tokens == 64_000


@pytest.mark.django_db
def test_a_refused_key_fails_the_test_in_plain_words(admin_client: Client, fake: FakeVertex) -> None:
    fake.refuse = "invalid_grant"
    provider = Provider.objects.create(name="gcp", kind="vertex", base_url=fake.vertex_base_url,
                                       api_key=key_text(fake), extra={"region": REGION})
    html = admin_client.post(reverse("provider_test", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert "Google refused gcp&#x27;s service account key (invalid_grant" in html.decode()
    assert "PRIVATE KEY" not in html.decode()


@pytest.mark.django_db
def test_config_as_code_takes_the_key_from_the_environment_and_checks_it(fake: FakeVertex) -> None:
    text = provider_file("name: gcp", "kind: vertex", "api_key: ${VERTEX_KEY}", "region: global")
    config_import(load_yaml(text, {"VERTEX_KEY": key_text(fake)}), actor="import_config")
    provider = Provider.objects.get(name="gcp")
    assert provider.api_key.reveal() == key_text(fake).strip() and provider.extra == {"region": "global"}
    with pytest.raises(ConfigError) as caught:
        config_import(load_yaml(text, {"VERTEX_KEY": '{"type": "user"}'}), actor="import_config")
    assert any("not a service account key" in error for error in caught.value.errors)
    exported = json.dumps(config_export(), default=str)
    assert "PRIVATE KEY" not in exported and "${" in exported  # the export names the variable, never the key


# -- the call path and the ledger ----------------------------------------------------------------


def _call(address: str) -> calls.CallRecord:
    record = calls.CallRecord()

    async def go() -> None:
        request = ChatRequest(model=address, messages=(Message("user", "Say hello"),))
        async for _ in calls.stream_chat(request, caller=calls.Caller(source="cli"), record=record):
            pass

    async_to_sync(go)()
    return record


@pytest.mark.django_db(transaction=True)
def test_calls_land_in_the_ledger_with_usage_and_cost(provider: Provider, fake: FakeVertex) -> None:
    fake.usage_style = "gemini"
    fake.raw_usage = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1300}
    gemini = _call(f"gcp/{GEMINI}")
    # 1000 x $0.30 + (100 + 200 thoughts) x $2.50, per million tokens
    assert (gemini.status, gemini.cost) == ("ok", Decimal("0.00105"))
    assert gemini.usage.reasoning_tokens == 200
    fake.raw_usage = None
    fake.usage = {"input_tokens": 1000, "output_tokens": 100, "cached_tokens": 2000, "cache_write_tokens": 400,
                  "cache_write_1h_tokens": 100}
    claude = _call(f"gcp/{CLAUDE}")
    # 1000 x $3 + 100 x $15 + 2000 x $0.30 + 400 x $3.75 + 100 x $6, per million tokens
    assert (claude.status, claude.cost) == ("ok", Decimal("0.0072"))
    rows = UsageRecord.objects.filter(provider=provider).order_by("id")
    assert [(row.model.name, row.cost) for row in rows] == [(GEMINI, Decimal("0.00105")), (CLAUDE, Decimal("0.0072"))]
    assert rows[1].cache_write_1h_tokens == 100
    assert fake.mints == 1


@pytest.mark.django_db(transaction=True)
def test_an_error_lands_in_the_ledger_as_the_taxonomy_names_it(provider: Provider, fake: FakeVertex) -> None:
    fake.fail_next(429)
    with pytest.raises(calls.ProviderError) as caught:
        _call(f"gcp/{CLAUDE}")
    assert caught.value.kind == "rate_limit"
    row = UsageRecord.objects.get(provider=provider)
    assert row.status == "error" and row.error_kind == "rate_limit"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
def test_ask_streams_a_vertex_model_and_prints_its_cost(provider: Provider, fake: FakeVertex, model: str) -> None:
    fake.usage = {"input_tokens": 10, "output_tokens": 4}
    out = StringIO()
    call_command("ask", "Say hello", provider="gcp", model=model, stdout=out)
    assert out.getvalue().startswith(fake.reply)
    assert "10 in / 4 out tokens" in out.getvalue() and "$0.0000" in out.getvalue()


# -- the playground ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_playground_compares_gemini_and_claude_on_vertex(provider: Provider, fake: FakeVertex,
                                                             make_user: object) -> None:
    member = make_user("member")  # type: ignore[operator]
    gemini, claude = (Model.objects.get(provider=provider, name=name) for name in (GEMINI, CLAUDE))
    turn = send(member, send_data(gemini, claude))
    answers = answers_of(turn.pk)
    cookie = _session_cookie(member)

    async def both() -> list:
        import asyncio

        paths = [f"/playground/answers/{answer.pk}/stream/" for answer in answers]
        return await asyncio.gather(*(_asgi_get(path, cookie) for path in paths))

    for result in run_asgi(both):
        assert "".join(result.deltas) == fake.reply
    assert [answer.status for answer in answers_of(turn.pk)] == [Answer.Status.OK, Answer.Status.OK]
    assert all(answer.cost > 0 for answer in answers_of(turn.pk))
    assert fake.mints == 1
