from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from usage import services


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        raise CommandError(f"{value!r} is not a date: use YYYY-MM-DD.") from None


class Command(BaseCommand):
    help = (
        "Recompute the daily usage rollups from the raw records, for the days given (default: all). Needed only "
        "after records were written in bulk outside aspweb's call path (benchmark seeding) or TIME_ZONE changed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", metavar="YYYY-MM-DD", help="First day, included.")
        parser.add_argument("--until", metavar="YYYY-MM-DD", help="Last day, included.")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = services.daily_usage_rebuild(since=_day(options["since"]), until=_day(options["until"]))
        self.stdout.write(f"{rows} daily usage rows rebuilt.")
