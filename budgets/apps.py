from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "budgets"
    verbose_name = "Budgets and alerts"

    def ready(self) -> None:
        from aspweb import config as config_file

        from . import config
        from .models import Budget
        from .services import budgets_kept

        budgets_kept.follow(Budget)
        config_file.section_register(config.SECTION)
