"""Config as code: load_yaml, config_import, config_export and the import_config / export_config commands."""

import copy
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import connections
from django.db.models import TextField
from django.db.models.functions import Cast
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import AuditEvent
from aspweb.config import (
    ConfigError,
    Report,
    config_export,
    config_import,
    dump_yaml,
    load_yaml,
)
from providers import services
from providers.config import key_placeholder
from providers.kinds import KINDS
from providers.models import Model, Price, Provider

EXAMPLE = """\
providers:
  - name: local-llm
    kind: openai_compatible
    base_url: http://127.0.0.1:9100/v1
    api_key: ${LOCAL_LLM_KEY}
    models:
      - name: small-model
        prices: {input: 0.15, output: 0.60, cache_read: 0.075}   # USD per 1M tokens
"""
SECRET = "sk-local-secret-0123456789"
ENV = {"LOCAL_LLM_KEY": SECRET}


def run_import(text: str, env: dict[str, str] | None = None, **kwargs: Any) -> Report:
    return config_import(load_yaml(text, ENV if env is None else env), actor="import_config", **kwargs)


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        run_import(text, env)
    return caught.value.errors


def provider_file(*lines: str) -> str:
    """A file with one provider entry made of `lines` (each a `key: value` of that entry)."""
    return "providers:\n  - " + "\n    ".join(lines) + "\n"


def stored_ciphertext(provider: Provider) -> str:
    # Cast to plain text skips the field's decryption, giving the column as stored.
    return Provider.objects.filter(pk=provider.pk).annotate(
        raw=Cast("api_key", TextField())).values_list("raw", flat=True).get()


def snapshot() -> dict[str, Any]:
    """Everything an import could touch, to compare before and after."""
    return {
        "providers": list(Provider.objects.order_by("pk").values_list("pk", "updated_at")),
        "models": list(Model.objects.order_by("pk").values_list("pk", "updated_at")),
        "prices": list(Price.objects.order_by("pk").values_list("pk", flat=True)),
        "audit": AuditEvent.objects.count(),
        "keys": [stored_ciphertext(p) for p in Provider.objects.order_by("pk")],
    }


# The example -----------------------------------------------------------------------------------------


def test_example_creates_provider_with_encrypted_key_and_config_price(db: None) -> None:
    report = run_import(EXAMPLE)

    provider = Provider.objects.get(name="local-llm")
    assert provider.kind == "openai_compatible"
    assert provider.base_url == "http://127.0.0.1:9100/v1"
    assert provider.api_key.reveal() == SECRET
    ciphertext = stored_ciphertext(provider)
    assert ciphertext.startswith("fernet1:")
    assert SECRET not in ciphertext
    model = provider.models.get()
    assert model.name == "small-model"
    price = model.prices.get()
    assert price.as_dict() == {"input": Decimal("0.15"), "output": Decimal("0.60"),
                               "cache_read": Decimal("0.075"), "cache_write": None, "cache_write_1h": None,
                               "tiers": []}
    assert price.source == Price.Source.CONFIG
    assert report.created == ["provider local-llm", "model local-llm/small-model"]
    assert report.updated == [] and report.unchanged == []


def test_import_is_audited_as_import_config(db: None) -> None:
    run_import(EXAMPLE)

    events = list(AuditEvent.objects.order_by("id").values_list("action", "actor_label", "actor"))
    assert events == [
        ("provider.create", "import_config", None),
        ("model.create", "import_config", None),
        ("price.create", "import_config", None),
    ]
    assert all(SECRET not in str(e.details) for e in AuditEvent.objects.all())


def test_import_by_a_user_is_audited_as_that_user(admin_user: Any) -> None:
    config_import(load_yaml(EXAMPLE, ENV), actor=admin_user)

    assert set(AuditEvent.objects.values_list("actor", flat=True)) == {admin_user.pk}


def test_reimport_changes_nothing(db: None) -> None:
    run_import(EXAMPLE)
    before = snapshot()

    report = run_import(EXAMPLE)

    assert snapshot() == before
    assert not report.changed
    assert report.unchanged == ["provider local-llm", "model local-llm/small-model"]


def test_dry_run_writes_nothing_and_reports_what_it_would_do(db: None) -> None:
    report = run_import(EXAMPLE, dry_run=True)

    assert report.created == ["provider local-llm", "model local-llm/small-model"]
    assert "dry run" in report.summary()
    assert Provider.objects.count() == Model.objects.count() == Price.objects.count() == 0
    assert AuditEvent.objects.count() == 0


# Environment variables -------------------------------------------------------------------------------


def test_unset_variable_names_it_and_where_and_writes_nothing(db: None) -> None:
    errors = errors_of(EXAMPLE, env={})

    assert errors == ["providers[0] (local-llm).api_key: environment variable LOCAL_LLM_KEY is not set"]
    assert Provider.objects.count() == 0


def test_every_unset_variable_is_reported() -> None:
    text = EXAMPLE + "  - name: other\n    kind: groq\n    api_key: ${GROQ_KEY}\n    title: ${TITLE}\n"

    with pytest.raises(ConfigError) as caught:
        load_yaml(text, {})

    assert caught.value.errors == [
        "providers[0] (local-llm).api_key: environment variable LOCAL_LLM_KEY is not set",
        "providers[1] (other).api_key: environment variable GROQ_KEY is not set",
        "providers[1] (other).title: environment variable TITLE is not set",
    ]


def test_variables_are_substituted_inside_strings_and_dollar_dollar_escapes() -> None:
    text = "providers:\n  - name: x\n    base_url: http://${HOST}:9100/v1\n    title: cost $${NOT_A_VAR}\n"

    data = load_yaml(text, {"HOST": "10.0.0.7"})

    assert data["providers"][0]["base_url"] == "http://10.0.0.7:9100/v1"
    assert data["providers"][0]["title"] == "cost ${NOT_A_VAR}"


def test_malformed_reference_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml("providers:\n  - name: x\n    api_key: ${LOCAL KEY}\n", {"LOCAL": "a"})

    assert len(caught.value.errors) == 1
    assert caught.value.errors[0].startswith("providers[0] (x).api_key: malformed reference '${LOCAL KEY}'")


def test_invalid_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml("providers: [unclosed\n", {})

    assert caught.value.errors[0].startswith("invalid YAML:")


# Validation ------------------------------------------------------------------------------------------


def test_unknown_kind_lists_known_kinds(db: None) -> None:
    errors = errors_of(provider_file("name: x", "kind: foo"))

    assert errors == [f"providers[0] (x).kind: unknown kind 'foo'; known kinds: {', '.join(KINDS)}"]
    assert errors[0].startswith("providers[0] (x).kind: unknown kind 'foo'; known kinds: anthropic, openai, ")


def test_invalid_url_is_reported_by_provider_and_field(db: None) -> None:
    text = EXAMPLE + "  - name: groq\n    kind: groq\n    api_key: gsk-1\n    base_url: not a url\n"

    assert errors_of(text) == ["providers[1] (groq).base_url: Enter a valid URL."]
    assert Provider.objects.count() == 0


def test_kind_that_needs_a_key_requires_one(db: None) -> None:
    assert errors_of(provider_file("name: oa", "kind: openai")) == [
        "providers[0] (oa).api_key: This field is required."
    ]


def test_kind_extra_fields_are_validated_and_stored(db: None) -> None:
    assert errors_of(provider_file("name: cf", "kind: cloudflare", "api_key: t")) == [
        "providers[0] (cf).account_id: This field is required."
    ]
    assert errors_of(provider_file("name: cf", "kind: cloudflare", "api_key: t", "account_id: a/b")) == [
        "providers[0] (cf).account_id: Enter the account ID as Cloudflare shows it: letters and digits (32 of them), "
        "without spaces or slashes."
    ]

    run_import(provider_file("name: or", "kind: openrouter", "api_key: k", "referer: https://example.com",
                             "title: Team"))
    run_import(provider_file("name: az", "kind: azure_openai", "api_key: k", "base_url: https://r.openai.azure.com"))

    assert Provider.objects.get(name="or").extra == {"referer": "https://example.com", "title": "Team"}
    # The form's default fills a setting the file leaves out.
    assert Provider.objects.get(name="az").extra == {"api_version": "2024-10-21"}


def test_duplicate_provider_name_in_file(db: None) -> None:
    text = EXAMPLE + "  - name: local-llm\n    kind: ollama\n"

    assert errors_of(text) == [
        "providers[1] (local-llm).name: provider 'local-llm' appears twice in the file "
        "(also providers[0] (local-llm))"
    ]
    assert Provider.objects.count() == 0


def test_duplicate_model_in_file(db: None) -> None:
    text = EXAMPLE + "      - name: other\n      - name: small-model\n"

    errors = errors_of(text)

    assert errors == ["providers[0] (local-llm).models[2] (small-model).name: model 'small-model' "
                      "appears twice for this provider "
                      "(also providers[0] (local-llm).models[0] (small-model))"]


def test_negative_and_non_numeric_prices(db: None) -> None:
    text = provider_file("name: x", "kind: ollama", "models:",
                         "  - name: a", "  - name: b", "  - name: gpt-4o",
                         "    prices: {input: -1, output: lots, cache_read: 0.1234567890123}")

    assert errors_of(text) == [
        "providers[0] (x).models[2] (gpt-4o).prices.input: Enter a price from 0 up: prices cannot be negative.",
        "providers[0] (x).models[2] (gpt-4o).prices.output: Enter a price in USD per 1M tokens, such as 0.15.",
        "providers[0] (x).models[2] (gpt-4o).prices.cache_read: Use at most 12 decimal places.",
    ]
    assert Model.objects.count() == 0


def test_missing_output_price_is_required(db: None) -> None:
    text = provider_file("name: x", "kind: ollama", "models:", "  - name: m", "    prices: {input: 1}")

    assert errors_of(text) == ["providers[0] (x).models[0] (m).prices.output: This field is required."]


def test_unknown_keys_at_every_level_are_errors(db: None) -> None:
    text = "alerts: []\n" + provider_file(
        "name: x", "kind: openai_compatible", "base_ulr: http://localhost:1/v1", "models:",
        "  - name: m", "    context_windw: 8", "    prices: {input: 1, output: 2, cached: 1}",
    )

    errors = errors_of(text)

    assert errors[0] == "alerts: unknown section; supported sections: teams, providers, routes, budgets"
    assert errors[1].startswith("providers[0] (x).base_ulr: unknown setting; kind openai_compatible takes: "
                                "name, kind, base_url, ")
    # The base_url the file misspelt is still missing, and that is said too.
    assert errors[2] == "providers[0] (x).base_url: This field is required."
    assert errors[3] == ("providers[0] (x).models[0] (m).context_windw: unknown setting; model settings are: "
                         "name, display_name, type, enabled, context_window, max_output_tokens, prices")
    assert errors[4] == ("providers[0] (x).models[0] (m).prices.cached: unknown setting; "
                         "prices (USD per 1M tokens) are: input, output, cache_read, cache_write, cache_write_1h, "
                         "tiers")
    assert len(errors) == 5


def test_settings_the_kind_does_not_take_are_unknown(db: None) -> None:
    errors = errors_of(provider_file("name: x", "kind: ollama", "api_key: k", "account_id: a"))

    assert [e.split(";")[0] for e in errors] == [
        "providers[0] (x).api_key: unknown setting", "providers[0] (x).account_id: unknown setting",
    ]


def test_booleans_must_be_booleans(db: None) -> None:
    errors = errors_of(provider_file("name: x", "kind: ollama", "enabled: maybe"))

    assert errors == ["providers[0] (x).enabled: expected true or false, not 'maybe'"]


def test_all_errors_are_collected_and_nothing_is_written(db: None) -> None:
    text = EXAMPLE + provider_file("name: bad name", "kind: foo").removeprefix("providers:\n") + \
        provider_file("name: g", "kind: groq", "timeout_seconds: 0").removeprefix("providers:\n")

    errors = errors_of(text)

    assert errors[0].startswith("providers[1] (bad name).kind: unknown kind 'foo'")
    assert errors[1:] == [
        "providers[2] (g).timeout_seconds: Enter a number from 1 to 600.",
        "providers[2] (g).api_key: This field is required.",
    ]
    assert Provider.objects.count() == 0


def test_a_metadata_base_url_is_refused_on_import(db: None) -> None:
    errors = errors_of(provider_file("name: lab", "kind: ollama", "base_url: http://169.254.169.254/v1"))

    assert errors == ["providers[0] (lab).base_url: 169.254.169.254 is a link-local address, where cloud metadata "
                      "services answer. Provider URLs may be local or private, but never link-local or a cloud "
                      "metadata service."]
    assert Provider.objects.count() == 0


def test_a_bad_provider_name_is_reported_by_the_form(db: None) -> None:
    errors = errors_of(provider_file("name: bad name", "kind: ollama"))

    assert len(errors) == 1
    assert errors[0].startswith("providers[0] (bad name).name: Use letters, digits")


def test_top_level_must_be_a_mapping_and_providers_a_list(db: None) -> None:
    with pytest.raises(ConfigError):
        load_yaml("- a\n- b\n", {})
    assert errors_of("providers: {name: x}\n") == ["providers: expected a list of providers, not a mapping"]


# Updating what exists --------------------------------------------------------------------------------


def test_changed_settings_update_the_provider_and_audit_the_fields(db: None) -> None:
    run_import(EXAMPLE)
    provider = Provider.objects.get()
    old_ciphertext = stored_ciphertext(provider)

    report = run_import(EXAMPLE.replace("9100", "9200").replace("base_url", "max_retries: 5\n    base_url"),
                        env={"LOCAL_LLM_KEY": "sk-rotated-key-9999"})

    provider.refresh_from_db()
    assert provider.base_url == "http://127.0.0.1:9200/v1"
    assert provider.max_retries == 5
    assert provider.api_key.reveal() == "sk-rotated-key-9999"
    assert stored_ciphertext(provider) != old_ciphertext
    event = AuditEvent.objects.get(action="provider.update")
    assert event.details == {"fields": ["api_key", "base_url", "max_retries"]}
    assert report.updated == ["provider local-llm (api_key, base_url, max_retries)"]
    assert report.unchanged == ["model local-llm/small-model"]


def test_settings_left_out_keep_their_values_and_other_providers_are_left_alone(db: None) -> None:
    run_import(EXAMPLE)
    provider = Provider.objects.get()
    services.provider_set_enabled(provider=provider, enabled=False, actor="test")
    other = Provider.objects.create(name="elsewhere", kind="ollama")
    before = snapshot()

    # No api_key, no enabled, no models: the stored key, the disabled state and the model stay.
    report = run_import(provider_file("name: local-llm", "kind: openai_compatible",
                                      "base_url: http://127.0.0.1:9100/v1"))

    assert snapshot() == before
    provider.refresh_from_db()
    assert provider.enabled is False
    assert provider.api_key.reveal() == SECRET
    assert Provider.objects.filter(pk=other.pk).exists()
    assert report.unchanged == ["provider local-llm"]


def test_kind_of_an_existing_provider_cannot_change(db: None) -> None:
    run_import(EXAMPLE)

    errors = errors_of(provider_file("name: local-llm", "kind: vllm"))

    assert errors == ["providers[0] (local-llm).kind: provider 'local-llm' exists with kind "
                      "'openai_compatible', and a provider's kind cannot change: "
                      "archive it and add a new one"]


def test_archived_provider_is_not_matched(db: None) -> None:
    archived = Provider.objects.create(name="local-llm", kind="ollama", archived_at="2024-01-01T00:00:00Z")

    run_import(EXAMPLE)

    assert Provider.objects.active().get().kind == "openai_compatible"
    archived.refresh_from_db()
    assert archived.kind == "ollama" and archived.models.count() == 0


def test_model_settings_update_and_prices_version_only_on_change(db: None) -> None:
    run_import(EXAMPLE)
    model = Model.objects.get()

    report = run_import(EXAMPLE.replace(
        "      - name: small-model\n",
        "      - name: small-model\n        display_name: Small\n        enabled: false\n"
        "        context_window: 8192\n",
    ).replace("input: 0.15", "input: 0.2"))

    model.refresh_from_db()
    assert (model.display_name, model.enabled, model.context_window) == ("Small", False, 8192)
    assert model.prices.count() == 2
    assert model.current_price().input == Decimal("0.2")
    assert AuditEvent.objects.filter(action="model.update").count() == 1
    assert report.updated == ["model local-llm/small-model (display_name, enabled, context_window, prices)"]


def test_model_without_prices_gets_the_genai_prices_default(db: None) -> None:
    run_import(provider_file("name: oa", "kind: openai", "api_key: sk-x", "models:", "  - name: gpt-4o",
                             "  - name: gpt-4o-mini", "    prices: {input: 1, output: 2}"))

    default = Model.objects.get(name="gpt-4o").prices.get()
    expected = services.default_price(KINDS["openai"], "gpt-4o")
    assert expected is not None
    assert default.source == Price.Source.DEFAULT
    assert default.as_dict() == expected
    # A model with prices in the file starts its history at them, not at a default it supersedes.
    configured = Model.objects.get(name="gpt-4o-mini").prices.get()
    assert (configured.source, configured.input, configured.output) == (Price.Source.CONFIG, 1, 2)


def test_yaml_numbers_become_exact_decimals(db: None) -> None:
    run_import(provider_file("name: x", "kind: ollama", "models:", "  - name: m",
                             "    prices: {input: 0.3, output: 1234.123456, cache_write: '0.000001'}"))

    price = Price.objects.get()
    assert (price.input, price.output, price.cache_write) == (Decimal("0.3"), Decimal("1234.123456"),
                                                              Decimal("0.000001"))


TIER = "{above: 200000, input: 6, output: 22.5, cache_read: 0.6, cache_write: 7.5, cache_write_1h: 12}"
TIERED = provider_file(
    "name: x", "kind: ollama", "models:", "  - name: m", "    prices:",
    "      input: 3", "      output: 15", "      cache_read: 0.3", "      cache_write: 3.75",
    "      cache_write_1h: 6", f"      tiers: [{TIER}]",
)


def test_prices_take_the_1h_write_and_long_context_tiers(db: None) -> None:
    report = run_import(TIERED)

    price = Price.objects.get()
    assert price.as_dict() == {
        "input": Decimal(3), "output": Decimal(15), "cache_read": Decimal("0.3"), "cache_write": Decimal("3.75"),
        "cache_write_1h": Decimal(6),
        "tiers": [{"above": 200000, "input": Decimal(6), "output": Decimal("22.5"), "cache_read": Decimal("0.6"),
                   "cache_write": Decimal("7.5"), "cache_write_1h": Decimal(12)}],
    }
    assert price.source == Price.Source.CONFIG
    assert report.created == ["provider x", "model x/m"]


def test_tiers_version_only_when_they_change(db: None) -> None:
    run_import(TIERED)

    assert not run_import(TIERED).changed
    higher = "{above: 1000000, input: 9, output: 30, cache_read: 0.9, cache_write: 11.25, cache_write_1h: 18}"
    assert run_import(TIERED.replace(f"[{TIER}]", f"[{higher}, {TIER}]")).updated == ["model x/m (prices)"]
    # Tiers in another order are the same tiers.
    assert not run_import(TIERED.replace(f"[{TIER}]", f"[{TIER}, {higher}]")).changed
    # A file that leaves the tiers out means a version without them, as it does for a cache price.
    report = run_import(TIERED.replace(f"      tiers: [{TIER}]\n", ""))
    assert report.updated == ["model x/m (prices)"]
    model = Model.objects.get()
    assert [len(p.tier_list) for p in model.prices.order_by("effective_from", "id")] == [1, 2, 0]
    assert model.current_price().as_dict()["tiers"] == []


@pytest.mark.parametrize(
    ("tiers", "expected"),
    [
        ("{above: 1000, input: 1, output: 2}",
         ["prices.tiers: expected a list of tiers, each a mapping of above, input, output, cache_read, cache_write, "
          "cache_write_1h, not a mapping"]),
        ("[5]", ["prices.tiers[0]: expected a mapping of above, input, output, cache_read, cache_write, "
                 "cache_write_1h (above, input and output at least), not 5"]),
        ("[{}]", ["prices.tiers[0]: expected a mapping of above, input, output, cache_read, cache_write, "
                  "cache_write_1h (above, input and output at least), not {}"]),
        ("[{above: 1000, input: 1, output: 2, cache_write_2h: 3}]",
         ["prices.tiers[0].cache_write_2h: unknown setting; a tier's settings are: above, input, output, cache_read, "
          "cache_write, cache_write_1h"]),
        ("[{input: 1, output: 2}]", ["prices.tiers[0].above: This field is required."]),
        ("[{above: 0, input: 1, output: 2}]",
         ["prices.tiers[0].above: Enter a number from 1 to 2,147,483,647."]),
        ("[{above: 1000.5, input: 1, output: 2}]", ["prices.tiers[0].above: Enter a whole number."]),
        ("[{above: 1000, input: 1}]", ["prices.tiers[0].output: This field is required."]),
        ("[{above: 1000, output: 1}]", ["prices.tiers[0].input: This field is required."]),
        ("[{above: 1000, input: 1, output: [2]}]", ["prices.tiers[0].output: expected a number, not a list",
                                                     "prices.tiers[0].output: This field is required."]),
        ("[{above: 1000, input: 1, output: 2, cache_read: -1}]",
         ["prices.tiers[0].cache_read: Enter a price from 0 up: prices cannot be negative."]),
        ("[{above: 1000, input: 1, output: 2}, {above: 1000, input: 3, output: 4}]",
         ["prices.tiers[1].above: Another tier already starts above 1,000 prompt tokens."]),
    ],
)
def test_bad_tiers_are_errors_naming_the_tier(db: None, tiers: str, expected: list[str]) -> None:
    text = provider_file("name: x", "kind: ollama", "models:", "  - name: m",
                         f"    prices: {{input: 1, output: 2, tiers: {tiers}}}")

    assert errors_of(text) == [f"providers[0] (x).models[0] (m).{error}" for error in expected]
    assert Model.objects.count() == 0


# Export ----------------------------------------------------------------------------------------------


def test_export_writes_placeholders_never_keys(db: None) -> None:
    run_import(EXAMPLE)
    run_import(provider_file("name: local", "kind: ollama"))

    data = config_export()
    text = dump_yaml(data)

    assert SECRET not in text
    assert SECRET[-4:] not in text
    by_name = {p["name"]: p for p in data["providers"]}
    assert by_name["local-llm"]["api_key"] == "${LOCAL_LLM_API_KEY}"
    assert "api_key" not in by_name["local"]
    assert by_name["local-llm"]["models"] == [
        {"name": "small-model", "enabled": True,
         "prices": {"input": Decimal("0.15"), "output": Decimal("0.6"), "cache_read": Decimal("0.075")}},
    ]
    assert "input: 0.15\n" in text and "output: 0.6\n" in text


def test_export_writes_the_1h_write_and_tiers_as_the_file_gives_them(db: None) -> None:
    run_import(TIERED)

    data = config_export()
    text = dump_yaml(data)

    assert data["providers"][0]["models"][0]["prices"] == {
        "input": 3, "output": 15, "cache_read": Decimal("0.3"), "cache_write": Decimal("3.75"), "cache_write_1h": 6,
        "tiers": [{"above": 200000, "input": 6, "output": Decimal("22.5"), "cache_read": Decimal("0.6"),
                   "cache_write": Decimal("7.5"), "cache_write_1h": 12}],
    }
    assert ("      cache_write_1h: 6\n      tiers:\n      - above: 200000\n        input: 6\n"
            "        output: 22.5\n") in text
    # Read back, it is the same version.
    assert load_yaml(text, {})["providers"][0]["models"][0]["prices"]["tiers"][0]["output"] == 22.5
    assert not run_import(text, env={}).changed


def test_export_leaves_out_archived_providers(db: None) -> None:
    run_import(EXAMPLE)
    Provider.objects.update(archived_at="2024-01-01T00:00:00Z")

    assert config_export() == {"providers": []}


def test_key_placeholders_are_valid_and_distinct() -> None:
    assert key_placeholder("local-llm") == "LOCAL_LLM_API_KEY"
    assert key_placeholder("9router") == "_9ROUTER_API_KEY"
    assert key_placeholder("a.b", taken={"A_B_API_KEY"}) == "A_B_2_API_KEY"


RICH = """\
providers:
  - name: local-llm
    kind: openai_compatible
    base_url: http://127.0.0.1:9100/v1
    api_key: ${LOCAL_LLM_KEY}
    timeout_seconds: 30
    models:
      - name: small-model
        display_name: Small $${HOME} model
        context_window: 32768
        max_output_tokens: 8192
        prices:
          input: 0.15
          output: 0.60
          cache_read: 0.075
          cache_write: 0.000001
          cache_write_1h: 0.3
          tiers:
            - {above: 1000000, input: 0.6, output: 2.4, cache_read: 0.3, cache_write: 0.000004, cache_write_1h: 1.2}
            - {above: 200000, input: 0.3, output: 1.2, cache_read: 0.15, cache_write: 0.375, cache_write_1h: 0.6}
      - name: big-model
        enabled: false
        prices: {input: 1234.123456, output: 100, cache_read: 0}
  - name: oa
    kind: openai
    api_key: ${OA_KEY}
    models:
      - name: gpt-4o
  - name: or.team
    kind: openrouter
    api_key: ${OR_KEY}
    enabled: false
    referer: https://example.com
    title: Team
  - name: az
    kind: azure_openai
    base_url: https://r.openai.azure.com
    api_key: ${AZ_KEY}
    api_version: 2024-06-01
  - name: local
    kind: ollama
    max_retries: 0
"""
RICH_ENV = {"LOCAL_LLM_KEY": SECRET, "OA_KEY": "sk-oa-secret-1", "OR_KEY": "sk-or-secret-2",
            "AZ_KEY": "az-secret-3"}
EXPORT_ENV = {"LOCAL_LLM_API_KEY": SECRET, "OA_API_KEY": "sk-oa-secret-1",
              "OR_TEAM_API_KEY": "sk-or-secret-2", "AZ_API_KEY": "az-secret-3"}


def test_export_then_import_changes_nothing(db: None) -> None:
    run_import(RICH, env=RICH_ENV)
    before = snapshot()
    text = dump_yaml(config_export())
    assert all(secret not in text for secret in RICH_ENV.values())

    report = run_import(text, env=EXPORT_ENV)

    assert snapshot() == before
    assert not report.changed
    assert len(report.unchanged) == 8  # 5 providers, 3 models


def test_export_into_an_empty_database_recreates_the_same_config(db: None) -> None:
    run_import(RICH, env=RICH_ENV)
    exported = config_export()
    assert Model.objects.get(name="small-model").display_name == "Small ${HOME} model"
    Provider.objects.all().delete()

    run_import(dump_yaml(exported), env=EXPORT_ENV)

    assert config_export() == exported
    assert Provider.objects.get(name="oa").api_key.reveal() == "sk-oa-secret-1"
    small = Model.objects.get(name="small-model")
    assert (small.display_name, small.max_output_tokens) == ("Small ${HOME} model", 8192)
    assert [tier.above for tier in small.current_price().tier_list] == [200000, 1000000]


# Commands --------------------------------------------------------------------------------------------


@pytest.fixture
def example_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCAL_LLM_KEY", SECRET)
    path = tmp_path / "aspweb.yaml"
    path.write_text(EXAMPLE)
    return path


def test_import_command_imports_and_summarises(example_file: Path, db: None) -> None:
    out = io.StringIO()

    call_command("import_config", str(example_file), stdout=out)

    assert Provider.objects.get().api_key.reveal() == SECRET
    assert "created: provider local-llm\ncreated: model local-llm/small-model\n" in out.getvalue()
    assert "2 created, 0 updated, 0 unchanged" in out.getvalue()


def test_import_command_reads_stdin(monkeypatch: pytest.MonkeyPatch, db: None) -> None:
    monkeypatch.setenv("LOCAL_LLM_KEY", SECRET)

    call_command("import_config", "-", stdin=io.StringIO(EXAMPLE), stdout=io.StringIO())

    assert Provider.objects.filter(name="local-llm").exists()


def test_import_command_dry_run_writes_nothing(example_file: Path, db: None) -> None:
    out = io.StringIO()

    call_command("import_config", str(example_file), "--dry-run", stdout=out)

    assert "created: provider local-llm" in out.getvalue()
    assert "dry run: nothing was written" in out.getvalue()
    assert Provider.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_import_command_reports_every_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: None
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(EXAMPLE.replace("${LOCAL_LLM_KEY}", "k") + "  - name: x\n    kind: foo\n"
                    "  - name: g\n    kind: groq\n    base_url: nope\n")

    with pytest.raises(CommandError) as caught:
        call_command("import_config", str(path), stdout=io.StringIO())

    message = str(caught.value)
    assert message.startswith(f"3 error(s) in {path}, nothing was imported:")
    assert "providers[1] (x).kind: unknown kind 'foo'" in message
    assert "providers[2] (g).api_key: This field is required." in message
    assert "providers[2] (g).base_url: Enter a valid URL." in message
    assert Provider.objects.count() == 0


def test_import_command_exits_non_zero_with_errors_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db: None
) -> None:
    monkeypatch.delenv("LOCAL_LLM_KEY", raising=False)
    path = tmp_path / "aspweb.yaml"
    path.write_text(EXAMPLE)
    # run_from_argv closes the connections when it ends, which would take the test database with it.
    monkeypatch.setattr(connections, "close_all", lambda: None)

    with pytest.raises(SystemExit) as caught:
        execute_from_command_line(["manage.py", "import_config", str(path)])

    assert caught.value.code == 1
    stderr = capsys.readouterr().err
    assert "providers[0] (local-llm).api_key: environment variable LOCAL_LLM_KEY is not set" in stderr
    assert Provider.objects.count() == 0


def test_import_command_missing_file(tmp_path: Path, db: None) -> None:
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_config", str(tmp_path / "missing.yaml"))


def test_export_command_writes_yaml_with_placeholder_header(example_file: Path, db: None) -> None:
    call_command("import_config", str(example_file), stdout=io.StringIO())
    out = io.StringIO()

    call_command("export_config", stdout=out)

    text = out.getvalue()
    assert SECRET not in text
    assert text.startswith("# ")
    assert "#   LOCAL_LLM_API_KEY\n" in text
    assert yaml.safe_load(text) == yaml.safe_load(dump_yaml(config_export()))


def test_export_command_output_file_round_trips_through_import(
    example_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: None
) -> None:
    call_command("import_config", str(example_file), stdout=io.StringIO())
    before = snapshot()
    exported = tmp_path / "exported.yaml"

    call_command("export_config", "--output", str(exported), stdout=io.StringIO())
    monkeypatch.setenv("LOCAL_LLM_API_KEY", SECRET)
    out = io.StringIO()
    call_command("import_config", str(exported), stdout=out)

    assert SECRET not in exported.read_text()
    assert "0 created, 0 updated, 2 unchanged" in out.getvalue()
    assert snapshot() == before


ROUTES_YAML = """
providers:
  - name: local-llm
    kind: openai_compatible
    base_url: http://127.0.0.1:9100/v1
    models:
      - name: small-model
        prices: {input: 0.15, output: 0.60}
      - name: big-model
        prices: {input: 1, output: 2}
routes:
  - name: fast-chat
    strategy: cost
    cache_ttl_seconds: 60
    deployments:
      - model: local-llm/small-model
        priority: 1
      - model: local-llm/big-model
        priority: 2
        weight: 3
"""


def test_routes_import_with_models_declared_in_the_same_file(db: None) -> None:
    from gateway.models import Route

    report = config_import(load_yaml(ROUTES_YAML, {}), actor=None)
    route = Route.objects.get(name="fast-chat")
    assert (route.strategy, route.cache_ttl_seconds) == ("cost", 60)
    assert [(str(d.model), d.priority, d.weight) for d in route.deployments.all()] == [
        ("local-llm/small-model", 1, 1), ("local-llm/big-model", 2, 3)]
    assert "route fast-chat" in report.created
    again = config_import(load_yaml(ROUTES_YAML, {}), actor=None)
    assert not again.changed and "route fast-chat" in again.unchanged


def test_routes_deployments_follow_the_file(db: None) -> None:
    from gateway.models import Route

    config_import(load_yaml(ROUTES_YAML, {}), actor=None)
    changed = ROUTES_YAML.replace("""      - model: local-llm/small-model
        priority: 1
""", "").replace("weight: 3", "weight: 5")
    report = config_import(load_yaml(changed, {}), actor=None)
    route = Route.objects.get(name="fast-chat")
    assert [(str(d.model), d.weight) for d in route.deployments.all()] == [("local-llm/big-model", 5)]
    assert report.updated == ["route fast-chat (~local-llm/big-model, -local-llm/small-model)"]


def test_route_errors_name_the_place(db: None) -> None:
    bad = """
routes:
  - name: has/slash
    strategy: fastest
    deployments:
      - model: nowhere/nothing
      - model: no-slash
      - model: nowhere/nothing
        weight: 0
"""
    with pytest.raises(ConfigError) as caught:
        config_import(load_yaml(bad, {}), actor=None)
    errors = caught.value.errors
    assert any(e.startswith("routes[0] (has/slash).name: Use letters") for e in errors)
    assert any(e.startswith("routes[0] (has/slash).strategy: Select a valid choice") for e in errors)
    assert "routes[0] (has/slash).deployments[0].model: 'nowhere/nothing' is neither in the catalog nor in " \
           "this file" in errors
    assert "routes[0] (has/slash).deployments[1].model: expected PROVIDER/MODEL, not 'no-slash'" in errors
    assert "routes[0] (has/slash).deployments[2].model: 'nowhere/nothing' appears twice in this route" in errors
    assert "routes[0] (has/slash).deployments[2].weight: expected a whole number from 1 to 1,000, not 0" in errors


def test_routes_round_trip_through_export(db: None) -> None:
    config_import(load_yaml(ROUTES_YAML, {}), actor=None)
    exported = dump_yaml(config_export())
    assert "fast-chat" in exported and "local-llm/big-model" in exported
    assert not config_import(load_yaml(exported, {}), actor=None).changed


FULL_FILE = {
    "providers": [{"name": "local-llm", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9100/v1",
                   "api_key": "${LOCAL_LLM_KEY}",
                   "models": [{"name": "small-model", "display_name": "Small", "prices": {"input": 1, "output": 2}}]}],
    "routes": [{"name": "fast-chat", "strategy": "cost", "deployments": [{"model": "local-llm/small-model"}]}],
    "budgets": [{"name": "Everything", "scope": "model", "target": "local-llm/small-model", "period": "monthly",
                 "amount": 100, "emails": ["cfo@example.com"]}],
}
NUL_OR_SURROGATE = st.just("\x00") | st.integers(min_value=0xD800, max_value=0xDFFF).map(chr)


def _text_paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Where the strings of a document are: (path, True) for a value, (path, False) for a key."""
    if isinstance(value, dict):
        return [found for key, item in value.items()
                for found in [((*path, key), False), *_text_paths(item, (*path, key))]]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _text_paths(item, (*path, index))]
    return [(path, True)] if isinstance(value, str) else []


def _spoiled(document: Any, path: tuple, is_value: bool, bad: str) -> Any:
    """The document with `bad` put into the string at `path` (the value, or the key naming it)."""
    spoiled = copy.deepcopy(document)
    parent = spoiled
    for part in path[:-1]:
        parent = parent[part]
    if is_value:
        parent[path[-1]] += bad
    else:
        parent[path[-1] + bad] = parent.pop(path[-1])
    return spoiled


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(_text_paths(FULL_FILE)), bad=NUL_OR_SURROGATE)
def test_text_no_database_can_hold_is_an_error_where_it_is(db: None, where: tuple, bad: str) -> None:
    """YAML's escapes ("\\0", "\\ud800") give text that PostgreSQL refuses with a 500-worthy error: every string
    of the file, keys included, is checked before anything is looked up or written."""
    text = yaml.safe_dump(_spoiled(FULL_FILE, *where, bad))
    errors = errors_of(text)
    assert any("cannot be stored" in error for error in errors), errors
    assert not Provider.objects.exists()


def test_the_file_spoiled_nowhere_imports(db: None) -> None:
    """The document the test above spoils is valid as it is."""
    run_import(yaml.safe_dump(FULL_FILE))
    assert Model.objects.get(name="small-model").display_name == "Small"


def test_an_environment_variable_that_is_not_text_is_an_error(db: None) -> None:
    """Undecodable bytes in the environment become lone surrogates in os.environ."""
    errors = errors_of(EXAMPLE, {"LOCAL_LLM_KEY": "sk-\udcff"})
    assert errors == ["providers[0] (local-llm).api_key: contains a lone surrogate (U+DCFF), which cannot be stored"]
