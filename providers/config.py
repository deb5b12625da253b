"""Config as code: providers, models, prices, routes and budgets from a YAML file, and back.

The file is checked with the forms the UI uses, so each rule lives in one place. Nothing is written
unless the whole file is valid, and importing the same file again changes nothing. API keys never appear
in a file: they are ``${NAME}`` references to environment variables, resolved by `load_yaml`.

Settings a file leaves out keep their current value (or the default for a new provider or model), the
way a blank key keeps the stored key in the UI; providers and models the file does not name are left alone.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import transaction

from accounts.models import User
from aspweb.text import text_problem
from budgets import services as budget_services
from budgets.forms import BudgetForm
from budgets.models import Budget
from gateway import services as gateway_services
from gateway.forms import RouteForm
from gateway.models import PRIORITY_RANGE, WEIGHT_RANGE, ApiKey, Deployment, Route

from . import services
from .forms import CatalogModelForm, PriceForm, ProviderForm, plain
from .kinds import EXTRA_FIELDS, KINDS, Kind
from .models import Model, Price, PriceTier, Provider

# Top-level sections a file may have.
SECTIONS = ("providers", "routes", "budgets")
DEFAULT_ACTOR = "import_config"
PROVIDER_KEYS = ("name", "kind", *ProviderForm._meta.fields[1:], "api_key", *EXTRA_FIELDS, "models")
MODEL_KEYS = ("name", "display_name", "enabled", "context_window", "max_output_tokens", "prices")
PRICE_KEYS = (*Price.PRICE_FIELDS, "tiers")
TIER_KEYS = ("above", *Price.PRICE_FIELDS)
ROUTE_KEYS = (*RouteForm._meta.fields, "deployments")
DEPLOYMENT_KEYS = ("model", "priority", "weight")
BUDGET_KEYS = ("name", "scope", "target", "period", "amount", "thresholds", "forecast", "hard_limit", "emails",
               "webhook_url")
# What names a budget's target in a file, by scope.
BUDGET_TARGETS = {"provider": "a provider name", "model": "PROVIDER/MODEL", "user": "a user's e-mail",
                  "api_key": "an API key's prefix"}

# `${NAME}` is replaced by an environment variable; `$${NAME}` stands for a literal `${NAME}`.
_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)(\}?)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(Exception):
    """A config file that cannot be imported; `errors` holds every problem, each with where it is."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class Report:
    """What an import did (or, in a dry run, would do), one line per provider and model."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)

    def summary(self) -> str:
        text = f"{len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged"
        return f"{text} (dry run: nothing was written)" if self.dry_run else text


# Reading ---------------------------------------------------------------------------------------------


def load_yaml(text: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Parse a config file and resolve `${NAME}` in every string from `environ`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"invalid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"the file must be a mapping of sections ({', '.join(SECTIONS)}), "
                           f"not {_type_name(data)}"])
    errors: list[str] = []
    data = _substitute(data, "", environ, errors)
    if errors:
        raise ConfigError(errors)
    return data


def _substitute(value: Any, where: str, environ: Mapping[str, str], errors: list[str]) -> Any:
    if isinstance(value, dict):
        for key in value:
            _storable(key, f"{where or 'the file'}: a key", errors)
        return {key: _substitute(item, _key_path(where, key), environ, errors) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, _item_path(where, index, item), environ, errors)
                for index, item in enumerate(value)]
    if isinstance(value, str):
        value = _REFERENCE.sub(lambda match: _resolve(match, where, environ, errors), value)
        _storable(value, where, errors)
        return value
    return value


def _storable(value: Any, where: str, errors: list[str]) -> None:
    """YAML's escapes (and an environment variable's undecodable bytes) can give text no database can hold:
    found here, before it is looked up or written anywhere."""
    if isinstance(value, str) and (problem := text_problem(value)):
        errors.append(f"{where}: contains {problem}, which cannot be stored")


def _resolve(match: re.Match[str], where: str, environ: Mapping[str, str], errors: list[str]) -> str:
    escaped, name, closed = match.groups()
    if escaped:
        return match.group(0)[1:]
    if not closed or not _ENV_NAME.fullmatch(name):
        # A typo here would otherwise be stored as the key itself.
        errors.append(f"{where}: malformed reference {match.group(0)!r}: "
                      "write ${NAME}, or $${ for a literal ${")
        return match.group(0)
    if name not in environ:
        errors.append(f"{where}: environment variable {name} is not set")
        return ""
    return environ[name]


# Importing -------------------------------------------------------------------------------------------


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


@dataclass
class _RoutePlan:
    existing: Route | None
    form: RouteForm
    # (provider name, model name, priority, weight), in the file's order
    deployments: list[tuple[str, str, int, int]]


@dataclass
class _BudgetPlan:
    existing: Budget | None
    form: BudgetForm
    # A target this file creates (a provider or model): looked up once the file's providers are written.
    pending_target: str | None = None


def config_import(data: Mapping[str, Any], *, actor: Any, dry_run: bool = False) -> Report:
    """Create or update the providers, models, prices, routes and budgets `data` describes, all or nothing.

    Raises ConfigError with every problem found; nothing is written then. A dry run does the whole
    import and rolls it back, so its report is exactly what a real import would do.
    """
    actor = actor or DEFAULT_ACTOR
    if not isinstance(data, Mapping):
        raise ConfigError([f"the config must be a mapping of sections ({', '.join(SECTIONS)}), "
                           f"not {_type_name(data)}"])
    errors = [f"{key}: unknown section; supported sections: {', '.join(SECTIONS)}"
              for key in data if key not in SECTIONS]
    report = Report(dry_run=dry_run)
    with transaction.atomic():
        plans = _check_providers(data.get("providers"), errors)
        declared = {(plan.form.data.get("name"), model.form.data.get("name"))
                    for plan in plans for model in plan.models}
        route_plans = _check_routes(data.get("routes"), declared, errors)
        budget_plans = _check_budgets(data.get("budgets"), {plan.form.data.get("name") for plan in plans}, declared,
                                      errors)
        if errors:
            raise ConfigError(errors)
        for plan in plans:
            _apply_provider(plan, actor, report)
        for route_plan in route_plans:
            _apply_route(route_plan, actor, report)
        for budget_plan in budget_plans:
            _apply_budget(budget_plan, actor, report)
        if dry_run:
            transaction.set_rollback(True)
    return report


def _check_providers(entries: Any, errors: list[str]) -> list[_ProviderPlan]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.append(f"providers: expected a list of providers, not {_type_name(entries)}")
        return []
    plans, seen = [], {}
    for index, entry in enumerate(entries):
        where = _item_path("providers", index, entry)
        if not isinstance(entry, dict):
            errors.append(f"{where}: expected a mapping (name: ..., kind: ...), not {_type_name(entry)}")
            continue
        name = _name_of(entry)
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

    if kind is None:
        # The kind decides which settings exist; without it, only catch what no kind takes.
        _check_keys(entry, PROVIDER_KEYS, where, "provider settings are", errors)
        _check_models(entry.get("models"), where, existing, errors)
        return None

    blank = ProviderForm(instance=existing, kind=kind)
    allowed = ("name", "kind", *(f for f in blank.fields if f != "name"), "models")
    _check_keys(entry, allowed, where, f"kind {kind.name} takes", errors)
    data = _form_data(blank, entry, where, errors)
    api_key = data.get("api_key")
    # A blank key keeps the stored one, as in the UI. An unchanged key is not rewritten either: each
    # encryption gives new ciphertext, and the save a new audit event.
    if api_key is None or (existing is not None and existing.api_key
                           and existing.api_key.reveal() == str(api_key).strip()):
        data["api_key"] = ""
    form = ProviderForm(data, instance=existing, kind=kind)
    _form_errors(form, where, errors)
    models = _check_models(entry.get("models"), where, existing, errors)
    return _ProviderPlan(existing, form, models)


def _check_routes(entries: Any, declared: set[tuple[str, str]], errors: list[str]) -> list[_RoutePlan]:
    """Routes name their deployments as PROVIDER/MODEL: a model in the catalog or in this file."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.append(f"routes: expected a list of routes, not {_type_name(entries)}")
        return []
    plans, seen = [], {}
    for index, entry in enumerate(entries):
        where = _item_path("routes", index, entry)
        if not isinstance(entry, dict):
            errors.append(f"{where}: expected a mapping (name: ..., deployments: ...), not {_type_name(entry)}")
            continue
        _check_keys(entry, ROUTE_KEYS, where, "route settings are", errors)
        name = _name_of(entry)
        if name in seen:
            errors.append(f"{where}.name: route {name!r} appears twice in the file (also {seen[name]})")
        elif name:
            seen[name] = where
        existing = Route.objects.filter(name=name).first() if name else None
        blank = RouteForm(instance=existing)
        form = RouteForm(_form_data(blank, entry, where, errors), instance=existing)
        _form_errors(form, where, errors)
        plans.append(_RoutePlan(existing, form, _check_deployments(entry.get("deployments"), where, declared,
                                                                   errors)))
    return plans


def _check_deployments(entries: Any, where: str, declared: set[tuple[str, str]],
                       errors: list[str]) -> list[tuple[str, str, int, int]]:
    where = f"{where}.deployments"
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.append(f"{where}: expected a list of deployments, not {_type_name(entries)}")
        return []
    deployments, seen = [], set()
    for index, entry in enumerate(entries):
        item = f"{where}[{index}]"
        if not isinstance(entry, dict):
            errors.append(f"{item}: expected a mapping (model: PROVIDER/MODEL, priority: ..., weight: ...)")
            continue
        _check_keys(entry, DEPLOYMENT_KEYS, item, "deployment settings are", errors)
        address = entry.get("model")
        provider_name, _, model_name = str(address or "").partition("/")
        if not isinstance(address, str) or not provider_name or not model_name:
            errors.append(f"{item}.model: expected PROVIDER/MODEL, not {address!r}")
            continue
        known = (provider_name, model_name) in declared or Model.objects.filter(
            provider__archived_at__isnull=True, provider__name=provider_name, name=model_name).exists()
        if not known:
            errors.append(f"{item}.model: {address!r} is neither in the catalog nor in this file")
        if (provider_name, model_name) in seen:
            errors.append(f"{item}.model: {address!r} appears twice in this route")
        seen.add((provider_name, model_name))
        numbers = {}
        for key, default, (low, high) in (("priority", 1, PRIORITY_RANGE), ("weight", 1, WEIGHT_RANGE)):
            value = entry.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                errors.append(f"{item}.{key}: expected a whole number from {low:,} to {high:,}, not {value!r}")
                value = default
            numbers[key] = value
        deployments.append((provider_name, model_name, numbers["priority"], numbers["weight"]))
    return deployments


def _check_budgets(entries: Any, declared_providers: set[str], declared: set[tuple[str, str]],
                   errors: list[str]) -> list[_BudgetPlan]:
    """Budgets, by name, checked with the form the UI uses. A budget names its target as people see it
    (BUDGET_TARGETS); a provider or model may be one this file creates."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.append(f"budgets: expected a list of budgets, not {_type_name(entries)}")
        return []
    plans, seen = [], {}
    for index, entry in enumerate(entries):
        where = _item_path("budgets", index, entry)
        if not isinstance(entry, dict):
            errors.append(f"{where}: expected a mapping (name: ..., scope: ..., amount: ...), not {_type_name(entry)}")
            continue
        _check_keys(entry, BUDGET_KEYS, where, "budget settings are", errors)
        name = _name_of(entry)
        if name in seen:
            errors.append(f"{where}.name: budget {name!r} appears twice in the file (also {seen[name]})")
        elif name:
            seen[name] = where
        existing = Budget.objects.filter(name=name).first() if name else None
        values = {key: value for key, value in entry.items() if key in BUDGET_KEYS and key != "target"}
        for key, kind in (("thresholds", int), ("emails", str)):
            if key not in values:
                continue
            items = values[key]
            if not isinstance(items, list) or any(isinstance(i, bool) or not isinstance(i, kind) for i in items):
                what = "whole-number percentages" if kind is int else "e-mail addresses"
                errors.append(f"{where}.{key}: expected a list of {what}, not {items!r}")
                values.pop(key)
            else:
                values[key] = ", ".join(str(i) for i in items)
        if "amount" in values and not isinstance(values["amount"], dict | list | bool):
            values["amount"] = str(values["amount"])  # through str(): a YAML float keeps the digits written
        scope = values.get("scope", existing.scope if existing else Budget.Scope.GLOBAL)
        known = len(errors)
        target, pending = _budget_target(entry, scope, existing, where, declared_providers, declared, errors)
        # A target still to be created, or one already reported: the form checks the rest.
        with_target = not pending and len(errors) == known
        blank = BudgetForm(instance=existing, with_target=with_target)
        data = _form_data(blank, values, where, errors)
        if with_target:
            for column in Budget.TARGETS.values():
                data[column] = target.pk if target is not None and Budget.TARGETS.get(scope) == column else ""
        form = BudgetForm(data, instance=existing, with_target=with_target)
        _form_errors(form, where, errors)
        plans.append(_BudgetPlan(existing, form, pending))
    return plans


def _budget_target(entry: dict[str, Any], scope: Any, existing: Budget | None, where: str,
                   declared_providers: set[str], declared: set[tuple[str, str]],
                   errors: list[str]) -> tuple[Any, str | None]:
    """The budget's target row, or (None, the target) when it is a provider or model this file creates."""
    if scope not in BUDGET_TARGETS:
        if entry.get("target") not in (None, ""):
            errors.append(f"{where}.target: a {scope} budget has no target")
        return None, None
    if "target" not in entry and existing is not None and existing.scope == scope:
        return existing.target, None
    target = entry.get("target")
    if not isinstance(target, str) or not target.strip():
        errors.append(f"{where}.target: a {scope} budget needs a target: {BUDGET_TARGETS[scope]}")
        return None, None
    target = target.strip()
    if scope == Budget.Scope.PROVIDER:
        row = Provider.objects.active().filter(name=target).first()
        if row is None and target in declared_providers:
            return None, target
    elif scope == Budget.Scope.MODEL:
        provider_name, _, model_name = target.partition("/")
        row = Model.objects.filter(provider__archived_at__isnull=True, provider__name=provider_name,
                                   name=model_name).first()
        if row is None and (provider_name, model_name) in declared:
            return None, target
    elif scope == Budget.Scope.USER:
        row = User.objects.filter(email__iexact=target, is_active=True).first()
    else:
        row = ApiKey.objects.filter(prefix=target, revoked_at__isnull=True).first()
    if row is None:
        known = " in the catalog or in this file" if scope in (Budget.Scope.PROVIDER, Budget.Scope.MODEL) else ""
        errors.append(f"{where}.target: no {scope.replace('_', ' ')} {target!r}{known} "
                      f"(a {scope} budget's target is {BUDGET_TARGETS[scope]})")
    return row, None


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
        errors.append(f"{where}: expected a list of models, not {_type_name(entries)}")
        return []
    plans, seen = [], {}
    for index, entry in enumerate(entries):
        model_where = _item_path(where, index, entry)
        if not isinstance(entry, dict):
            errors.append(f"{model_where}: expected a mapping (name: ..., prices: ...), "
                          f"not {_type_name(entry)}")
            continue
        _check_keys(entry, MODEL_KEYS, model_where, "model settings are", errors)
        name = _name_of(entry)
        if name in seen:
            errors.append(f"{model_where}.name: model {name!r} appears twice for this provider "
                          f"(also {seen[name]})")
        elif name:
            seen[name] = model_where
        existing = provider.models.filter(name=name).first() if provider is not None and name else None
        # A new provider has no row yet; the form only needs one to hang the model on.
        parent = provider or Provider()
        blank = CatalogModelForm(instance=existing, provider=parent)
        data = _form_data(blank, entry, model_where, errors)
        form = CatalogModelForm(data, instance=existing, provider=parent)
        _form_errors(form, model_where, errors)
        prices = _check_prices(entry.get("prices"), f"{model_where}.prices", errors)
        plans.append(_ModelPlan(existing, form, prices))
    return plans


def _check_prices(value: Any, where: str, errors: list[str]) -> dict[str, Any] | None:
    """A model's `prices`: the whole new version, checked with the price form and its tier formset. A class
    or `tiers` the mapping leaves out is empty, as a blank field is in the UI."""
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(f"{where}: expected a mapping of {', '.join(PRICE_KEYS)}, not {_type_name(value)}")
        return None
    _check_keys(value, PRICE_KEYS, where, "prices (USD per 1M tokens) are", errors)
    data = {**_numbers(value, Price.PRICE_FIELDS, where, errors),
            **_tier_data(value.get("tiers"), f"{where}.tiers", errors)}
    form = PriceForm(data)
    _form_errors(form, where, errors)
    for index, tier_form in enumerate(form.tiers.forms):
        _form_errors(tier_form, f"{where}.tiers[{index}]", errors)
    errors.extend(f"{where}.tiers: {message}" for message in form.tiers.non_form_errors())
    return form.prices() if form.is_valid() else None


def _tier_data(value: Any, where: str, errors: list[str]) -> dict[str, str]:
    """The file's tiers as the tier formset's data, row i being the file's tier i (so that errors name it)."""
    tiers = [] if value is None else value
    if not isinstance(tiers, list):
        errors.append(f"{where}: expected a list of tiers, each a mapping of {', '.join(TIER_KEYS)}, "
                      f"not {_type_name(tiers)}")
        tiers = []
    data = {"tiers-TOTAL_FORMS": str(len(tiers)), "tiers-INITIAL_FORMS": "0"}
    for index, tier in enumerate(tiers):
        item = f"{where}[{index}]"
        # The formset takes a blank row for no tier; in a file, an empty entry is a mistake.
        if not isinstance(tier, dict) or not tier:
            errors.append(f"{item}: expected a mapping of {', '.join(TIER_KEYS)} (above, input and output at "
                          f"least), not {tier!r}")
            continue
        _check_keys(tier, TIER_KEYS, item, "a tier's settings are", errors)
        data.update({f"tiers-{index}-{name}": number for name, number in
                     _numbers(tier, TIER_KEYS, item, errors).items()})
    return data


def _numbers(value: Mapping[str, Any], names: tuple[str, ...], where: str, errors: list[str]) -> dict[str, str]:
    """The numbers `names` of a mapping as a form's data ("" where left out)."""
    data = {}
    for name in names:
        number = value.get(name)
        if isinstance(number, dict | list):
            errors.append(f"{where}.{name}: expected a number, not {_type_name(number)}")
            number = None
        # Through str(), a YAML float keeps the digits written in the file: Decimal(0.15) would not.
        data[name] = "" if number is None else str(number)
    return data


def _check_keys(entry: Mapping[str, Any], allowed: tuple[str, ...], where: str, what: str,
                errors: list[str]) -> None:
    for key in entry:
        if key not in allowed:
            errors.append(f"{_key_path(where, key)}: unknown setting; {what}: {', '.join(allowed)}")


def _form_data(blank: forms.BaseForm, entry: Mapping[str, Any], where: str,
               errors: list[str]) -> dict[str, Any]:
    """The form's current values overlaid with the file's, so what the file leaves out stays as it is."""
    data = {name: blank[name].initial for name in blank.fields}
    for name, form_field in blank.fields.items():
        if name not in entry:
            continue
        value = entry[name]
        if isinstance(value, dict | list):
            errors.append(f"{where}.{name}: expected a single value, not {_type_name(value)}")
        elif isinstance(form_field, forms.BooleanField) and not isinstance(value, bool):
            # A checkbox reads any non-empty text as ticked; in a file that would hide typos.
            errors.append(f"{where}.{name}: expected true or false, not {value!r}")
        else:
            data[name] = value
    return data


def _form_errors(form: forms.BaseForm, where: str, errors: list[str]) -> None:
    if form.is_valid():
        return
    for name, messages in form.errors.items():
        target = where if name == NON_FIELD_ERRORS else f"{where}.{name}"
        errors.extend(f"{target}: {message}" for message in messages)


def _apply_provider(plan: _ProviderPlan, actor: Any, report: Report) -> None:
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
    for model_plan in plan.models:
        _apply_model(provider, model_plan, actor, report)


def _apply_model(provider: Provider, plan: _ModelPlan, actor: Any, report: Report) -> None:
    data = plan.form.cleaned_data
    if plan.existing is None:
        model = services.model_add(
            provider=provider, name=data["name"], actor=actor, display_name=data["display_name"],
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


def _apply_route(plan: _RoutePlan, actor: Any, report: Report) -> None:
    """A route's deployments become exactly the file's list: a route is defined by what serves it."""
    if plan.existing is None:
        route = gateway_services.route_save(route=plan.form.save(commit=False), actor=actor)
        changes = ["created"]
    else:
        route, changes = plan.existing, list(plan.form.changed_data)
        if changes:
            gateway_services.route_save(route=plan.form.save(commit=False), actor=actor, changed=changes)
    current = {d.model_id: d for d in route.deployments.select_related("model")}
    wanted = set()
    for provider_name, model_name, priority, weight in plan.deployments:
        model = Model.objects.get(provider__archived_at__isnull=True, provider__name=provider_name, name=model_name)
        wanted.add(model.pk)
        deployment = current.get(model.pk)
        if deployment is None:
            gateway_services.deployment_add(deployment=Deployment(route=route, model=model, priority=priority,
                                                          weight=weight), actor=actor)
            changes.append(f"+{model}")
        elif (deployment.priority, deployment.weight) != (priority, weight):
            deployment.priority, deployment.weight = priority, weight
            gateway_services.deployment_add(deployment=deployment, actor=actor)
            changes.append(f"~{model}")
    for model_id, deployment in current.items():
        if model_id not in wanted:
            gateway_services.deployment_remove(deployment=deployment, actor=actor)
            changes.append(f"-{deployment.model}")
    if plan.existing is None:
        report.created.append(f"route {route.name}")
    elif changes:
        report.updated.append(f"route {route.name} ({', '.join(changes)})")
    else:
        report.unchanged.append(f"route {route.name}")


def _apply_budget(plan: _BudgetPlan, actor: Any, report: Report) -> None:
    budget, changed = plan.form.save(commit=False), list(plan.form.changed_data)
    if plan.pending_target is not None:
        column = Budget.TARGETS[budget.scope]
        if column == "provider":
            target = Provider.objects.active().get(name=plan.pending_target)
        else:
            provider_name, _, model_name = plan.pending_target.partition("/")
            target = Model.objects.get(provider__archived_at__isnull=True, provider__name=provider_name,
                                       name=model_name)
        for name in Budget.TARGETS.values():
            setattr(budget, name, target if name == column else None)
        changed.append(column)
    if plan.existing is None:
        budget_services.budget_save(budget=budget, actor=actor)
        report.created.append(f"budget {budget.name}")
    elif changed:
        budget_services.budget_save(budget=budget, actor=actor, changed=changed)
        report.updated.append(f"budget {budget.name} ({', '.join(changed)})")
    else:
        report.unchanged.append(f"budget {budget.name}")


# Exporting -------------------------------------------------------------------------------------------


def config_export() -> dict[str, Any]:
    """Every active provider with its settings, models and current prices, ready for `dump_yaml`.

    API keys are `${PROVIDER_NAME_API_KEY}` placeholders, never the secret.
    """
    providers, placeholders = [], set()
    for provider in Provider.objects.active().prefetch_related("models"):
        kind = provider.kind_preset
        entry: dict[str, Any] = {"name": provider.name, "kind": provider.kind}
        if kind.asks_base_url and provider.base_url:
            entry["base_url"] = _literal(provider.base_url)
        if kind.asks_key and provider.api_key:
            placeholder = key_placeholder(provider.name, taken=placeholders)
            placeholders.add(placeholder)
            entry["api_key"] = f"${{{placeholder}}}"
        entry.update(enabled=provider.enabled, timeout_seconds=provider.timeout_seconds,
                     max_retries=provider.max_retries)
        entry.update({name: _literal(str(provider.extra[name]))
                      for name in kind.extra if provider.extra.get(name)})
        entry["models"] = [_export_model(model) for model in provider.models.all()]
        providers.append(entry)
    routes = [
        {"name": route.name, "strategy": route.strategy, "enabled": route.enabled,
         "cache_ttl_seconds": route.cache_ttl_seconds,
         **({"description": _literal(route.description)} if route.description else {}),
         "deployments": [{"model": _literal(str(d.model)), "priority": d.priority, "weight": d.weight}
                         for d in route.deployments.select_related("model__provider")]}
        for route in Route.objects.all()
    ]
    budgets = [_export_budget(budget, placeholders) for budget in
               Budget.objects.select_related("provider", "model__provider", "user", "api_key")]
    return {"providers": providers, **({"routes": routes} if routes else {}),
            **({"budgets": budgets} if budgets else {})}


def _export_budget(budget: Budget, placeholders: set[str]) -> dict[str, Any]:
    """A budget as the file names it. A webhook URL is a credential (Slack's are), so it is a placeholder."""
    entry: dict[str, Any] = {"name": _literal(budget.name), "scope": budget.scope}
    target = budget.target
    if target is not None:
        entry["target"] = _literal({
            Budget.Scope.PROVIDER: lambda: target.name,
            Budget.Scope.MODEL: lambda: f"{target.provider.name}/{target.name}",
            Budget.Scope.USER: lambda: target.email,
            Budget.Scope.API_KEY: lambda: target.prefix,
        }[budget.scope]())
    entry.update(period=budget.period, amount=plain(budget.amount), thresholds=list(budget.thresholds),
                 forecast=budget.forecast, hard_limit=budget.hard_limit)
    if budget.emails:
        entry["emails"] = [_literal(address) for address in budget.emails]
    if budget.webhook_url:
        placeholder = env_placeholder(f"budget {budget.name}", "WEBHOOK_URL", taken=placeholders)
        placeholders.add(placeholder)
        entry["webhook_url"] = f"${{{placeholder}}}"
    return entry


def _export_model(model: Model) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": _literal(model.name)}
    if model.display_name:
        entry["display_name"] = _literal(model.display_name)
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
    return env_placeholder(provider_name, "API_KEY", taken)


def env_placeholder(name: str, suffix: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The variable an exported file names for a secret of `name`: ("budget team a", "WEBHOOK_URL") ->
    BUDGET_TEAM_A_WEBHOOK_URL."""
    stem = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    if stem[:1].isdigit():
        stem = f"_{stem}"  # a shell variable cannot start with a digit
    placeholder, number = f"{stem}_{suffix}", 2
    # Names like a-b and a.b map to the same stem; each secret needs its own variable.
    while placeholder in taken:
        placeholder, number = f"{stem}_{number}_{suffix}", number + 1
    return placeholder


def _literal(text: str) -> str:
    """Escape text so that load_yaml gives it back unchanged."""
    return text.replace("${", "$${")


class _Dumper(yaml.SafeDumper):
    pass


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.ScalarNode:
    # As YAML numbers written digit for digit; reading one back through str() gives the same Decimal.
    if value == value.to_integral_value():
        return dumper.represent_int(int(value))
    return dumper.represent_scalar("tag:yaml.org,2002:float", format(value.normalize(), "f"))


_Dumper.add_representer(Decimal, _represent_decimal)


def dump_yaml(data: Mapping[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


# Paths in messages -----------------------------------------------------------------------------------


def _name_of(entry: Any) -> str | None:
    name = entry.get("name") if isinstance(entry, dict) else None
    if isinstance(name, bool) or not isinstance(name, str | int):
        return None
    return str(name).strip() or None


def _key_path(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _item_path(where: str, index: int, item: Any) -> str:
    name = _name_of(item)
    return f"{where}[{index}]" + (f" ({name})" if name else "")


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value!r}"
