"""The budgets section of the config file (aspweb/config.py runs it): budgets by name, checked with the form
the UI uses; a budget names its target as people see it (BUDGET_TARGETS)."""

from dataclasses import dataclass
from typing import Any

from accounts.models import Team, User
from aspweb import config
from providers.forms import plain
from providers.models import Model, Provider
from usage.models import api_key_model

from . import services
from .forms import BudgetForm
from .models import Budget

BUDGET_KEYS = ("name", "scope", "target", "period", "amount", "thresholds", "forecast", "hard_limit", "emails",
               "webhook_url")
# What names a budget's target in a file, by scope.
BUDGET_TARGETS = {"provider": "a provider name", "model": "PROVIDER/MODEL", "user": "a user's e-mail",
                  "api_key": "an API key's prefix", "team": "a team's name", "tag": "a tag",
                  "end_user": "an end user's id"}
# Scopes whose target is text, kept as the file writes it (the form checks it).
TEXT_TARGETS = ("tag", "end_user")


@dataclass
class _BudgetPlan:
    existing: Budget | None
    form: BudgetForm
    # A target this file creates (a provider or model): looked up once the file's providers are written.
    pending_target: str | None = None


def _check(entries: Any, declared: config.Declared, errors: list[str]) -> list[_BudgetPlan]:
    """Budgets, by name, checked with the form the UI uses. A budget names its target as people see it
    (BUDGET_TARGETS); a provider or model may be one this file creates."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.append(f"budgets: expected a list of budgets, not {config.type_name(entries)}")
        return []
    plans, seen = [], {}
    for index, entry in enumerate(entries):
        where = config.item_path("budgets", index, entry)
        if not isinstance(entry, dict):
            errors.append(f"{where}: expected a mapping (name: ..., scope: ..., amount: ...), "
                          f"not {config.type_name(entry)}")
            continue
        config.check_keys(entry, BUDGET_KEYS, where, "budget settings are", errors)
        name = config.name_of(entry)
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
        target, pending = _budget_target(entry, scope, existing, where, declared, errors)
        # A target still to be created, or one already reported: the form checks the rest.
        with_target = not pending and len(errors) == known
        blank = BudgetForm(instance=existing, with_target=with_target)
        data = config.form_data(blank, values, where, errors)
        if with_target:
            for column in Budget.TARGETS.values():
                chosen = target is not None and Budget.TARGETS.get(scope) == column
                data[column] = (target if column in TEXT_TARGETS else target.pk) if chosen else ""
        form = BudgetForm(data, instance=existing, with_target=with_target)
        config.form_errors(form, where, errors)
        plans.append(_BudgetPlan(existing, form, pending))
    return plans


def _budget_target(entry: dict[str, Any], scope: Any, existing: Budget | None, where: str,
                   declared_sections: config.Declared, errors: list[str]) -> tuple[Any, str | None]:
    """The budget's target row (a tag's or end user's text), or (None, the target) when it is a provider,
    model or team this file creates."""
    declared_providers, declared = declared_sections.providers, declared_sections.models
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
    if scope in TEXT_TARGETS:
        return target, None
    if scope == Budget.Scope.TEAM:
        row = Team.objects.filter(name__iexact=target).first()
        if row is None and target.lower() in declared_sections.teams:
            return None, target
    elif scope == Budget.Scope.PROVIDER:
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
        row = api_key_model().objects.filter(prefix=target, revoked_at__isnull=True).first()
    if row is None:
        known = " in the catalog or in this file" if scope in (Budget.Scope.PROVIDER, Budget.Scope.MODEL) else ""
        errors.append(f"{where}.target: no {scope.replace('_', ' ')} {target!r}{known} "
                      f"(a {scope} budget's target is {BUDGET_TARGETS[scope]})")
    return row, None


def _apply(plans: list[_BudgetPlan], actor: Any, report: config.Report) -> None:
    for plan in plans:
        _apply_budget(plan, actor, report)


def _apply_budget(plan: _BudgetPlan, actor: Any, report: config.Report) -> None:
    budget, changed = plan.form.save(commit=False), list(plan.form.changed_data)
    if plan.pending_target is not None:
        column = Budget.TARGETS[budget.scope]
        if column == "team":
            target = Team.objects.get(name__iexact=plan.pending_target)
        elif column == "provider":
            target = Provider.objects.active().get(name=plan.pending_target)
        else:
            provider_name, _, model_name = plan.pending_target.partition("/")
            target = Model.objects.get(provider__archived_at__isnull=True, provider__name=provider_name,
                                       name=model_name)
        for name in Budget.TARGETS.values():
            setattr(budget, name, target if name == column else "" if name in TEXT_TARGETS else None)
        changed.append(column)
    if plan.existing is None:
        services.budget_save(budget=budget, actor=actor)
        report.created.append(f"budget {budget.name}")
    elif changed:
        services.budget_save(budget=budget, actor=actor, changed=changed)
        report.updated.append(f"budget {budget.name} ({', '.join(changed)})")
    else:
        report.unchanged.append(f"budget {budget.name}")


def _export(placeholders: set[str]) -> list[dict[str, Any]]:
    return [_export_budget(budget, placeholders) for budget in
            Budget.objects.select_related("provider", "model__provider", "user", "api_key", "team")]


def _export_budget(budget: Budget, placeholders: set[str]) -> dict[str, Any]:
    """A budget as the file names it. A webhook URL is a credential (Slack's are), so it is a placeholder."""
    entry: dict[str, Any] = {"name": config.literal(budget.name), "scope": budget.scope}
    target = budget.target
    if target is not None:
        entry["target"] = config.literal({
            Budget.Scope.PROVIDER: lambda: target.name,
            Budget.Scope.MODEL: lambda: f"{target.provider.name}/{target.name}",
            Budget.Scope.USER: lambda: target.email,
            Budget.Scope.API_KEY: lambda: target.prefix,
            Budget.Scope.TEAM: lambda: target.name,
            Budget.Scope.TAG: lambda: target,
            Budget.Scope.END_USER: lambda: target,
        }[budget.scope]())
    entry.update(period=budget.period, amount=plain(budget.amount), thresholds=list(budget.thresholds),
                 forecast=budget.forecast, hard_limit=budget.hard_limit)
    if budget.emails:
        entry["emails"] = [config.literal(address) for address in budget.emails]
    if budget.webhook_url:
        placeholder = config.env_placeholder(f"budget {budget.name}", "WEBHOOK_URL", taken=placeholders)
        placeholders.add(placeholder)
        entry["webhook_url"] = f"${{{placeholder}}}"
    return entry


SECTION = config.Section("budgets", check=_check, apply=_apply, export=_export)
