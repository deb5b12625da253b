"""Upgrading moves API keys, routes and deployments from providers to the gateway app with every row: the
keys keep their ledger records and budgets, the routes their deployments, the tables take gateway_ names, and
the permission to make one's own keys stays granted."""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("gateway", None), ("providers", "0009_api_key_limit_bounds"),
          ("usage", "0005_cache_write_1h_and_unpriced"), ("budgets", "0002_alert_text_unbounded")]


@pytest.mark.django_db(transaction=True)
def test_keys_routes_and_deployments_move_to_the_gateway_with_their_rows() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE[1:]).apps
    assert "providers_apikey" in connection.introspection.table_names()
    User = old.get_model("accounts", "User")
    Permission = old.get_model("auth", "Permission")
    ContentType = old.get_model("contenttypes", "ContentType")
    owner = User.objects.create(email="owner@example.com")
    provider = old.get_model("providers", "Provider").objects.create(name="lab", kind="ollama")
    model, other = (old.get_model("providers", "Model").objects.create(provider=provider, name=name)
                    for name in ("m", "n"))
    key = old.get_model("providers", "ApiKey").objects.create(name="ci", user=owner, prefix="ask-abc",
                                                              key_hash="0" * 64, rpm_limit=60)
    route = old.get_model("providers", "Route").objects.create(name="fast-chat", strategy="weighted")
    deployment = old.get_model("providers", "Deployment").objects.create(route=route, model=model, priority=2,
                                                                         weight=3)
    record = old.get_model("usage", "UsageRecord").objects.create(
        source="gateway", status="ok", api_key=key, provider=provider, model=model, provider_name="lab",
        model_name="m", cost=Decimal("0.5"))
    budget = old.get_model("budgets", "Budget").objects.create(name="ci keys", scope="api_key", api_key=key,
                                                               amount=Decimal(10))
    # The self-service permission, granted before the move (the content type as a database upgraded from
    # an earlier version has it).
    key_type, _ = ContentType.objects.get_or_create(app_label="providers", model="apikey")
    add_key, _ = Permission.objects.get_or_create(content_type=key_type, codename="add_apikey",
                                                  defaults={"name": "Can add API key"})
    owner.user_permissions.add(add_key)

    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    from accounts.models import User as CurrentUser
    from budgets.models import Budget
    from gateway.models import ApiKey, Deployment, Route
    from usage.models import UsageRecord

    tables = connection.introspection.table_names()
    assert {"gateway_apikey", "gateway_route", "gateway_deployment"} <= set(tables)
    assert not {"providers_apikey", "providers_route", "providers_deployment"} & set(tables)
    moved_key = ApiKey.objects.get(pk=key.pk)
    assert (moved_key.name, moved_key.prefix, moved_key.rpm_limit, moved_key.user_id) == ("ci", "ask-abc", 60,
                                                                                           owner.pk)
    moved_route = Route.objects.get(pk=route.pk)
    assert (moved_route.name, moved_route.strategy) == ("fast-chat", "weighted")
    assert list(moved_route.deployments.values_list("pk", "model_id", "priority", "weight")) == [
        (deployment.pk, model.pk, 2, 3)]
    assert UsageRecord.objects.get(pk=record.pk).api_key == moved_key
    assert Budget.objects.get(pk=budget.pk).api_key == moved_key
    assert list(moved_key.usage_records.values_list("pk", flat=True)) == [record.pk]
    # New rows continue the ids (the sequences came along on PostgreSQL).
    assert Deployment.objects.create(route=moved_route, model_id=other.pk).pk > deployment.pk
    assert ApiKey.objects.create(name="next", prefix="ask-next", key_hash="1" * 64).pk > key.pk
    # The content type followed its model, and with it the permission granted on it.
    assert ContentType.objects.filter(app_label="gateway", model="apikey").count() == 1
    assert not ContentType.objects.filter(app_label="providers", model__in=["apikey", "route", "deployment"])
    assert CurrentUser.objects.get(pk=owner.pk).has_perm("gateway.add_apikey")
