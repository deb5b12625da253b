from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "budgets"
    verbose_name = "Budgets and alerts"

    def ready(self) -> None:
        from aspweb import config as config_file

        from . import config
        from .models import Budget
        from .services import cached_budgets

        cached_budgets.follow(Budget)
        config_file.section_register(config.SECTION)
