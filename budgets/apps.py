from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "budgets"
    verbose_name = "Budgets and alerts"

    def ready(self) -> None:
        from .models import Budget
        from .services import cached_budgets

        cached_budgets.follow(Budget)
