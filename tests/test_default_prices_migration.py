"""Upgrading: models priced from genai-prices' defaults before prices had 1-hour writes and tiers get a new
default version with both; versions an admin set are left alone, and recorded calls keep their cost."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("providers", "0004_model_max_output_tokens")]
AFTER = [("providers", "0005_default_prices_with_both_writes_and_tiers")]


@pytest.mark.django_db(transaction=True)
def test_default_prices_gain_the_1h_write_and_tiers_and_admin_prices_stay() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Provider, Model, Price = (apps.get_model("providers", name) for name in ("Provider", "Model", "Price"))
    provider = Provider.objects.create(name="claude", kind="anthropic")
    then = datetime(2025, 1, 1, tzinfo=UTC)
    # As genai-prices' default was stored before: the 5-minute write only, no tiers.
    sonnet = Model.objects.create(provider=provider, name="claude-sonnet-4-5")
    Price.objects.create(model=sonnet, effective_from=then, source="default", input=Decimal(3), output=Decimal(15),
                         cache_read=Decimal("0.3"), cache_write=Decimal("3.75"))
    haiku = Model.objects.create(provider=provider, name="claude-haiku-4-5")
    Price.objects.create(model=haiku, effective_from=then, source="admin", input=Decimal(1), output=Decimal(5))

    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    from providers.models import Model as CurrentModel

    sonnet = CurrentModel.objects.get(name="claude-sonnet-4-5")
    assert sonnet.prices.count() == 2
    current = sonnet.current_price()
    assert (current.source, current.cache_write_1h) == ("default", Decimal(6))
    assert [(t.above, t.input, t.output, t.cache_write_1h) for t in current.tier_list] == [
        (200_000, Decimal(6), Decimal("22.5"), Decimal(12))]
    assert CurrentModel.objects.get(name="claude-haiku-4-5").prices.count() == 1  # an admin's price stays
