"""Writes of routes and their deployments, each audited (API keys': apikeys.py)."""

from typing import Any

from django.db import transaction

from accounts.audit import audit_log

from .models import Deployment, Route


def route_save(*, route: Route, actor: Any, changed: list[str] | None = None) -> Route:
    creating = route.pk is None
    with transaction.atomic():
        route.save()
        if creating:
            audit_log(actor, "route.create", route, strategy=route.get_strategy_display())
        elif changed:
            audit_log(actor, "route.update", route, fields=sorted(changed))
    return route


def route_delete(*, route: Route, actor: Any) -> None:
    with transaction.atomic():
        audit_log(actor, "route.delete", route)
        route.delete()


def deployment_add(*, deployment: Deployment, actor: Any) -> Deployment:
    with transaction.atomic():
        deployment.save()
        audit_log(actor, "route.deployment_add", deployment.route, model=str(deployment.model),
                  priority=deployment.priority, weight=deployment.weight)
    return deployment


def deployment_remove(*, deployment: Deployment, actor: Any) -> None:
    with transaction.atomic():
        audit_log(actor, "route.deployment_remove", deployment.route, model=str(deployment.model))
        deployment.delete()
