"""A budget is evaluated once it is made or changed, the way the sweep evaluates it: one made below what its
scope already spent this period fires the thresholds crossed at once, not at the next paid call; one edited
down fires what the new amount crosses. Through the form, config import and the service alike, and never
twice."""

import io
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from accounts.models import User
from aspweb.config import config_import, load_yaml
from budgets import services, tasks
from budgets.models import AlertEvent, Budget, Delivery, Notification
from tests.budgets_support import make_budget, make_model, spend
from tests.conftest import signed_in


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the budgets whose evaluation was dispatched (and then run, eagerly, as usual)."""
    ids: list[int] = []
    delay = tasks.budget_evaluate.delay

    def spy(budget_id: int) -> object:
        ids.append(budget_id)
        return delay(budget_id)

    monkeypatch.setattr(tasks.budget_evaluate, "delay", spy)
    return ids


def _thresholds(budget: Budget) -> list[tuple[int, bool]]:
    return list(AlertEvent.objects.filter(budget=budget, kind="threshold").order_by("threshold")
                .values_list("threshold", "notified"))


def test_a_budget_added_below_current_spend_fires_the_crossed_thresholds_at_once(
        db: None, finance_user: User, django_capture_on_commit_callbacks: Callable, dispatched: list[int]) -> None:
    model = make_model()
    spend(model, "0.6")
    client = signed_in(finance_user)
    data = {"name": "Lab", "scope": "global", "period": "monthly", "amount": "1", "thresholds": "25, 50, 80"}

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("budget_add"), data)

    budget = Budget.objects.get(name="Lab")
    assert response.status_code == 302 and dispatched == [budget.pk]
    # 25% and 50% are behind it already: both recorded, the higher one sent; 80% is still ahead.
    assert _thresholds(budget) == [(25, False), (50, True)]
    [notification] = Notification.objects.filter(user=finance_user)
    assert notification.title == "Budget Lab: 50% reached"
    assert "$0.60 spent, $0.40 left." in notification.body
    assert "Budget Lab: 50% reached" in client.get(reverse("notification_list")).content.decode()
    detail = client.get(reverse("budget_detail", args=[budget.pk])).content.decode()
    fired = detail.split('<ul class="thresholds">', 1)[1].split("</ul>", 1)[0]
    assert fired.count("fired</span>") == 2 and fired.count("not yet</span>") == 1

    # The next paid call fires nothing it already fired.
    with django_capture_on_commit_callbacks(execute=True):
        spend(model, "0.05")
    assert _thresholds(budget) == [(25, False), (50, True)]
    assert Notification.objects.filter(user=finance_user).count() == 1
    assert services.budgets_sweep().fired == []


def test_a_budget_added_under_its_thresholds_fires_nothing(
        db: None, finance_user: User, django_capture_on_commit_callbacks: Callable, dispatched: list[int]) -> None:
    spend(make_model(), "0.1")
    data = {"name": "Lab", "scope": "global", "period": "monthly", "amount": "1", "thresholds": "50"}
    with django_capture_on_commit_callbacks(execute=True):
        assert signed_in(finance_user).post(reverse("budget_add"), data).status_code == 302
    assert dispatched == [Budget.objects.get().pk]
    assert not AlertEvent.objects.exists() and not Notification.objects.exists()


def test_editing_the_amount_down_fires_what_it_crosses(
        db: None, finance_user: User, django_capture_on_commit_callbacks: Callable, dispatched: list[int]) -> None:
    model = make_model()
    budget = make_budget("Lab", amount=Decimal(10), thresholds=[50, 100])
    spend(model, "3")
    client = signed_in(finance_user)
    data = {"name": "Lab", "scope": "global", "period": "monthly", "thresholds": "50, 100"}

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("budget_edit", args=[budget.pk]), {**data, "amount": "8"})
    assert _thresholds(budget) == []  # 37.5%: nothing crossed

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("budget_edit", args=[budget.pk]), {**data, "amount": "5"})
    assert _thresholds(budget) == [(50, True)]
    message = AlertEvent.objects.get(budget=budget).message
    assert message.startswith("Budget “Lab” (every call) reached 50% of its $5.00")

    # Saving it unchanged evaluates nothing; raising it again fires nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("budget_edit", args=[budget.pk]), {**data, "amount": "5"})
    assert dispatched == [budget.pk, budget.pk]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("budget_edit", args=[budget.pk]), {**data, "amount": "50"})
    assert _thresholds(budget) == [(50, True)]
    assert Notification.objects.filter(user=finance_user).count() == 1


def test_moving_a_budget_to_another_scope_counts_the_new_scopes_spend(
        db: None, finance_user: User, django_capture_on_commit_callbacks: Callable) -> None:
    quiet, busy = make_model("quiet"), make_model("busy")
    budget = make_budget("Lab", scope="model", model=quiet, amount=Decimal(1), thresholds=[50])
    spend(busy, "0.7")
    services.budgets_sweep()
    assert _thresholds(budget) == []
    data = {"name": "Lab", "scope": "model", "model": busy.pk, "period": "monthly", "amount": "1",
            "thresholds": "50"}

    with django_capture_on_commit_callbacks(execute=True):
        signed_in(finance_user).post(reverse("budget_edit", args=[budget.pk]), data)

    # The period's spend is the new scope's, from the ledger, before the alerts are evaluated.
    assert _thresholds(budget) == [(50, True)]
    assert AlertEvent.objects.get(budget=budget).spent == Decimal("0.7")


CONFIG = """\
budgets:
  - name: Everything
    scope: global
    period: monthly
    amount: {amount}
    thresholds: [50, 90]
"""


def test_config_import_evaluates_the_budgets_it_creates_or_changes(
        db: None, finance_user: User, django_capture_on_commit_callbacks: Callable, dispatched: list[int]) -> None:
    spend(make_model(), "0.6")

    with django_capture_on_commit_callbacks(execute=True):
        config_import(load_yaml(CONFIG.format(amount=1), {}), actor="import_config", dry_run=True)
    assert not Budget.objects.exists() and not AlertEvent.objects.exists()  # a dry run fires nothing

    with django_capture_on_commit_callbacks(execute=True):
        config_import(load_yaml(CONFIG.format(amount=1), {}), actor="import_config")
    budget = Budget.objects.get(name="Everything")
    assert _thresholds(budget) == [(50, True)]

    with django_capture_on_commit_callbacks(execute=True):
        config_import(load_yaml(CONFIG.format(amount=1), {}), actor="import_config")
    assert dispatched == [budget.pk]  # unchanged the second time: nothing to evaluate

    with django_capture_on_commit_callbacks(execute=True):
        config_import(load_yaml(CONFIG.format(amount="0.65"), {}), actor="import_config")
    assert _thresholds(budget) == [(50, True), (90, True)]
    assert Notification.objects.filter(user=finance_user).count() == 2


def test_the_import_config_command_evaluates_too(
        db: None, finance_user: User, tmp_path: Path, django_capture_on_commit_callbacks: Callable) -> None:
    spend(make_model(), "0.95")
    path = tmp_path / "aspweb.yaml"
    path.write_text(CONFIG.format(amount=1))
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_config", str(path), stdout=io.StringIO())
    assert _thresholds(Budget.objects.get()) == [(50, False), (90, True)]
    assert Delivery.objects.filter(alert__threshold=90, channel="in_app", status="sent").exists()


def test_a_budget_deleted_before_its_evaluation_runs_is_skipped(db: None) -> None:
    budget = make_budget()
    pk = budget.pk
    budget.delete()
    assert services.budget_evaluate_by_id(budget_id=pk) == []
