"""The providers section of the config file (aspweb/config.py runs it): providers with their settings,
models and prices, checked with the forms the UI uses."""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aspweb import config

from . import services
from .forms import CatalogModelForm, PriceForm, ProviderForm, plain, stored_secrets
from .kinds import EXTRA_FIELDS, KINDS, SECRET_FIELDS, Kind
from .models import Model, Price, PriceTier, Provider

PROVIDER_KEYS = ("name", "kind", *ProviderForm._meta.fields[1:], "api_key", *EXTRA_FIELDS, *SECRET_FIELDS, "models")
MODEL_KEYS = ("name", "display_name", "type", "enabled", "context_window", "max_output_tokens", "prices")
PRICE_KEYS = (*Price.PRICE_FIELDS, "tiers")
TIER_KEYS = ("above", *Price.PRICE_FIELDS)


@dataclass
class _ModelPlan:
    existing: Model | None
    form: CatalogModelForm
    prices: dict[str, Any] | None  # price_set's shape


@dataclass
class _ProviderPlan:
    existing: Provider | None
    form: ProviderForm
    models: list[_ModelPlan]
    # The plans of the entry's settings that other apps own (config.ProviderPart), by key.
    parts: dict[str, Any]


def _check(entries: Any, declared: config.Declared, errors: list[str]) -> list[_ProviderPlan]:
    plans = _check_providers(entries, errors)
    declared.providers.update(plan.form.data.get("name") for plan in plans)
    declared.models.update((plan.form.data.get("name"), model.form.data.get("name"))
                           for plan in plans for model in plan.models)
    return plans


def _check_providers(entries: Any, errors: list[str]) -> list[_ProviderPlan]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.append(f"providers: expected a list of providers, not {config.type_name(entries)}")
        return []
    plans, seen = [], {}
    for index, entry in enumerate(entries):
        where = config.item_path("providers", index, entry)
        if not isinstance(entry, dict):
            errors.append(f"{where}: expected a mapping (name: ..., kind: ...), not {config.type_name(entry)}")
            continue
        name = config.name_of(entry)
        if name in seen:
            errors.append(f"{where}.name: provider {name!r} appears twice in the file (also {seen[name]})")
        elif name:
            seen[name] = where
        plan = _check_provider(entry, name, where, errors)
        if plan is not None:
            plans.append(plan)
    return plans


def _check_provider(entry: dict[str, Any], name: str | None, where: str,
                    errors: list[str]) -> _ProviderPlan | None:
    kind = _check_kind(entry.get("kind"), where, errors)
    existing = Provider.objects.active().filter(name=name).first() if name else None
    if kind is not None and existing is not None and existing.kind != kind.name:
        errors.append(f"{where}.kind: provider {name!r} exists with kind {existing.kind!r}, and a provider's "
                      "kind cannot change: archive it and add a new one")
        kind = None

    parts = tuple(part.key for part in config.provider_parts())
    if kind is None:
        # The kind decides which settings exist; without it, only catch what no kind takes.
        config.check_keys(entry, (*PROVIDER_KEYS, *parts), where, "provider settings are", errors)
        _check_models(entry.get("models"), where, existing, errors)
        return None

    blank = ProviderForm(instance=existing, kind=kind)
    allowed = ("name", "kind", *(f for f in blank.fields if f != "name"), *parts, "models")
    config.check_keys(entry, allowed, where, f"kind {kind.name} takes", errors)
    data = config.form_data(blank, entry, where, errors)
    api_key = data.get("api_key")
    # A blank key keeps the stored one, as in the UI. An unchanged key is not rewritten either: each
    # encryption gives new ciphertext, and the save a new audit event.
    if api_key is None or (existing is not None and existing.api_key
                           and existing.api_key.reveal() == str(api_key).strip()):
        data["api_key"] = ""
    form = ProviderForm(data, instance=existing, kind=kind)
    config.form_errors(form, where, errors)
    models = _check_models(entry.get("models"), where, existing, errors)
    owned = {part.key: part.check(entry[part.key], kind.name, existing, f"{where}.{part.key}", errors)
             for part in config.provider_parts() if part.key in entry}
    return _ProviderPlan(existing, form, models, owned)


def _check_kind(value: Any, where: str, errors: list[str]) -> Kind | None:
    known = f"known kinds: {', '.join(KINDS)}"
    if value is None or value == "":
        errors.append(f"{where}.kind: This field is required; {known}")
        return None
    if not isinstance(value, str) or value not in KINDS:
        errors.append(f"{where}.kind: unknown kind {value!r}; {known}")
        return None
    return KINDS[value]


def _check_models(entries: Any, where: str, provider: Provider | None, errors: list[str]) -> list[_ModelPlan]:
    where = f"{where}.models"
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.append(f"{where}: expected a list of models, not {config.type_name(entries)}")
        return []
    plans, seen = [], {}
    for index, entry in enumerate(entries):
        model_where = config.item_path(where, index, entry)
        if not isinstance(entry, dict):
            errors.append(f"{model_where}: expected a mapping (name: ..., prices: ...), "
                          f"not {config.type_name(entry)}")
            continue
        config.check_keys(entry, MODEL_KEYS, model_where, "model settings are", errors)
        name = config.name_of(entry)
        if name in seen:
            errors.append(f"{model_where}.name: model {name!r} appears twice for this provider "
                          f"(also {seen[name]})")
        elif name:
            seen[name] = model_where
        existing = provider.models.filter(name=name).first() if provider is not None and name else None
        # A new provider has no row yet; the form only needs one to hang the model on.
        parent = provider or Provider()
        blank = CatalogModelForm(instance=existing, provider=parent)
        data = config.form_data(blank, entry, model_where, errors)
        form = CatalogModelForm(data, instance=existing, provider=parent)
        config.form_errors(form, model_where, errors)
        prices = _check_prices(entry.get("prices"), f"{model_where}.prices", errors)
        plans.append(_ModelPlan(existing, form, prices))
    return plans


def _check_prices(value: Any, where: str, errors: list[str]) -> dict[str, Any] | None:
    """A model's `prices`: the whole new version, checked with the price form and its tier formset. A class
    or `tiers` the mapping leaves out is empty, as a blank field is in the UI."""
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(f"{where}: expected a mapping of {', '.join(PRICE_KEYS)}, not {config.type_name(value)}")
        return None
    config.check_keys(value, PRICE_KEYS, where, "prices (USD per 1M tokens) are", errors)
    data = {**_numbers(value, Price.PRICE_FIELDS, where, errors),
            **_tier_data(value.get("tiers"), f"{where}.tiers", errors)}
    form = PriceForm(data)
    config.form_errors(form, where, errors)
    for index, tier_form in enumerate(form.tiers.forms):
        config.form_errors(tier_form, f"{where}.tiers[{index}]", errors)
    errors.extend(f"{where}.tiers: {message}" for message in form.tiers.non_form_errors())
    return form.prices() if form.is_valid() else None


def _tier_data(value: Any, where: str, errors: list[str]) -> dict[str, str]:
    """The file's tiers as the tier formset's data, row i being the file's tier i (so that errors name it)."""
    tiers = [] if value is None else value
    if not isinstance(tiers, list):
        errors.append(f"{where}: expected a list of tiers, each a mapping of {', '.join(TIER_KEYS)}, "
                      f"not {config.type_name(tiers)}")
        tiers = []
    data = {"tiers-TOTAL_FORMS": str(len(tiers)), "tiers-INITIAL_FORMS": "0"}
    for index, tier in enumerate(tiers):
        item = f"{where}[{index}]"
        # The formset takes a blank row for no tier; in a file, an empty entry is a mistake.
        if not isinstance(tier, dict) or not tier:
            errors.append(f"{item}: expected a mapping of {', '.join(TIER_KEYS)} (above, input and output at "
                          f"least), not {tier!r}")
            continue
        config.check_keys(tier, TIER_KEYS, item, "a tier's settings are", errors)
        data.update({f"tiers-{index}-{name}": number for name, number in
                     _numbers(tier, TIER_KEYS, item, errors).items()})
    return data


def _numbers(value: Mapping[str, Any], names: tuple[str, ...], where: str, errors: list[str]) -> dict[str, str]:
    """The numbers `names` of a mapping as a form's data ("" where left out)."""
    data = {}
    for name in names:
        number = value.get(name)
        if isinstance(number, dict | list):
            errors.append(f"{where}.{name}: expected a number, not {config.type_name(number)}")
            number = None
        # Through str(), a YAML float keeps the digits written in the file: Decimal(0.15) would not.
        data[name] = "" if number is None else str(number)
    return data


def _apply(plans: list[_ProviderPlan], actor: Any, report: config.Report) -> None:
    for plan in plans:
        _apply_provider(plan, actor, report)


def _apply_provider(plan: _ProviderPlan, actor: Any, report: config.Report) -> None:
    form = plan.form
    if plan.existing is None:
        provider = services.provider_save(provider=form.save(commit=False), actor=actor)
        report.created.append(f"provider {provider.name}")
    else:
        changed = sorted({*form.changed_settings(), *(["api_key"] if form.key_changed else [])})
        if changed:
            provider = services.provider_save(provider=form.save(commit=False), actor=actor,
                                              changed=changed, key_changed=form.key_changed)
            report.updated.append(f"provider {provider.name} ({', '.join(changed)})")
        else:
            # Not saved: saving would move updated_at although nothing changed.
            provider = plan.existing
            report.unchanged.append(f"provider {provider.name}")
    for part in config.provider_parts():
        if part.key in plan.parts:
            part.apply(provider, plan.parts[part.key], actor, report)
    for model_plan in plan.models:
        _apply_model(provider, model_plan, actor, report)


def _apply_model(provider: Provider, plan: _ModelPlan, actor: Any, report: config.Report) -> None:
    data = plan.form.cleaned_data
    if plan.existing is None:
        model = services.model_add(
            provider=provider, name=data["name"], actor=actor, display_name=data["display_name"], type=data["type"],
            context_window=data["context_window"], max_output_tokens=data["max_output_tokens"], enabled=data["enabled"],
            with_default_price=plan.prices is None,
        )
        if plan.prices is not None:
            services.price_set(model=model, prices=plan.prices, actor=actor, source=Price.Source.CONFIG)
        note = "" if model.prices.exists() else " (no price known: add prices to the file or on its page)"
        report.created.append(f"model {model}{note}")
        return
    model, changed = plan.existing, list(plan.form.changed_data)
    if changed:
        services.model_update(model=model, changed={name: data[name] for name in changed}, actor=actor)
    if plan.prices is not None and services.price_set(model=model, prices=plan.prices, actor=actor,
                                                      source=Price.Source.CONFIG) is not None:
        changed.append("prices")
    if changed:
        report.updated.append(f"model {model} ({', '.join(changed)})")
    else:
        report.unchanged.append(f"model {model}")


def _export(placeholders: set[str]) -> list[dict[str, Any]]:
    """Every active provider with its settings, models and current prices. API keys are
    `${PROVIDER_NAME_API_KEY}` placeholders, never the secret."""
    providers = []
    for provider in Provider.objects.active().prefetch_related("models"):
        kind = provider.kind_preset
        entry: dict[str, Any] = {"name": provider.name, "kind": provider.kind}
        if kind.asks_base_url and provider.base_url:
            entry["base_url"] = config.literal(provider.base_url)
        if kind.secrets:
            for secret in (name for name in kind.secrets if stored_secrets(provider.api_key).get(name)):
                placeholder = config.env_placeholder(provider.name, secret.upper(), placeholders)
                placeholders.add(placeholder)
                entry[secret] = f"${{{placeholder}}}"
        elif kind.asks_key and provider.api_key:
            placeholder = key_placeholder(provider.name, taken=placeholders)
            placeholders.add(placeholder)
            entry["api_key"] = f"${{{placeholder}}}"
        entry.update(enabled=provider.enabled, timeout_seconds=provider.timeout_seconds,
                     max_retries=provider.max_retries)
        entry.update({name: config.literal(str(provider.extra[name]))
                      for name in kind.extra if provider.extra.get(name)})
        for part in config.provider_parts():
            if (value := part.export(provider, placeholders)) is not None:
                entry[part.key] = value
        entry["models"] = [_export_model(model) for model in provider.models.all()]
        providers.append(entry)
    return providers


def _export_model(model: Model) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": config.literal(model.name)}
    if model.display_name:
        entry["display_name"] = config.literal(model.display_name)
    if model.type != Model.Type.CHAT:  # chat is what a file that leaves it out means
        entry["type"] = model.type
    entry["enabled"] = model.enabled
    if model.context_window is not None:
        entry["context_window"] = model.context_window
    if model.max_output_tokens is not None:
        entry["max_output_tokens"] = model.max_output_tokens
    price = model.current_price()
    if price is not None:
        tiers = [{"above": tier.above, **_export_classes(tier)} for tier in price.tier_list]
        entry["prices"] = {**_export_classes(price), **({"tiers": tiers} if tiers else {})}
    return entry


def _export_classes(prices: Price | PriceTier) -> dict[str, Decimal]:
    """The prices a version or tier sets; an empty one is left out, and means empty when read back."""
    return {name: plain(value) for name in Price.PRICE_FIELDS if (value := getattr(prices, name)) is not None}


def key_placeholder(provider_name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The variable an exported file names for a provider's key: local-llm -> LOCAL_LLM_API_KEY."""
    return config.env_placeholder(provider_name, "API_KEY", taken)


SECTION = config.Section("providers", check=_check, apply=_apply, export=_export, exported_when_empty=True)
