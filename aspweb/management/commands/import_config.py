import os
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from aspweb.config import DEFAULT_ACTOR, ConfigError, config_import, load_yaml


class Command(BaseCommand):
    help = (
        "Create or update providers, models and prices from a YAML file (or - for standard input). "
        "${NAME} references are read from the environment. Nothing is written unless the whole file is valid."
    )
    # Tests hand in a stream for `-`, as with createsuperuser.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", help="The YAML file, or - to read standard input.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Check the file and show what would change, writing nothing.")

    def handle(self, *args: Any, file: str, dry_run: bool, **options: Any) -> None:
        if file == "-":
            text = (options.get("stdin") or sys.stdin).read()
        else:
            try:
                text = Path(file).read_text(encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"Cannot read {file}: {exc.strerror}") from None
        try:
            report = config_import(load_yaml(text, os.environ), actor=DEFAULT_ACTOR, dry_run=dry_run)
        except ConfigError as exc:
            # Every problem at once, so a file is fixed in one pass; Django prints this to stderr, exit 1.
            raise CommandError(
                f"{len(exc.errors)} error(s) in {'standard input' if file == '-' else file}, "
                "nothing was imported:\n" + "\n".join(exc.errors)
            ) from None
        for line in report.created:
            self.stdout.write(f"created: {line}")
        for line in report.updated:
            self.stdout.write(f"updated: {line}")
        if options["verbosity"] > 1:
            for line in report.unchanged:
                self.stdout.write(f"unchanged: {line}")
        self.stdout.write(self.style.SUCCESS(report.summary()))
