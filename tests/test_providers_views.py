"""Provider pages: add per kind, edit, disable, delete or archive, test connection, sync, prices."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent
from providers.kinds import KINDS
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db


def _add(client: Client, kind: str, **data: str):
    return client.post(reverse("provider_add", args=[kind]), data)


@pytest.mark.parametrize(
    ("kind", "asked", "not_asked"),
    [
        ("openai", ["name", "base_url", "api_key"], ["account_id", "api_version", "referer"]),
        ("anthropic", ["name", "api_key"], ["account_id", "api_version"]),
        ("azure_openai", ["base_url", "api_key", "api_version"], ["account_id", "referer"]),
        ("openrouter", ["api_key", "referer", "title"], ["account_id", "api_version"]),
        ("cloudflare", ["api_key", "account_id"], ["api_version", "referer"]),
        ("ollama", ["base_url"], ["api_key", "account_id"]),
        ("vllm", ["base_url"], ["api_key"]),
        ("claude_cli", ["name"], ["api_key", "base_url"]),
        ("openai_compatible", ["base_url", "api_key"], ["account_id"]),
    ],
)
def test_add_form_asks_only_what_the_kind_needs(admin_client: Client, kind: str, asked: list[str],
                                                not_asked: list[str]) -> None:
    html = admin_client.get(reverse("provider_add", args=[kind])).content.decode()
    for field in asked:
        assert f'name="{field}"' in html, field
    for field in not_asked:
        assert f'name="{field}"' not in html, field


def test_vllm_form_warns_about_the_shared_default_port(admin_client: Client) -> None:
    html = admin_client.get(reverse("provider_add", args=["vllm"])).content.decode()
    assert "same port as aspweb" in html


def test_every_kind_has_an_add_page(admin_client: Client) -> None:
    page = admin_client.get(reverse("provider_add_choose")).content.decode()
    for name in KINDS:
        assert reverse("provider_add", args=[name]) in page
        assert admin_client.get(reverse("provider_add", args=[name])).status_code == 200
    assert admin_client.get(reverse("provider_add", args=["nope"])).status_code == 404


def test_add_provider_stores_encrypted_key_and_extras(admin_client: Client) -> None:
    response = _add(admin_client, "openrouter", name="or", api_key="sk-or-secret-1234", referer="https://x.test",
                    title="Team", enabled="on", timeout_seconds="60", max_retries="2")
    provider = Provider.objects.get(name="or")
    assert response.status_code == 302
    assert response["Location"] == reverse("provider_detail", args=[provider.pk])
    assert provider.api_key.reveal() == "sk-or-secret-1234"
    assert provider.extra == {"referer": "https://x.test", "title": "Team"}
    assert provider.timeout_seconds == 60
    assert AuditEvent.objects.filter(action="provider.create", target_id=str(provider.pk)).exists()


@pytest.mark.parametrize(
    ("kind", "data", "field", "message"),
    [
        ("openai", {"name": "o"}, "api_key", "This field is required."),
        ("openai_compatible", {"name": "c", "base_url": "not a url"}, "base_url", "Enter a valid URL."),
        ("openai_compatible", {"name": "c"}, "base_url", "This field is required."),
        ("cloudflare", {"name": "cf", "api_key": "t"}, "account_id", "This field is required."),
        ("azure_openai", {"name": "az", "api_key": "k", "base_url": "https://r.openai.azure.com",
                          "api_version": ""}, "api_version", "This field is required."),
        ("ollama", {"name": "bad name!"}, "name", "Use letters, digits"),
        ("ollama", {"name": "x", "timeout_seconds": "0"}, "timeout_seconds", "greater than or equal to 1"),
    ],
)
def test_bad_input_gives_a_form_error_and_writes_nothing(admin_client: Client, kind: str, data: dict, field: str,
                                                         message: str) -> None:
    data = {"enabled": "on", "timeout_seconds": "120", "max_retries": "3", **data}
    response = _add(admin_client, kind, **data)
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert Provider.objects.count() == 0


def test_duplicate_name_is_a_form_error(admin_client: Client) -> None:
    Provider.objects.create(name="dup", kind="ollama")
    response = _add(admin_client, "ollama", name="dup", timeout_seconds="120", max_retries="3")
    assert response.status_code == 200
    assert "A provider with this name already exists." in response.content.decode()
    assert Provider.objects.filter(name="dup").count() == 1


def test_edit_with_blank_key_keeps_it_and_shows_only_last4(admin_client: Client) -> None:
    provider = Provider.objects.create(name="o", kind="openai", api_key="sk-test-abcdefgh-9876")
    url = reverse("provider_edit", args=[provider.pk])
    html = admin_client.get(url).content.decode()
    assert "9876" in html and "sk-test-abcdefgh-9876" not in html
    response = admin_client.post(url, {"name": "o2", "api_key": "", "enabled": "on", "timeout_seconds": "30",
                                       "max_retries": "1", "base_url": ""})
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.name == "o2" and provider.api_key.reveal() == "sk-test-abcdefgh-9876"
    event = AuditEvent.objects.get(action="provider.update")
    assert "api_key" not in event.details["fields"] and "name" in event.details["fields"]

    admin_client.post(url, {"name": "o2", "api_key": "sk-new-key-00001111", "enabled": "on",
                            "timeout_seconds": "30", "max_retries": "1"})
    provider.refresh_from_db()
    assert provider.api_key.reveal() == "sk-new-key-00001111"
    last = AuditEvent.objects.filter(action="provider.update").order_by("-id").first()
    assert last.details == {"fields": ["api_key"]}


def test_disable_and_enable(admin_client: Client) -> None:
    provider = Provider.objects.create(name="o", kind="ollama")
    admin_client.post(reverse("provider_set_enabled", args=[provider.pk]), {"enabled": "0"})
    provider.refresh_from_db()
    assert provider.enabled is False
    admin_client.post(reverse("provider_set_enabled", args=[provider.pk]), {"enabled": "1"})
    provider.refresh_from_db()
    assert provider.enabled is True
    assert list(AuditEvent.objects.values_list("action", flat=True).order_by("id")) == [
        "provider.disable", "provider.enable"]


def test_delete_without_history_erases(admin_client: Client) -> None:
    provider = Provider.objects.create(name="gone", kind="ollama")
    Model.objects.create(provider=provider, name="m")
    response = admin_client.post(reverse("provider_delete", args=[provider.pk]))
    assert response.status_code == 302
    assert not Provider.objects.filter(name="gone").exists()
    assert not Model.objects.exists()
    assert AuditEvent.objects.filter(action="provider.delete", target_label="gone").exists()


def test_delete_with_history_archives_and_frees_the_name(admin_client: Client) -> None:
    provider = Provider.objects.create(name="kept", kind="ollama")
    model = Model.objects.create(provider=provider, name="m")
    UsageRecord.objects.create(source="playground", status="ok", provider=provider, model=model,
                               provider_name="kept", model_name="m")
    assert "archived" in admin_client.get(reverse("provider_delete", args=[provider.pk])).content.decode()
    admin_client.post(reverse("provider_delete", args=[provider.pk]))
    provider.refresh_from_db()
    assert provider.archived_at is not None and provider.enabled is False
    assert Model.objects.filter(pk=model.pk).exists()
    list_html = admin_client.get(reverse("provider_list")).content.decode()
    assert ">kept</a>" not in list_html
    assert ">kept</a>" in admin_client.get(reverse("provider_list") + "?archived=1").content.decode()
    # The archived provider is read-only, and its name can be taken by a new one.
    assert admin_client.get(reverse("provider_edit", args=[provider.pk])).status_code == 404
    response = _add(admin_client, "ollama", name="kept", timeout_seconds="120", max_retries="3")
    assert response.status_code == 302
    assert Provider.objects.filter(name="kept").count() == 2


def _fake_provider(upstream: FakeUpstream, **kwargs: str) -> Provider:
    return Provider.objects.create(name="fake", kind="openai_compatible", base_url=upstream.openai_base_url,
                                   api_key=kwargs.pop("api_key", "sk-fake-key-0000"), **kwargs)


def test_test_connection_over_htmx_shows_latency(admin_client: Client, upstream: FakeUpstream) -> None:
    provider = _fake_provider(upstream)
    response = admin_client.post(reverse("provider_test", args=[provider.pk]), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="health"')  # the partial only, not the page
    assert "Connected; 2 models listed." in html and " ms" in html
    assert upstream.last_request.headers["authorization"] == "Bearer sk-fake-key-0000"
    provider.refresh_from_db()
    assert provider.last_check_ok is True and provider.last_check_latency_ms is not None
    assert provider.health == "ok"


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("401", "rejected the API key (HTTP 401)"),
        ("429", "rate limiting requests (HTTP 429); retry in 1 seconds"),
        ("500", "server error (HTTP 500)"),
    ],
)
def test_test_connection_failure_in_plain_words(admin_client: Client, upstream: FakeUpstream, fault: str,
                                                words: str) -> None:
    provider = _fake_provider(upstream)
    upstream.fail_next(fault)
    html = admin_client.post(reverse("provider_test", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert words in html.decode()
    provider.refresh_from_db()
    assert provider.last_check_ok is False and provider.health == "failing"


def test_test_connection_to_nothing_says_could_not_connect(admin_client: Client) -> None:
    provider = Provider.objects.create(name="dead", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    html = admin_client.post(reverse("provider_test", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert "Could not connect to" in html.decode()


def test_sync_models_adds_listed_models_with_default_prices(admin_client: Client, upstream: FakeUpstream) -> None:
    upstream.models = ["gpt-4o-mini", "private-model"]
    provider = Provider.objects.create(name="oa", kind="openai", base_url=upstream.openai_base_url, api_key="sk-x")
    response = admin_client.post(reverse("provider_sync", args=[provider.pk]), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "2 models added" in html
    known = Model.objects.get(provider=provider, name="gpt-4o-mini")
    price = known.current_price()
    assert (price.input, price.output, price.cache_read) == (Decimal("0.15"), Decimal("0.6"), Decimal("0.075"))
    assert price.source == Price.Source.DEFAULT
    assert Model.objects.get(provider=provider, name="private-model").current_price() is None
    assert "no price yet" in html
    # A second sync adds nothing and keeps one price version.
    html = admin_client.post(reverse("provider_sync", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert "0 models added" in html.decode()
    assert known.prices.count() == 1


def test_sync_models_for_anthropic_uses_the_anthropic_listing(admin_client: Client, upstream: FakeUpstream) -> None:
    upstream.models = ["claude-haiku-4-5"]
    provider = Provider.objects.create(name="an", kind="anthropic", base_url=upstream.base_url, api_key="sk-ant-x")
    admin_client.post(reverse("provider_sync", args=[provider.pk]))
    model = Model.objects.get(provider=provider)
    assert model.name == "claude-haiku-4-5"
    assert model.current_price().input == Decimal("1")
    assert upstream.last_request.api_key == "sk-ant-x"


def test_sync_for_local_kinds_prices_at_zero(admin_client: Client, upstream: FakeUpstream) -> None:
    provider = Provider.objects.create(name="ol", kind="ollama", base_url=upstream.openai_base_url)
    admin_client.post(reverse("provider_sync", args=[provider.pk]))
    prices = Price.objects.filter(model__provider=provider)
    assert prices.count() == 2
    assert {p.input for p in prices} == {Decimal(0)} and {p.source for p in prices} == {"free"}


def test_sync_error_is_shown_in_plain_words(admin_client: Client, upstream: FakeUpstream) -> None:
    provider = _fake_provider(upstream)
    upstream.fail_next("401")
    html = admin_client.post(reverse("provider_sync", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert "rejected the API key" in html.decode()
    assert not Model.objects.exists()


def test_price_edit_creates_a_new_version_and_keeps_history(admin_client: Client, upstream: FakeUpstream) -> None:
    provider = Provider.objects.create(name="ol", kind="openai_compatible", base_url=upstream.openai_base_url)
    model = Model.objects.create(provider=provider, name="m")
    url = reverse("model_detail", args=[model.pk])
    admin_client.post(url, {"price-input": "1.5", "price-output": "2", "price-cache_read": ""})
    admin_client.post(url, {"price-input": "1.25", "price-output": "2", "price-cache_read": "0.1"})
    admin_client.post(url, {"price-input": "1.25", "price-output": "2", "price-cache_read": "0.1"})  # same: no-op
    versions = list(model.prices.order_by("effective_from"))
    assert [(p.input, p.cache_read) for p in versions] == [(Decimal("1.5"), None), (Decimal("1.25"), Decimal("0.1"))]
    html = admin_client.get(url).content.decode()
    assert "$1.5" in html and "$1.25" in html and "in force" in html
    assert AuditEvent.objects.filter(action="price.create").count() == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"price-input": "-1", "price-output": "2"}, "greater than or equal to 0"),
        ({"price-input": "cheap", "price-output": "2"}, "Enter a number."),
        ({"price-output": "2"}, "This field is required."),
    ],
)
def test_bad_prices_are_form_errors(admin_client: Client, data: dict, message: str) -> None:
    provider = Provider.objects.create(name="ol", kind="ollama")
    model = Model.objects.create(provider=provider, name="m")
    response = admin_client.post(reverse("model_detail", args=[model.pk]), data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not model.prices.exists()


def test_add_model_by_hand_and_edit_it(admin_client: Client) -> None:
    provider = Provider.objects.create(name="g", kind="groq", api_key="gsk-x")
    response = admin_client.post(reverse("model_add", args=[provider.pk]), {"name": "llama-3.3-70b-versatile",
                                                                             "enabled": "on"})
    model = Model.objects.get(provider=provider)
    assert response["Location"] == reverse("model_detail", args=[model.pk])
    assert model.current_price().output == Decimal("0.79")
    admin_client.post(reverse("model_detail", args=[model.pk]), {"model-display_name": "Llama 70B",
                                                                 "model-context_window": "131072"})
    model.refresh_from_db()
    assert model.display_name == "Llama 70B" and model.enabled is False and model.context_window == 131072
    duplicate = admin_client.post(reverse("model_add", args=[provider.pk]), {"name": "llama-3.3-70b-versatile"})
    assert "already has a model with this name" in duplicate.content.decode()


def test_provider_list_shows_health_counts_and_last_check(admin_client: Client, upstream: FakeUpstream) -> None:
    provider = _fake_provider(upstream)
    Model.objects.create(provider=provider, name="a")
    Model.objects.create(provider=provider, name="b", enabled=False)
    admin_client.post(reverse("provider_test", args=[provider.pk]))
    html = admin_client.get(reverse("provider_list")).content.decode()
    assert ">fake</a>" in html and "OpenAI-compatible URL" in html
    assert "1 / 2" in html and "health-ok" in html and "ago" in html


def test_claude_cli_missing_binary_is_explained(admin_client: Client, settings: object) -> None:
    settings.CLAUDE_CLI_PATH = "/nonexistent/claude"
    provider = Provider.objects.create(name="cli", kind="claude_cli")
    html = admin_client.post(reverse("provider_test", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert "The Claude CLI (&#x27;/nonexistent/claude&#x27;) is not installed on this server" in html.decode()
    html = admin_client.post(reverse("provider_sync", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert "is not installed on this server" in html.decode()
    assert not Model.objects.exists()


def test_claude_cli_present_reports_its_version(admin_client: Client, settings: object, tmp_path) -> None:
    cli = tmp_path / "claude"
    cli.write_text("#!/bin/sh\necho '2.1.0 (Claude Code)'\n")
    cli.chmod(0o755)
    settings.CLAUDE_CLI_PATH = str(cli)
    provider = Provider.objects.create(name="cli", kind="claude_cli")
    html = admin_client.post(reverse("provider_test", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert "Claude CLI 2.1.0 (Claude Code) is installed." in html.decode()
    admin_client.post(reverse("provider_sync", args=[provider.pk]))
    assert set(Model.objects.values_list("name", flat=True)) == {"claude-sonnet-4-5", "claude-opus-4-5",
                                                                 "claude-haiku-4-5"}


def test_provider_page_prices_the_catalog_in_a_fixed_number_of_queries(
        admin_client: Client, django_assert_max_num_queries: object) -> None:
    from datetime import timedelta

    from django.utils import timezone

    provider = Provider.objects.create(name="many", kind="ollama")
    for index in range(20):
        model = Model.objects.create(provider=provider, name=f"m{index}")
        Price.objects.create(model=model, input=Decimal(index), output=Decimal(1))
        # A version scheduled for tomorrow must not count as in force.
        Price.objects.create(model=model, input=Decimal(99), output=Decimal(99),
                             effective_from=timezone.now() + timedelta(days=1))
    admin_client.get(reverse("provider_detail", args=[provider.pk]))  # warm the session
    with django_assert_max_num_queries(12):
        html = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    assert "$19.00" in html and "$99.00" not in html
