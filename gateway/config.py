"""The routes section of the config file (aspweb/config.py runs it): routes and their deployments, named
PROVIDER/MODEL. API keys are not in the file: they are made on their page or with `manage.py apikey`."""

from dataclasses import dataclass
from typing import Any

from aspweb import config
from providers.models import Model

from . import services
from .forms import RouteForm
from .models import PRIORITY_RANGE, WEIGHT_RANGE, Deployment, Route

ROUTE_KEYS = (*RouteForm._meta.fields, "deployments")
DEPLOYMENT_KEYS = ("model", "priority", "weight")


@dataclass
class _RoutePlan:
    existing: Route | None
    form: RouteForm
    # (provider name, model name, priority, weight), in the file's order
    deployments: list[tuple[str, str, int, int]]


def _check(entries: Any, declared: config.Declared, errors: list[str]) -> list[_RoutePlan]:
    """Routes name their deployments as PROVIDER/MODEL: a model in the catalog or in this file."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.append(f"routes: expected a list of routes, not {config.type_name(entries)}")
        return []
    plans, seen = [], {}
    for index, entry in enumerate(entries):
        where = config.item_path("routes", index, entry)
        if not isinstance(entry, dict):
            errors.append(f"{where}: expected a mapping (name: ..., deployments: ...), not {config.type_name(entry)}")
            continue
        config.check_keys(entry, ROUTE_KEYS, where, "route settings are", errors)
        name = config.name_of(entry)
        if name in seen:
            errors.append(f"{where}.name: route {name!r} appears twice in the file (also {seen[name]})")
        elif name:
            seen[name] = where
        existing = Route.objects.filter(name=name).first() if name else None
        blank = RouteForm(instance=existing)
        form = RouteForm(config.form_data(blank, entry, where, errors), instance=existing)
        config.form_errors(form, where, errors)
        plans.append(_RoutePlan(existing, form, _check_deployments(entry.get("deployments"), where, declared.models,
                                                                   errors)))
    return plans


def _check_deployments(entries: Any, where: str, declared: set[tuple[str, str]],
                       errors: list[str]) -> list[tuple[str, str, int, int]]:
    where = f"{where}.deployments"
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.append(f"{where}: expected a list of deployments, not {config.type_name(entries)}")
        return []
    deployments, seen = [], set()
    for index, entry in enumerate(entries):
        item = f"{where}[{index}]"
        if not isinstance(entry, dict):
            errors.append(f"{item}: expected a mapping (model: PROVIDER/MODEL, priority: ..., weight: ...)")
            continue
        config.check_keys(entry, DEPLOYMENT_KEYS, item, "deployment settings are", errors)
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


def _apply(plans: list[_RoutePlan], actor: Any, report: config.Report) -> None:
    for plan in plans:
        _apply_route(plan, actor, report)


def _apply_route(plan: _RoutePlan, actor: Any, report: config.Report) -> None:
    """A route's deployments become exactly the file's list: a route is defined by what serves it."""
    if plan.existing is None:
        route = services.route_save(route=plan.form.save(commit=False), actor=actor)
        changes = ["created"]
    else:
        route, changes = plan.existing, list(plan.form.changed_data)
        if changes:
            services.route_save(route=plan.form.save(commit=False), actor=actor, changed=changes)
    current = {d.model_id: d for d in route.deployments.select_related("model")}
    wanted = set()
    for provider_name, model_name, priority, weight in plan.deployments:
        model = Model.objects.get(provider__archived_at__isnull=True, provider__name=provider_name, name=model_name)
        wanted.add(model.pk)
        deployment = current.get(model.pk)
        if deployment is None:
            services.deployment_add(deployment=Deployment(route=route, model=model, priority=priority,
                                                          weight=weight), actor=actor)
            changes.append(f"+{model}")
        elif (deployment.priority, deployment.weight) != (priority, weight):
            deployment.priority, deployment.weight = priority, weight
            services.deployment_add(deployment=deployment, actor=actor)
            changes.append(f"~{model}")
    for model_id, deployment in current.items():
        if model_id not in wanted:
            services.deployment_remove(deployment=deployment, actor=actor)
            changes.append(f"-{deployment.model}")
    if plan.existing is None:
        report.created.append(f"route {route.name}")
    elif changes:
        report.updated.append(f"route {route.name} ({', '.join(changes)})")
    else:
        report.unchanged.append(f"route {route.name}")


def _export(placeholders: set[str]) -> list[dict[str, Any]]:
    return [
        {"name": route.name, "strategy": route.strategy, "enabled": route.enabled,
         "cache_ttl_seconds": route.cache_ttl_seconds,
         **({"description": config.literal(route.description)} if route.description else {}),
         "deployments": [{"model": config.literal(str(d.model)), "priority": d.priority, "weight": d.weight}
                         for d in route.deployments.select_related("model__provider")]}
        for route in Route.objects.all()
    ]


SECTION = config.Section("routes", check=_check, apply=_apply, export=_export)
