from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import F

from aspweb.money import usd
from aspweb.text import storable_argument
from providers.models import Model, Provider
from usage import services


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date: use YYYY-MM-DD.") from None


class Command(BaseCommand):
    help = (
        "Re-price a model's recorded calls in a range of days, each at the price version in force at its own "
        "time, after a price correction. Shows the difference; audited; the daily rollups follow."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", required=True, metavar="PROVIDER/MODEL", type=storable_argument,
                            help="The model's address.")
        parser.add_argument("--since", required=True, metavar="YYYY-MM-DD",
                            help="First day (in TIME_ZONE), included.")
        parser.add_argument("--until", metavar="YYYY-MM-DD", help="Last day, included; default: up to now.")
        parser.add_argument("--dry-run", action="store_true", help="Show the difference and change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        model = _model(options["model"])
        since = _day(options["since"])
        until = _day(options["until"]) if options["until"] else None
        if until is not None and until < since:
            raise CommandError("--until is before --since.")
        result = services.usage_reprice(
            model=model, since=services.day_start(since),
            until=services.day_start(until + timedelta(days=1)) if until else None,
            actor="reprice", dry_run=options["dry_run"],
        )
        span = f"{since} to {until or 'now'} ({settings.TIME_ZONE})"
        sign = "+" if result.delta >= 0 else "-"
        self.stdout.write(f"{model.provider.name}/{model.name}, {span}")
        self.stdout.write(f"Calls in range:  {result.records}")
        self.stdout.write(f"Calls changed:   {result.changed}")
        self.stdout.write(f"Old total:       {usd(result.old_total, 10)}")
        self.stdout.write(f"New total:       {usd(result.new_total, 10)}")
        self.stdout.write(f"Difference:      {sign}{usd(abs(result.delta), 10)}")
        if result.applied and result.changed:
            self.stdout.write(self.style.SUCCESS("Re-priced; recorded in the audit log."))
        elif not result.applied:
            self.stdout.write("Dry run: nothing was changed.")
        else:
            self.stdout.write("Nothing to change.")


def _model(address: str) -> Model:
    provider_name, sep, model_name = address.partition("/")
    if not sep or not provider_name or not model_name:
        raise CommandError(f"{address!r} is not a model address: use PROVIDER/MODEL.")
    # An archived provider keeps its history under its name; the active one of that name comes first.
    provider = Provider.objects.filter(name=provider_name).order_by(F("archived_at").desc(nulls_first=True)).first()
    if provider is None:
        raise CommandError(f"There is no provider named {provider_name!r}.")
    model = provider.models.filter(name=model_name).first()
    if model is None:
        raise CommandError(f"Provider {provider_name!r} has no model {model_name!r}.")
    return model
