"""Upgrading: the budget periods that exist get the spend of their next threshold alert, past the thresholds
that already fired, so that the evaluation after usage watches each for what is still to come."""

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("budgets", "0003_api_key_in_gateway")]
AFTER = [("budgets", "0004_budgetperiod_next_alert_at")]


@pytest.mark.django_db(transaction=True)
def test_existing_periods_get_the_spend_of_their_next_alert() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Budget, BudgetPeriod, AlertEvent = (apps.get_model("budgets", name)
                                        for name in ("Budget", "BudgetPeriod", "AlertEvent"))
    team = Budget.objects.create(name="Team", amount=Decimal(200), thresholds=[50, 80, 100])
    quiet = Budget.objects.create(name="Quiet", amount=Decimal(10), thresholds=[])
    fresh = BudgetPeriod.objects.create(budget=team, start=date(2025, 5, 1), end=date(2025, 6, 1), spent=1)
    halfway = BudgetPeriod.objects.create(budget=team, start=date(2025, 4, 1), end=date(2025, 5, 1), spent=120)
    done = BudgetPeriod.objects.create(budget=team, start=date(2025, 3, 1), end=date(2025, 4, 1), spent=300)
    silent = BudgetPeriod.objects.create(budget=quiet, start=date(2025, 5, 1), end=date(2025, 6, 1), spent=5)
    for period, thresholds in ((halfway, [50]), (done, [50, 80, 100])):
        for threshold in thresholds:
            AlertEvent.objects.create(budget=team, period=period, kind="threshold", threshold=threshold,
                                      spent=period.spent, amount=team.amount, message="…")
    AlertEvent.objects.create(budget=team, period=fresh, kind="test", spent=1, amount=team.amount, message="…")

    executor.loader.build_graph()
    executor.migrate(AFTER)

    apps = executor.loader.project_state(AFTER).apps
    after = {period.pk: period.next_alert_at for period in apps.get_model("budgets", "BudgetPeriod").objects.all()}
    assert after == {fresh.pk: Decimal(100), halfway.pk: Decimal(160), done.pk: None, silent.pk: None}
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
