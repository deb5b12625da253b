"""Route pages: create, deployments, circuit state and reset, delete; all audited."""

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent
from gateway import routing
from gateway.models import Deployment, Route
from providers.models import Model, Provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def models() -> list[Model]:
    cache.clear()
    provider = Provider.objects.create(name="p", kind="ollama")
    return [Model.objects.create(provider=provider, name=name) for name in ("a", "b")]


def test_create_route_and_add_deployments(admin_client: Client, models: list[Model]) -> None:
    response = admin_client.post(reverse("route_add"), {"name": "fast-chat", "strategy": "priority",
                                                        "enabled": "on", "cache_ttl_seconds": "0"})
    route = Route.objects.get(name="fast-chat")
    assert response["Location"] == reverse("route_detail", args=[route.pk])
    url = reverse("route_detail", args=[route.pk])
    admin_client.post(url, {"model": models[0].pk, "priority": "1", "weight": "1"})
    admin_client.post(url, {"model": models[1].pk, "priority": "2", "weight": "3"})
    assert [(d.model.name, d.priority, d.weight) for d in route.deployments.all()] == [("a", 1, 1), ("b", 2, 3)]
    duplicate = admin_client.post(url, {"model": models[0].pk, "priority": "5", "weight": "1"})
    assert "This model already serves the route." in duplicate.content.decode()
    assert route.deployments.count() == 2
    assert set(AuditEvent.objects.values_list("action", flat=True)) == {"route.create", "route.deployment_add"}
    # The audit log says the strategy as the route's page does, not by its stored value.
    assert AuditEvent.objects.get(action="route.create").details == {"strategy": "Priority, with fallback"}


@pytest.mark.parametrize(
    ("name", "message"),
    [("has/slash", "no slash"), ("", "This field is required.")],
)
def test_bad_route_names(admin_client: Client, name: str, message: str) -> None:
    response = admin_client.post(reverse("route_add"), {"name": name, "strategy": "priority",
                                                        "cache_ttl_seconds": "0"})
    assert message in response.content.decode()
    assert not Route.objects.exists()


def test_disabled_models_cannot_be_deployed(admin_client: Client, models: list[Model]) -> None:
    Model.objects.filter(pk=models[1].pk).update(enabled=False)
    route = Route.objects.create(name="r")
    response = admin_client.post(reverse("route_detail", args=[route.pk]), {"model": models[1].pk,
                                                                            "priority": "1", "weight": "1"})
    assert "Select a valid choice" in response.content.decode()


def test_circuit_state_is_shown_and_can_be_reset(admin_client: Client, models: list[Model],
                                                 settings: object) -> None:
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    route = Route.objects.create(name="r")
    deployment = Deployment.objects.create(route=route, model=models[0])
    routing.record_failure(models[0].pk)
    routing.record_failure(models[0].pk)
    routing.latency_observe(models[0].pk, 250)
    html = admin_client.get(reverse("route_detail", args=[route.pk])).content.decode()
    assert "cooling down" in html and "250 ms" in html
    admin_client.post(reverse("deployment_reset", args=[deployment.pk]))
    assert routing.circuit(models[0].pk).state == "closed"
    assert AuditEvent.objects.filter(action="route.circuit_reset").exists()


def test_remove_deployment_and_delete_route(admin_client: Client, models: list[Model]) -> None:
    route = Route.objects.create(name="r")
    deployment = Deployment.objects.create(route=route, model=models[0])
    admin_client.post(reverse("deployment_remove", args=[deployment.pk]))
    assert not Deployment.objects.exists()
    admin_client.post(reverse("route_delete", args=[route.pk]))
    assert not Route.objects.exists()
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "route.deployment_remove", "route.delete"]


def test_a_deployment_of_an_archived_provider_says_archived(admin_client: Client, models: list[Model]) -> None:
    route = Route.objects.create(name="fast-chat")
    Deployment.objects.create(route=route, model=models[0])
    Model.objects.filter(pk=models[1].pk).update(enabled=False)
    Deployment.objects.create(route=route, model=models[1])
    html = admin_client.get(reverse("route_detail", args=[route.pk])).content.decode()
    assert html.count('<span class="badge muted">disabled</span>') == 1
    Provider.objects.filter(pk=models[0].provider_id).update(archived_at="2026-12-01T00:00Z", enabled=False)
    html = admin_client.get(reverse("route_detail", args=[route.pk])).content.decode()
    assert html.count('<span class="badge muted">archived</span>') == 2
    assert '<span class="badge muted">disabled</span>' not in html
