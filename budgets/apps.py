from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "budgets"
    verbose_name = "Budgets and alerts"

    def ready(self) -> None:
        from aspweb import config as config_file
        from providers import hooks
        from usage.signals import records_priced, records_written

        from . import config, evaluation, holds
        from .models import Budget

        holds.cached_budgets.follow(Budget)
        config_file.section_register(config.SECTION)
        # The call path and the ledger know budgets only through these: neither imports this app.
        hooks.limits_register(holds.hard_limits)
        records_priced.connect(holds.usage_records_settle, dispatch_uid="budgets.records_priced")
        records_written.connect(evaluation.records_written, dispatch_uid="budgets.records_written")
