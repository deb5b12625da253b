from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import User
from accounts.teams import team_get
from aspweb.text import storable_argument
from gateway import apikeys
from gateway.models import RPM_RANGE, TPM_RANGE, ApiKey


class Command(BaseCommand):
    help = (
        "Gateway API keys. `create` prints a new key (only the key, on standard output, for scripts), "
        "`revoke PREFIX` refuses a key from now on, `log-bodies PREFIX on|off` turns the logging of its prompts and "
        "answers on or off, `list` shows the live keys (--all: every key)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Make a key and print it.")
        create.add_argument("--name", required=True, type=storable_argument, help="What will use the key.")
        create.add_argument("--user", metavar="EMAIL", type=storable_argument,
                            help="The person it belongs to; omit for an application.")
        create.add_argument("--models", default="", metavar="A,B", type=storable_argument,
                            help="Comma-separated model addresses (PROVIDER/MODEL or PROVIDER/*) and route names; "
                                 "omit for all.")
        create.add_argument("--team", metavar="NAME", type=storable_argument,
                            help="The team its calls count for (its name, whatever its case).")
        create.add_argument("--rpm", type=int, help="Requests per minute.")
        create.add_argument("--tpm", type=int, help="Tokens per minute.")
        create.add_argument("--expires-days", type=int, metavar="DAYS", help="Expire after this many days.")
        create.add_argument("--log-bodies", action="store_true",
                            help="Log the prompts and answers of the key's calls (redacted, encrypted).")
        revoke = actions.add_parser("revoke", help="Revoke a key.")
        revoke.add_argument("prefix", type=storable_argument, help="The key's prefix (ask-xxxxxxxx), or the whole key.")
        logging = actions.add_parser("log-bodies", help="Turn the logging of a key's prompts and answers on or off.")
        logging.add_argument("prefix", type=storable_argument, help="The key's prefix, or the whole key.")
        logging.add_argument("state", choices=["on", "off"])
        listing = actions.add_parser("list", help="List keys.")
        listing.add_argument("--all", action="store_true", help="Include revoked and expired keys.")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action'].replace('-', '_')}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        user = None
        if options["user"]:
            user = User.objects.filter(email__iexact=options["user"].strip()).first()
            if user is None:
                raise CommandError(f"There is no user {options['user']!r}.")
        team = None
        if options["team"]:
            team = team_get(options["team"])
            if team is None:
                raise CommandError(f"There is no team {options['team']!r}.")
        for name in ("rpm", "tpm", "expires_days"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        for name, (_, high) in (("rpm", RPM_RANGE), ("tpm", TPM_RANGE)):
            if options[name] is not None and options[name] > high:
                raise CommandError(f"--{name} must be at most {high:,}.")
        expires_at = timezone.now() + timedelta(days=options["expires_days"]) if options["expires_days"] else None
        key, raw = apikeys.api_key_create(
            name=options["name"], user=user, actor="manage.py apikey",
            allowed_models=[name.strip() for name in options["models"].split(",") if name.strip()],
            rpm_limit=options["rpm"], tpm_limit=options["tpm"], expires_at=expires_at, team=team,
            log_bodies=options["log_bodies"],
        )
        self.stderr.write(f"Key {key.name} ({key.prefix}…) made; it is printed once, below.")
        self.stdout.write(raw)

    def _key(self, options: dict[str, Any]) -> ApiKey:
        key = ApiKey.objects.filter(prefix=options["prefix"].strip()[:apikeys.PREFIX_LENGTH]).first()
        if key is None:
            raise CommandError(f"There is no key {options['prefix'][:apikeys.PREFIX_LENGTH]!r}.")
        return key

    def _log_bodies(self, options: dict[str, Any]) -> None:
        key, on = self._key(options), options["state"] == "on"
        changed = apikeys.api_key_log_bodies_set(key=key, on=on, actor="manage.py apikey")
        state = "logs" if on else "does not log"
        self.stdout.write(f"{key.name} ({key.prefix}…) {'now ' if changed else 'already '}{state} "
                          "its prompts and answers.")

    def _revoke(self, options: dict[str, Any]) -> None:
        key = self._key(options)
        if apikeys.api_key_revoke(key=key, actor="manage.py apikey"):
            self.stdout.write(f"Revoked {key.name} ({key.prefix}…).")
        else:
            self.stdout.write(f"{key.name} ({key.prefix}…) was already revoked.")

    def _list(self, options: dict[str, Any]) -> None:
        now = timezone.now()
        for key in ApiKey.objects.select_related("user"):
            status = apikeys.key_status(key, now)
            if status != "active" and not options["all"]:
                continue
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            self.stdout.write("\t".join([
                key.prefix, status, key.name, key.user.email if key.user else "(application)",
                ",".join(key.allowed_models) or "*", f"used {used}",
                *(["logs prompts and answers"] if key.log_bodies else []),
            ]))
