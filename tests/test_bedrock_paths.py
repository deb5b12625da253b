"""Amazon Bedrock wherever a provider kind goes: the provider form and page, the catalog's sync and default
prices, the call path and its ledger, `manage.py ask`, the playground's compare mode and the config file;
against the fake Bedrock on loopback."""

import json
import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.contrib import admin as django_admin
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent, User
from aspweb.config import config_export, config_import, dump_yaml, load_yaml
from playground.models import Answer
from providers import calls, services
from providers.adapters.base import ChatRequest, Message
from providers.admin import ProviderAdmin
from providers.kinds import get_kind
from providers.models import Model, Provider
from tests.fakes.bedrock import KEY_ID, REGION, SECRET, FakeBedrock
from tests.playground_support import answers_of, send_data
from tests.test_playground_stream import send, stream
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db

HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA = "amazon.nova-lite-v1:0"
TOKEN = "FwoGZXIvYXdzEJr-session-token-zq9X"
FORM = {"enabled": "on", "timeout_seconds": "60", "max_retries": "1", "aws_region": REGION}


@pytest.fixture
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock() as server:
        yield server


@pytest.fixture
def provider(fake: FakeBedrock) -> Provider:
    provider = Provider.objects.create(
        name="aws", kind="bedrock", base_url=fake.base_url, max_retries=1,
        api_key=json.dumps({"aws_secret_access_key": SECRET}),
        extra={"aws_region": REGION, "aws_access_key_id": KEY_ID})
    for name in (HAIKU, NOVA):
        services.model_add(provider=provider, name=name, actor="test")  # with genai-prices' default price
    return provider


# The provider form and page ---------------------------------------------------------------------


def _stored(**secrets: str) -> Provider:
    return Provider.objects.create(name="aws", kind="bedrock",
                                   extra={"aws_region": REGION, "aws_access_key_id": KEY_ID},
                                   api_key=json.dumps(secrets))


def test_the_form_asks_for_the_region_the_key_id_its_secret_and_a_session_token(admin_client: Client) -> None:
    html = admin_client.get(reverse("provider_add", args=["bedrock"])).content.decode()
    for field in ("aws_region", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "base_url"):
        assert f'name="{field}"' in html, field
    assert 'name="api_key"' not in html


def test_the_secrets_are_stored_encrypted_together_and_never_shown_again(admin_client: Client) -> None:
    response = admin_client.post(reverse("provider_add", args=["bedrock"]), {
        **FORM, "name": "aws", "aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET,
        "aws_session_token": TOKEN})
    provider = Provider.objects.get(name="aws")
    assert response.status_code == 302
    assert json.loads(provider.api_key.reveal()) == {"aws_secret_access_key": SECRET, "aws_session_token": TOKEN}
    assert provider.extra == {"aws_region": REGION, "aws_access_key_id": KEY_ID}
    stored = Provider.objects.filter(pk=provider.pk).values_list("api_key", flat=True).get()
    assert SECRET not in str(stored) and TOKEN not in str(stored)

    for page in (reverse("provider_detail", args=[provider.pk]), reverse("provider_edit", args=[provider.pk])):
        html = admin_client.get(page).content.decode()
        assert SECRET not in html and TOKEN not in html and SECRET[-4:] not in html and TOKEN[-4:] not in html
        assert KEY_ID in html
    detail = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    assert "<dt>Secret access key</dt><dd>stored</dd>" in detail and "<dt>Session token</dt><dd>stored</dd>" in detail


def test_the_django_admin_says_only_that_the_secrets_are_stored(client_as: Callable[[str], Client]) -> None:
    provider = _stored(aws_secret_access_key=SECRET, aws_session_token=TOKEN)
    # The mask of one API key ("••••" and its last 4 characters) would end in a secret's last characters.
    assert ProviderAdmin(Provider, django_admin.site).masked_key(provider) == "stored"
    html = client_as("superuser").get(reverse("admin:providers_provider_changelist")).content.decode()
    assert "<td class=\"field-masked_key\">stored</td>" in html


def test_blank_secrets_keep_the_stored_ones_and_a_new_key_pair_drops_the_old_token(admin_client: Client) -> None:
    provider = _stored(aws_secret_access_key=SECRET, aws_session_token=TOKEN)
    url = reverse("provider_edit", args=[provider.pk])
    assert admin_client.post(url, {**FORM, "name": "aws", "aws_region": "eu-west-1",
                                   "aws_access_key_id": KEY_ID}).status_code == 302
    provider.refresh_from_db()
    assert json.loads(provider.api_key.reveal())["aws_secret_access_key"] == SECRET
    assert provider.extra["aws_region"] == "eu-west-1"
    fields = AuditEvent.objects.filter(action="provider.update").latest("id").details["fields"]
    assert "extra" in fields and "api_key" not in fields

    admin_client.post(url, {**FORM, "name": "aws", "aws_access_key_id": "AKIANEWKEY0000000001",
                            "aws_secret_access_key": "new/secret"})
    provider.refresh_from_db()
    assert json.loads(provider.api_key.reveal()) == {"aws_secret_access_key": "new/secret"}
    assert "api_key" in AuditEvent.objects.filter(action="provider.update").latest("id").details["fields"]


def test_clearing_the_key_id_turns_to_the_default_chain_and_forgets_the_secrets(admin_client: Client) -> None:
    provider = _stored(aws_secret_access_key=SECRET)
    admin_client.post(reverse("provider_edit", args=[provider.pk]), {**FORM, "name": "aws"})
    provider.refresh_from_db()
    assert provider.extra == {"aws_region": REGION} and not provider.api_key
    detail = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    assert "<dt>Secret access key</dt><dd>none</dd>" in detail


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"aws_access_key_id": KEY_ID}, "aws_secret_access_key", "Enter the secret access key"),
    ({"aws_secret_access_key": SECRET}, "aws_access_key_id", "Enter the access key ID these secrets belong to"),
    ({"aws_access_key_id": "not a key", "aws_secret_access_key": SECRET}, "aws_access_key_id", "as AWS shows it"),
    ({"aws_region": "Mars/../x"}, "aws_region", "Enter an AWS region name"),
    ({"aws_region": ""}, "aws_region", "This field is required."),
])
def test_bad_credentials_are_form_errors(admin_client: Client, data: dict, field: str, words: str) -> None:
    response = admin_client.post(reverse("provider_add", args=["bedrock"]), {**FORM, "name": "aws", **data})
    assert response.status_code == 200
    assert words in " ".join(response.context["form"].errors[field])
    assert Provider.objects.count() == 0


def test_test_connection_and_sync_reach_bedrock_and_price_from_genai_prices(admin_client: Client,
                                                                             fake: FakeBedrock) -> None:
    provider = Provider.objects.create(name="aws", kind="bedrock", base_url=fake.base_url,
                                       extra={"aws_region": REGION, "aws_access_key_id": KEY_ID},
                                       api_key=json.dumps({"aws_secret_access_key": SECRET}))
    html = admin_client.post(reverse("provider_test", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert f"{len(fake.models) + len(fake.embedding_models)} models listed" in html.decode()
    admin_client.post(reverse("provider_sync", args=[provider.pk]))
    haiku = Model.objects.get(provider=provider, name=HAIKU)
    price = haiku.current_price()
    assert (price.input, price.output, price.cache_read, price.cache_write, price.cache_write_1h) == (
        Decimal("1.1"), Decimal("5.5"), Decimal("0.11"), Decimal("1.375"), Decimal("2.2"))
    assert Model.objects.get(provider=provider, name="mistral.mistral-large-2402-v1:0").current_price().input == 4
    titan = Model.objects.get(provider=provider, name="amazon.titan-embed-text-v2:0")
    assert titan.type == Model.Type.EMBEDDING and titan.current_price().input == Decimal("0.02")
    cohere = Model.objects.get(provider=provider, name="cohere.embed-v4:0")  # genai-prices knows no Bedrock Cohere
    assert cohere.type == Model.Type.EMBEDDING and cohere.current_price() is None
    assert Model.objects.get(provider=provider, name=HAIKU).type == Model.Type.CHAT


def test_refused_credentials_reach_neither_the_page_nor_the_logs(admin_client: Client, fake: FakeBedrock,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    wrong, token = "wrong/secret-0123456789abcdefghijklmn", "FwoGZXIvYXdzEJr-refused-token-q7Wd"
    provider = Provider.objects.create(name="aws", kind="bedrock", base_url=fake.base_url,
                                       extra={"aws_region": REGION, "aws_access_key_id": KEY_ID},
                                       api_key=json.dumps({"aws_secret_access_key": wrong, "aws_session_token": token}))
    for name in ("", "providers", "django"):
        caplog.set_level(logging.DEBUG, logger=name)
    html = admin_client.post(reverse("provider_test", args=[provider.pk]), headers={"HX-Request": "true"})
    assert "refused the AWS credentials (HTTP 403)" in html.content.decode()
    assert fake.last_request.headers["x-amz-security-token"] == token  # sent, so there was something to leak
    for text in (html.content.decode(), caplog.text, " ".join(repr(r.__dict__) for r in caplog.records)):
        assert wrong not in text and token not in text


@pytest.mark.parametrize("name", get_kind("bedrock").models)
def test_every_preset_model_has_a_default_price(name: str) -> None:
    prices = services.default_price(get_kind("bedrock"), name)
    assert prices is not None and prices["input"] > 0 and prices["output"] > 0


# The call path, the ledger and manage.py ask --------------------------------------------------------


def test_ask_streams_and_the_ledger_prices_every_token_class(provider: Provider, fake: FakeBedrock) -> None:
    fake.usage = {"inputTokens": 100, "outputTokens": 20, "cacheReadInputTokens": 1000,
                  "cacheWriteInputTokens": 400, "cacheDetails": [{"ttl": "1h", "inputTokens": 100}]}
    out = StringIO()
    call_command("ask", "Say hello", provider="aws", model=HAIKU, system="Be brief", max_tokens=50, stdout=out)
    assert out.getvalue().startswith(fake.reply)
    assert fake.last_request.path == f"/model/{HAIKU}/converse-stream"
    assert fake.last_request.body["inferenceConfig"] == {"maxTokens": 50}
    record = UsageRecord.objects.get()
    assert (record.provider_name, record.model_name, record.status) == ("aws", HAIKU, "ok")
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens, record.cache_write_1h_tokens,
            record.output_tokens) == (100, 1000, 300, 100, 20)
    # Per million: 100 x $1.1 + 1000 x $0.11 + 300 x $1.375 + 100 x $2.2 + 20 x $5.5
    assert record.cost == Decimal("0.0009625") and not record.unpriced
    assert "$0.000963" in out.getvalue() or "$0.000962" in out.getvalue()


def test_ask_errors_are_one_plain_line_without_secrets(provider: Provider, fake: FakeBedrock) -> None:
    fake.fail_next("AccessDeniedException")
    with pytest.raises(CommandError) as caught:
        call_command("ask", "Hi", provider="aws", model=HAIKU, stdout=StringIO())
    assert "refused the AWS credentials (HTTP 403)" in str(caught.value) and SECRET not in str(caught.value)
    assert UsageRecord.objects.get().error_kind == "auth"


def test_throttling_is_retried_by_the_call_path(provider: Provider, fake: FakeBedrock) -> None:
    fake.fail_next("ThrottlingException")
    record = calls.CallRecord()

    async def run() -> str:
        async def no_sleep(seconds: float) -> None:
            pass

        request = ChatRequest(model=f"aws/{NOVA}", messages=(Message("user", "Hi"),))
        stream = calls.stream_chat(request, caller=calls.Caller(source="cli"), record=record, sleep=no_sleep)
        return "".join([chunk.text async for chunk in stream])

    assert async_to_sync(run)() == fake.reply
    assert record.attempts == 2 and record.status == "ok" and record.cost > 0


# The playground --------------------------------------------------------------------------------------


@pytest.fixture
def member(make_user: Callable[..., User]) -> User:
    cache.clear()
    return make_user("member")


def test_the_playground_compares_two_bedrock_models(member: User, provider: Provider, fake: FakeBedrock) -> None:
    haiku, nova = (Model.objects.get(provider=provider, name=name) for name in (HAIKU, NOVA))
    turn = send(member, send_data(haiku, nova, prompt="Say hello", system="Be brief"))
    for answer in answers_of(turn.pk):
        result = stream(member, answer)
        assert "".join(result.deltas) == fake.reply
        answer.refresh_from_db()
        assert answer.status == Answer.Status.OK and answer.cost > 0 and not answer.usage_estimated
    assert {request.model for request in fake.requests} == {HAIKU, NOVA}
    assert all(request.signature_ok for request in fake.requests)


# The config file -------------------------------------------------------------------------------------


def test_the_config_file_takes_the_secrets_from_the_environment_and_exports_placeholders() -> None:
    text = (f"providers:\n  - name: aws\n    kind: bedrock\n    aws_region: {REGION}\n"
            f"    aws_access_key_id: {KEY_ID}\n    aws_secret_access_key: ${{AWS_SECRET}}\n")
    config_import(load_yaml(text, {"AWS_SECRET": SECRET}), actor="import_config")
    assert json.loads(Provider.objects.get(name="aws").api_key.reveal()) == {"aws_secret_access_key": SECRET}
    exported = config_export()
    entry = next(p for p in exported["providers"] if p["name"] == "aws")
    assert entry["aws_secret_access_key"] == "${AWS_AWS_SECRET_ACCESS_KEY}" and SECRET not in dump_yaml(exported)
    report = config_import(load_yaml(dump_yaml(exported), {"AWS_AWS_SECRET_ACCESS_KEY": SECRET}),
                           actor="import_config")
    assert "provider aws" in report.unchanged
