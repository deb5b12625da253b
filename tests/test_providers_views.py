"""Provider pages: add per kind, edit, disable, delete or archive, test connection, sync, prices."""

import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from providers.kinds import KINDS
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream
from tests.usage_support import write
from usage import services as usage_services
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
    # The audit log names the kind as the pages do, not by its stored value.
    event = AuditEvent.objects.get(action="provider.create", target_id=str(provider.pk))
    assert event.details == {"kind": "OpenRouter"}


@pytest.mark.parametrize(
    ("kind", "data", "field", "message"),
    [
        ("openai", {"name": "o"}, "api_key", "This field is required."),
        ("openai_compatible", {"name": "c", "base_url": "not a url"}, "base_url", "Enter a valid URL."),
        ("openai_compatible", {"name": "c"}, "base_url", "This field is required."),
        ("cloudflare", {"name": "cf", "api_key": "t"}, "account_id", "This field is required."),
        # Part of every request's path: a slash or a space would move the request elsewhere.
        ("cloudflare", {"name": "cf", "api_key": "t", "account_id": "../../user/tokens"}, "account_id",
         "Enter the account ID as Cloudflare shows it: letters and digits (32 of them), without spaces or slashes."),
        ("cloudflare", {"name": "cf", "api_key": "t", "account_id": "<b>acct</b> x"}, "account_id",
         "Enter the account ID as Cloudflare shows it"),
        ("azure_openai", {"name": "az", "api_key": "k", "base_url": "https://r.openai.azure.com",
                          "api_version": ""}, "api_version", "This field is required."),
        ("ollama", {"name": "bad name!"}, "name", "Use letters, digits"),
        ("ollama", {"name": "x", "timeout_seconds": "0"}, "timeout_seconds", "Enter a number from 1 to 600."),
        ("ollama", {"name": "x", "timeout_seconds": "-5"}, "timeout_seconds", "Enter a number from 1 to 600."),
        ("ollama", {"name": "x", "timeout_seconds": "999999999"}, "timeout_seconds", "Enter a number from 1 to 600."),
        ("ollama", {"name": "x", "timeout_seconds": "1.5"}, "timeout_seconds", "Enter a whole number."),
        ("ollama", {"name": "x", "max_retries": "99999999999"}, "max_retries", "Enter a number from 0 to 10."),
        ("ollama", {"name": "x", "max_retries": "-1"}, "max_retries", "Enter a number from 0 to 10."),
        ("ollama", {"name": "x" * 65}, "name", "at most 64 characters (it has 65)"),
        ("ollama", {"name": "x", "base_url": "http://169.254.169.254/latest"}, "base_url",
         "169.254.169.254 is a link-local address, where cloud metadata services answer."),
        ("vllm", {"name": "x", "base_url": "http://[fd00:ec2::254]/v1"}, "base_url",
         "fd00:ec2::254 is a cloud metadata address."),
        ("openai_compatible", {"name": "x", "base_url": "http://metadata.google.internal/v1"}, "base_url",
         "metadata.google.internal is a cloud metadata service."),
    ],
)
def test_bad_input_gives_a_form_error_and_writes_nothing(admin_client: Client, kind: str, data: dict, field: str,
                                                         message: str) -> None:
    data = {"enabled": "on", "timeout_seconds": "120", "max_retries": "3", **data}
    response = _add(admin_client, kind, **data)
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert Provider.objects.count() == 0


@pytest.mark.parametrize("url", ["http://localhost:11434/v1", "http://127.0.0.1:8001/v1", "http://10.0.0.5:8000/v1"])
def test_local_and_private_provider_urls_stay_allowed(admin_client: Client, url: str) -> None:
    response = _add(admin_client, "ollama", name="local", base_url=url, enabled="on", timeout_seconds="120",
                    max_retries="3")
    assert response.status_code == 302
    assert Provider.objects.get().base_url == url


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
        ("401", "fake rejected the API key (HTTP 401). An admin needs to check the provider&#x27;s key."),
        ("429", "fake is rate limiting requests (HTTP 429); retry in 1 second."),
        ("500", "fake had a server error (HTTP 500); it is usually temporary."),
    ],
)
def test_test_connection_failure_in_plain_words(admin_client: Client, upstream: FakeUpstream, fault: str,
                                                words: str) -> None:
    """Errors name the provider as its admin named it, not by its kind."""
    provider = _fake_provider(upstream)
    upstream.fail_next(fault)
    html = admin_client.post(reverse("provider_test", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert words in html.decode()
    assert "OpenAI-compatible URL" not in html.decode()
    provider.refresh_from_db()
    assert provider.last_check_ok is False and provider.health == "failing"


def test_test_connection_to_nothing_says_could_not_connect(admin_client: Client) -> None:
    provider = Provider.objects.create(name="dead", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    html = admin_client.post(reverse("provider_test", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert "Could not connect to dead: check its base URL and that the server is running." in html.decode()


@pytest.mark.parametrize("view", ["provider_test", "provider_sync"])
def test_a_base_url_with_no_model_list_is_named_not_blamed_on_a_model(admin_client: Client, upstream: FakeUpstream,
                                                                      view: str) -> None:
    """A base URL missing its /v1 answers 404 to the listing: no model is involved, the URL is."""
    provider = Provider.objects.create(name="lab", kind="openai_compatible", base_url=upstream.base_url)
    upstream.fail_next("404")
    html = admin_client.post(reverse(view, args=[provider.pk]), headers={"HX-Request": "true"}).content.decode()
    assert f"lab has no model list at {upstream.base_url} (HTTP 404): check the base URL." in html
    assert "does not know this model" not in html


def test_sync_models_adds_listed_models_with_default_prices(admin_client: Client, upstream: FakeUpstream) -> None:
    upstream.models = ["gpt-4o-mini", "private-model"]
    provider = Provider.objects.create(name="oa", kind="openai", base_url=upstream.openai_base_url, api_key="sk-x")
    response = admin_client.post(reverse("provider_sync", args=[provider.pk]), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "Added 2 models: gpt-4o-mini, private-model; 1 has no price yet: private-model." in html
    known = Model.objects.get(provider=provider, name="gpt-4o-mini")
    price = known.current_price()
    assert (price.input, price.output, price.cache_read) == (Decimal("0.15"), Decimal("0.6"), Decimal("0.075"))
    assert price.source == Price.Source.DEFAULT
    assert Model.objects.get(provider=provider, name="private-model").current_price() is None
    assert "no price yet" in html
    # A second sync adds nothing and keeps one price version.
    html = admin_client.post(reverse("provider_sync", args=[provider.pk]), headers={"HX-Request": "true"}).content
    assert "Sync done: no new models." in html.decode()
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


def _rows(html: str, cell: str = "td") -> list[list[str]]:
    """The text of each table row's cells, tags stripped."""
    return [[re.sub(r"<[^>]+>", "", text).strip() for text in re.findall(rf"<{cell}[^>]*>(.*?)</{cell}>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S)]


def _row_cells(html: str, marker: str, cell: str = "td") -> list[str]:
    """The cells of the one row that holds `marker`."""
    rows = [row for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S) if marker in row]
    assert len(rows) == 1, rows
    return _rows(f"<tr>{rows[0]}</tr>", cell)[0]


def _prices(tiers: list[dict[str, str]] = (), **fields: str) -> dict[str, str]:
    """The price form's POST data: `fields` without their "price-" prefix, and one row per tier."""
    data = {f"price-{name}": value for name, value in fields.items()}
    data.update({"price-tiers-TOTAL_FORMS": str(len(tiers)), "price-tiers-INITIAL_FORMS": "0"})
    for index, tier in enumerate(tiers):
        data.update({f"price-tiers-{index}-{name}": value for name, value in tier.items()})
    return data


GEMINI_TIER = {"above": "200000", "input": "2.5", "output": "15", "cache_read": "0.625", "cache_write": "",
               "cache_write_1h": "5"}


@pytest.fixture
def priced_model() -> Model:
    provider = Provider.objects.create(name="ol", kind="ollama")
    return Model.objects.create(provider=provider, name="m")


def test_price_edit_creates_a_new_version_and_keeps_history(admin_client: Client, upstream: FakeUpstream) -> None:
    provider = Provider.objects.create(name="ol", kind="openai_compatible", base_url=upstream.openai_base_url)
    model = Model.objects.create(provider=provider, name="m")
    url = reverse("model_detail", args=[model.pk])
    admin_client.post(url, _prices(input="1.5", output="2", cache_read=""))
    admin_client.post(url, _prices(input="1.25", output="2", cache_read="0.1"))
    admin_client.post(url, _prices(input="1.25", output="2", cache_read="0.1"))  # same: no-op
    versions = list(model.prices.order_by("effective_from"))
    assert [(p.input, p.cache_read) for p in versions] == [(Decimal("1.5"), None), (Decimal("1.25"), Decimal("0.1"))]
    html = admin_client.get(url).content.decode()
    assert "$1.5" in html and "$1.25" in html and "in force" in html
    assert AuditEvent.objects.filter(action="price.create").count() == 2


def test_price_with_both_write_durations_and_tiers_is_one_version(admin_client: Client, priced_model: Model) -> None:
    url = reverse("model_detail", args=[priced_model.pk])
    response = admin_client.post(url, _prices(
        input="3", output="15", cache_read="0.3", cache_write="3.75", cache_write_1h="6",
        tiers=[{"above": "200000", "input": "6", "output": "22.5", "cache_read": "0.6", "cache_write": "7.5",
                "cache_write_1h": "12"},
               {"above": "", "input": "", "output": "", "cache_read": "", "cache_write": "",
                "cache_write_1h": ""}],
    ))
    assert response.status_code == 302
    price = priced_model.prices.get()
    assert price.as_dict() == {
        "input": Decimal(3), "output": Decimal(15), "cache_read": Decimal("0.3"), "cache_write": Decimal("3.75"),
        "cache_write_1h": Decimal(6),
        "tiers": [{"above": 200000, "input": Decimal(6), "output": Decimal("22.5"), "cache_read": Decimal("0.6"),
                   "cache_write": Decimal("7.5"), "cache_write_1h": Decimal(12)}],
    }
    assert price.created_by is not None and price.source == Price.Source.ADMIN
    event = AuditEvent.objects.get(action="price.create")
    assert event.details["cache_write_1h"] == "6" and event.details["tiers"][0]["above"] == "200000"


@pytest.mark.parametrize("when", ["0001-01-01T00:00", "1999-12-31T23:59", "9999-12-31T23:59"])
def test_a_price_version_starts_within_reach_of_the_calls_it_prices(admin_client: Client, priced_model: Model,
                                                                   when: str) -> None:
    before = priced_model.prices.count()
    response = admin_client.post(reverse("model_detail", args=[priced_model.pk]),
                                 _prices(input="1", output="2", effective_from=when))
    assert response.status_code == 200
    assert response.context["price_form"].errors["effective_from"] == [
        f"Enter a time from 2000 to {timezone.now().year + 10}."]
    assert priced_model.prices.count() == before


def test_history_shows_the_1h_write_and_each_versions_tiers(admin_client: Client, priced_model: Model) -> None:
    url = reverse("model_detail", args=[priced_model.pk])
    admin_client.post(url, _prices(input="1.25", output="10", cache_write_1h="2.5", tiers=[GEMINI_TIER]))
    admin_client.post(url, _prices(input="1.5", output="10"))

    html = admin_client.get(url).content.decode()

    head = _row_cells(html, "<th>Effective from</th>", cell="th")
    assert head[1:6] == ["Input", "Output", "Cache read", "Cache write 5 min", "Cache write 1 h"]
    versions = [cells for cells in _rows(html) if "Set by an admin" in cells]
    assert [cells[1:6] for cells in versions] == [["$1.50", "$10.00", "—", "—", "—"],
                                                 ["$1.25", "$10.00", "—", "—", "$2.50"]]
    # The tier is listed once, under the older version it belongs to.
    assert [cells[:6] for cells in _rows(html) if cells and cells[0].startswith("above")] == [
        ["above 200,000 prompt tokens", "$2.50", "$15.00", "$0.625", "—", "$5.00"]]
    assert html.index("$1.25") < html.index("above 200,000 prompt tokens")


def test_price_form_is_prefilled_with_the_version_in_force_and_its_tiers(admin_client: Client,
                                                                        priced_model: Model) -> None:
    url = reverse("model_detail", args=[priced_model.pk])
    admin_client.post(url, _prices(input="1.25", output="10", cache_write_1h="2.5", tiers=[GEMINI_TIER]))

    form = admin_client.get(url).context["price_form"]

    assert form["input"].value() == Decimal("1.25") and form["cache_write_1h"].value() == Decimal("2.5")
    assert form.tiers.total_form_count() == 2  # the tier in force and an empty row for another
    first, empty = form.tiers.forms
    assert first["above"].value() == 200000 and first["output"].value() == Decimal(15)
    assert first["cache_write"].value() is None
    assert empty["above"].value() is None and empty["input"].value() is None


def test_resubmitting_the_prefilled_form_adds_no_version(admin_client: Client, priced_model: Model) -> None:
    url = reverse("model_detail", args=[priced_model.pk])
    admin_client.post(url, _prices(input="1.25", output="10", tiers=[GEMINI_TIER]))
    # As a browser sends the prefilled form back: the stored digits, the empty row, INITIAL_FORMS as rendered.
    data = _prices(input="1.250000000000", output="10.000000000000",
                   tiers=[{**GEMINI_TIER, "above": "200000", "input": "2.500000"}, {}])
    data["price-tiers-INITIAL_FORMS"] = "1"

    response = admin_client.post(url, data, follow=True)

    assert "already the prices in force" in response.content.decode()
    assert priced_model.prices.count() == 1


def test_clearing_a_tier_row_drops_the_tier_from_the_new_version(admin_client: Client, priced_model: Model) -> None:
    url = reverse("model_detail", args=[priced_model.pk])
    admin_client.post(url, _prices(input="1.25", output="10", tiers=[GEMINI_TIER]))
    cleared = dict.fromkeys(GEMINI_TIER, "")
    data = _prices(input="1.25", output="10", tiers=[cleared])
    data["price-tiers-INITIAL_FORMS"] = "1"  # the cleared row was a prefilled one

    assert admin_client.post(url, data).status_code == 302

    assert priced_model.prices.count() == 2
    assert priced_model.current_price().as_dict()["tiers"] == []


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([{"above": "0", "input": "1", "output": "2"}], "Enter a number from 1 to 2,147,483,647."),
        ([{"above": "-5", "input": "1", "output": "2"}], "Enter a number from 1 to 2,147,483,647."),
        ([{"above": "99999999999", "input": "1", "output": "2"}], "Enter a number from 1 to 2,147,483,647."),
        ([{"above": "1.5", "input": "1", "output": "2"}], "Enter a whole number."),
        ([{"input": "1", "output": "2"}], "This field is required."),
        ([{"above": "1000", "input": "1"}], "This field is required."),
        ([{"above": "1000", "output": "2"}], "This field is required."),
        ([{"above": "1000", "input": "1", "output": "2", "cache_write_1h": "-1"}],
         "Enter a price from 0 up: prices cannot be negative."),
        ([{"above": "1000", "input": "1", "output": "2"}, {"above": "1000", "input": "3", "output": "4"}],
         "Another tier already starts above 1,000 prompt tokens."),
    ],
)
def test_bad_tiers_are_form_errors_and_nothing_is_saved(admin_client: Client, priced_model: Model,
                                                        tiers: list[dict[str, str]], message: str) -> None:
    response = admin_client.post(reverse("model_detail", args=[priced_model.pk]),
                                 _prices(input="1", output="2", tiers=tiers))
    assert response.status_code == 200
    errors = [error for form in response.context["price_form"].tiers.forms for field in form.errors.values()
              for error in field]
    assert message in errors
    assert message.replace("'", "&#x27;") in response.content.decode()
    assert not priced_model.prices.exists()


def test_a_tier_must_price_each_cache_class_its_version_prices(admin_client: Client, priced_model: Model) -> None:
    """Blank in a tier, a cache price would fall back to the tier's input price: Gemini's cache reads, a quarter
    of its input price, would cost four times as much above the threshold."""
    response = admin_client.post(reverse("model_detail", args=[priced_model.pk]), _prices(
        input="0.1", output="0.4", cache_read="0.025",
        tiers=[{"above": "100000", "input": "0.2", "output": "0.8"}]))
    [tier] = response.context["price_form"].tiers.forms
    assert tier.errors["cache_read"] == ["The version sets a cache read price: set this tier's too (blank, it would "
                                         "be the tier's input price)."]
    assert "cache_write" not in tier.errors  # the version sets none: the tier may leave it blank too
    assert not priced_model.prices.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"input": "-1", "output": "2"}, "Enter a price from 0 up: prices cannot be negative."),
        ({"input": "cheap", "output": "2"}, "Enter a price in USD per 1M tokens, such as 0.15."),
        ({"input": "123456789", "output": "2"}, "Enter a price below 100,000,000 (USD per 1M tokens)."),
        ({"output": "2"}, "This field is required."),
        ({"input": "1", "output": "2", "cache_write_1h": "-0.5"},
         "Enter a price from 0 up: prices cannot be negative."),
        ({"input": "1", "output": "2", "cache_read": "0.0000000000001"}, "Use at most 12 decimal places."),
    ],
)
def test_bad_prices_are_form_errors(admin_client: Client, priced_model: Model, data: dict, message: str) -> None:
    response = admin_client.post(reverse("model_detail", args=[priced_model.pk]), _prices(**data))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not priced_model.prices.exists()


def test_a_valid_version_with_a_bad_tier_is_not_saved_in_part(admin_client: Client, priced_model: Model) -> None:
    response = admin_client.post(reverse("model_detail", args=[priced_model.pk]),
                                 _prices(input="1", output="2", tiers=[{"above": "1000", "input": "1"}]))
    assert response.status_code == 200
    assert response.context["price_form"].errors == {}
    assert not priced_model.prices.exists()


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
    assert "1 / 2" in html and "health-ok" in html and ">just now</time>" in html


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


def test_catalog_shows_the_1h_write_price_and_which_models_are_tiered(admin_client: Client,
                                                                      priced_model: Model) -> None:
    url = reverse("model_detail", args=[priced_model.pk])
    tier = {**GEMINI_TIER, "cache_write": "3.125"}
    admin_client.post(url, _prices(input="1.25", output="10", cache_write="1.5625", cache_write_1h="2.5",
                                   tiers=[tier, {**tier, "above": "1000000"}]))
    plain = Model.objects.create(provider=priced_model.provider, name="plain")
    Price.objects.create(model=plain, input=Decimal(1), output=Decimal(2))

    html = admin_client.get(reverse("provider_detail", args=[priced_model.provider.pk])).content.decode()

    assert _row_cells(html, "<th>Model</th>", cell="th")[4:] == ["Input", "Output", "Cache read", "Cache write 5 min",
                                                                  "Cache write 1 h"]
    tiered = _row_cells(html, f'href="{url}"')
    assert tiered[4:] == ["$1.25", "$10.00", "—", "$1.5625", "$2.50"]
    assert "priced higher above 200,000, 1,000,000 prompt tokens" in " ".join(tiered[0].split())
    untiered = _row_cells(html, f'href="{reverse("model_detail", args=[plain.pk])}"')
    assert untiered[3:] == ["—", "$1.00", "$2.00", "—", "—", "—"] and "priced higher" not in untiered[0]


def _unpriced_calls(model: Model, days_ago: int, calls: int, tokens: int = 100) -> None:
    for _ in range(calls):
        write(model, created_at=timezone.now() - timedelta(days=days_ago), input_tokens=tokens - 20,
              output_tokens=20)


def test_catalog_lists_the_models_called_without_a_price(admin_client: Client) -> None:
    first = Provider.objects.create(name="first", kind="openai_compatible", base_url="http://127.0.0.1:1/v1")
    second = Provider.objects.create(name="second", kind="openai_compatible", base_url="http://127.0.0.1:1/v1")
    never_priced = Model.objects.create(provider=first, name="never-priced")
    priced_later = Model.objects.create(provider=second, name="priced-later")
    always_priced = Model.objects.create(provider=second, name="always-priced")
    Price.objects.create(model=always_priced, input=Decimal(1), output=Decimal(1),
                         effective_from=timezone.now().replace(year=2000))
    _unpriced_calls(never_priced, days_ago=3, calls=2, tokens=1000)
    _unpriced_calls(never_priced, days_ago=1, calls=1, tokens=500)
    _unpriced_calls(priced_later, days_ago=0, calls=1, tokens=70)
    _unpriced_calls(always_priced, days_ago=0, calls=4)
    Price.objects.create(model=priced_later, input=Decimal(1), output=Decimal(1))

    html = admin_client.get(reverse("provider_list")).content.decode()

    notice = html[html.index('id="unpriced"'):]
    notice = notice[:notice.index("</section>")]
    rows = [cells for cells in _rows(notice) if cells]
    days = [timezone.localdate() - timedelta(days=n) for n in (3, 1, 0)]
    assert [cells[:4] for cells in rows] == [
        ["first/never-priced", "3", "2,500", f"{days[0]:%Y-%m-%d} to {days[1]:%Y-%m-%d}"],
        ["second/priced-later", "1", "70", f"{days[2]:%Y-%m-%d}"],
    ]
    assert rows[0][4] == "Set a price"
    assert rows[1][4] == "Change the price · Preview re-pricing"
    assert f'href="{reverse("model_detail", args=[never_priced.pk])}#price-form"' in notice
    assert (f'href="{reverse("usage_reprice", args=[priced_later.pk])}?since={days[2]:%Y-%m-%d}&amp;'
            f'until={days[2]:%Y-%m-%d}"') in notice

    # A provider's page lists only its own models.
    html = admin_client.get(reverse("provider_detail", args=[second.pk])).content.decode()
    assert "second/priced-later" in html and "first/never-priced" not in html
    html = admin_client.get(reverse("provider_detail", args=[first.pk])).content.decode()
    assert "first/never-priced" in html and "second/priced-later" not in html


def test_the_unpriced_notice_goes_once_the_calls_are_repriced(admin_client: Client) -> None:
    provider = Provider.objects.create(name="p", kind="openai_compatible", base_url="http://127.0.0.1:1/v1")
    model = Model.objects.create(provider=provider, name="m")
    _unpriced_calls(model, days_ago=1, calls=2)
    assert 'id="unpriced"' in admin_client.get(reverse("provider_list")).content.decode()

    since = timezone.now() - timedelta(days=2)
    Price.objects.create(model=model, input=Decimal(1), output=Decimal(1), effective_from=since)
    usage_services.usage_reprice(model=model, since=since, actor=None)

    assert 'id="unpriced"' not in admin_client.get(reverse("provider_list")).content.decode()
    assert 'id="unpriced"' not in admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()


@pytest.mark.parametrize("role", ["finance", "member"])
def test_only_admins_see_the_catalog_and_its_notice(client_as: Callable[[str], Client], role: str) -> None:
    provider = Provider.objects.create(name="p", kind="openai_compatible", base_url="http://127.0.0.1:1/v1")
    _unpriced_calls(Model.objects.create(provider=provider, name="m"), days_ago=0, calls=1)
    client = client_as(role)
    assert client.get(reverse("provider_list")).status_code == 403
    assert client.get(reverse("provider_detail", args=[provider.pk])).status_code == 403


def test_django_admin_lists_each_versions_1h_write_and_tiers(client_as: Callable[[str], Client],
                                                             priced_model: Model) -> None:
    client = client_as("superuser")
    client.post(reverse("model_detail", args=[priced_model.pk]),
                _prices(input="1.25", output="10", cache_write_1h="2.5", tiers=[GEMINI_TIER]))

    html = client.get(reverse("admin:providers_model_change", args=[priced_model.pk])).content.decode()

    assert "Cache write 1h" in html and "2.500000000000" in html
    assert "above 200,000: input 2.5, output 15, cache_read 0.625" in html
