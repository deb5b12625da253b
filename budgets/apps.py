from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "budgets"
    verbose_name = "Budgets and alerts"

    def ready(self) -> None:
        from .models import Budget
        from .services import hard_budgets

        hard_budgets.follow(Budget)
