from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from aspweb.config import config_export, dump_yaml


class Command(BaseCommand):
    help = (
        "Write every active provider, its models and their current prices, the routes and the budgets as YAML "
        "for import_config. API keys and webhook URLs are written as ${NAME} placeholders, never the secrets."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--output", "-o", help="Write to this file instead of standard output.")

    def handle(self, *args: Any, output: str | None, **options: Any) -> None:
        data = config_export()
        placeholders = [p["api_key"][2:-1] for p in data["providers"] if "api_key" in p]
        webhooks = [b["webhook_url"][2:-1] for b in data.get("budgets", []) if "webhook_url" in b]
        header = ["# aspweb providers, models and current prices (USD per 1M tokens), routes and budgets, "
                  "for import_config."]
        if placeholders:
            header.append("# API keys are not in this file: set these environment variables to import it:")
            header.extend(f"#   {name}" for name in placeholders)
        if webhooks:
            header.append("# Budget webhook URLs are not in this file either: set these environment variables:")
            header.extend(f"#   {name}" for name in webhooks)
        text = "\n".join(header) + "\n" + dump_yaml(data)
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stdout.write(f"Wrote {len(data['providers'])} providers to {output}.")
        else:
            self.stdout.write(text, ending="")
