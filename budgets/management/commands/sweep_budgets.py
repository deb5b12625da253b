from typing import Any

from django.core.management.base import BaseCommand

from budgets.services import budgets_sweep


class Command(BaseCommand):
    help = ("Run the budgets' periodic pass once: release expired reservations, open new periods, reconcile "
            "spend with the ledger and fire due alerts (forecasts included). Celery beat runs it every minute; "
            "without a worker, run it from cron.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = budgets_sweep()
        counts = ((result.released, "reservation", "released"), (result.reconciled, "period", "reconciled"),
                  (len(result.fired), "alert", "fired"))
        self.stdout.write(", ".join(f"{n} {noun}{'' if n == 1 else 's'} {done}" for n, noun, done in counts) + ".")
