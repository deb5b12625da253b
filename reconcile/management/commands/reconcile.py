"""manage.py reconcile --provider NAME --since YYYY-MM-DD [--until YYYY-MM-DD]: compare the ledger with the
provider's report, one line per day and model; exit status 1 when anything drifts, 2 when a day could not
be checked."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from aspweb.money import usd
from providers.models import Provider
from reconcile import services
from reconcile.models import DayCheck


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a day: write YYYY-MM-DD.") from None


class Command(BaseCommand):
    help = "Compare the usage ledger with a provider's own usage and cost report, per day and model."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--provider", required=True, help="The provider's name in aspweb.")
        parser.add_argument("--since", required=True, help="First UTC day, YYYY-MM-DD.")
        parser.add_argument("--until", help="Last UTC day, YYYY-MM-DD (default: yesterday).")

    def handle(self, *args: Any, **options: Any) -> None:
        provider = Provider.objects.filter(name=options["provider"], archived_at__isnull=True).first()
        if provider is None:
            raise CommandError(f"No provider named {options['provider']!r}.")
        since = _day(options["since"])
        until = _day(options["until"]) if options["until"] else datetime.now(UTC).date() - timedelta(days=1)
        if until < since:
            raise CommandError("--until is before --since.")
        if (until - since).days > 366:
            raise CommandError("Reconcile at most a year at a time.")
        drift = unchecked = False
        for check in services.reconcile(provider=provider, since=since, until=until):
            if check.state in (DayCheck.State.PENDING, DayCheck.State.FAILED):
                unchecked = True
                self.stdout.write(f"{check.day}  {check.get_state_display().lower()}: {check.message}")
                continue
            for row in check.comparisons.all():
                difference = usd(row.difference, 6) if row.difference is not None else "—"
                self.stdout.write(f"{check.day}  {row.model_name}  ledger {usd(row.ledger_cost, 6)}  "
                                  f"provider {usd(row.provider_cost, 6)}  difference {difference}  {row.status}")
            if not check.comparisons.exists():
                self.stdout.write(f"{check.day}  no usage on either side  match")
            drift = drift or check.state == DayCheck.State.DRIFT
        if drift:
            raise SystemExit(1)
        if unchecked:
            raise SystemExit(2)
