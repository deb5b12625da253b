from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "budgets"
    verbose_name = "Budgets and alerts"

    def ready(self) -> None:
        from providers import calls
        from usage.signals import records_written

        from . import evaluation, holds
        from .models import Budget

        holds.budgets_kept.follow(Budget)
        # The call path and the ledger know budgets only through these: neither imports this app.
        if holds.hard_limits not in calls.call_limits:
            calls.call_limits.append(holds.hard_limits)
        records_written.connect(evaluation.records_written, dispatch_uid="budgets.records_written")
