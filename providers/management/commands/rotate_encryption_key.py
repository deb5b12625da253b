"""Re-encrypt every stored secret under the newest key, while the app keeps running."""

import os
from argparse import ArgumentParser, RawDescriptionHelpFormatter
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import models
from django.db.models import TextField, Value
from django.db.models.functions import Cast

from providers import crypto
from providers.crypto import EncryptedField

BATCH = 500

HELP = """\
Re-encrypt every encrypted field value of every model under the newest key
(the first of ASPWEB_ENCRYPTION_KEYS). Every configured key still decrypts, so
the app keeps working while this runs, and it is safe to run again.

Rotating with keys from the environment (production):
  1. manage.py rotate_encryption_key --generate   prints a new key
  2. put it first in ASPWEB_ENCRYPTION_KEYS (NEW,OLD) and restart every
     aspweb process (web, workers): all of them must know NEW before step 3.
     With a rolling restart, deploy OLD,NEW first, then NEW,OLD, so no
     process meets a value encrypted under a key it does not have
  3. manage.py rotate_encryption_key              re-encrypts under NEW
  4. drop OLD from ASPWEB_ENCRYPTION_KEYS and restart again

Rotating the embedded default (no ASPWEB_ENCRYPTION_KEYS, DEBUG not false):
  manage.py rotate_encryption_key --new-key
  prepends a fresh key to the keys file under var/ and rotates; restart the
  server afterwards, since a process started before knows only the old keys.
  Old keys stay in the file (they still decrypt); delete its later lines to
  drop them once no process needs them.

Exits non-zero when a stored value cannot be decrypted with any configured key
(the model and primary key are named), after rotating everything else.
"""


def _is_current(raw: str, newest: Fernet) -> bool:
    """Whether a stored value is already encrypted under the newest key."""
    if not raw.startswith(crypto.PREFIX):
        return False
    try:
        newest.decrypt(raw[len(crypto.PREFIX):].encode())
    except InvalidToken:
        return False
    return True


def encrypted_fields() -> list[tuple[type[models.Model], EncryptedField]]:
    """Every concrete EncryptedField, each once (proxies and multi-table children share their parent's)."""
    return [
        (model, field)
        for model in apps.get_models()
        if not model._meta.proxy
        for field in model._meta.local_concrete_fields
        if isinstance(field, EncryptedField)
    ]


class Command(BaseCommand):
    help = HELP

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> ArgumentParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: ArgumentParser) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--generate", action="store_true",
                            help="Print a new Fernet key and exit; nothing is changed.")
        action.add_argument("--new-key", action="store_true",
                            help="Embedded default only: prepend a fresh key to the keys file, then rotate.")

    def handle(self, *args: Any, generate: bool, new_key: bool, verbosity: int, **options: Any) -> None:
        self.verbosity = verbosity
        if generate:
            self.stdout.write(Fernet.generate_key().decode())
            return
        if new_key:
            self._prepend_key_to_file()
        self._rotate_all()

    def _prepend_key_to_file(self) -> None:
        path = Path(settings.ENCRYPTION_KEYS_FILE)
        if os.environ.get("ASPWEB_ENCRYPTION_KEYS", "").strip() or settings.PRODUCTION:
            raise CommandError(
                "--new-key only rotates the embedded default (keys in var/, DEBUG not false). With "
                "ASPWEB_ENCRYPTION_KEYS set, use --generate and follow the steps in --help."
            )
        on_file = path.read_text().split() if path.exists() else []
        if on_file != list(settings.ENCRYPTION_KEYS):
            raise CommandError(f"The keys in use are not the ones in {path}; refusing to change that file.")
        keys = [Fernet.generate_key().decode(), *on_file]
        # Write beside it and swap in one step: a process starting meanwhile reads old or new, never half.
        tmp = path.with_name(path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(keys) + "\n")
        os.replace(tmp, path)
        settings.ENCRYPTION_KEYS = keys
        self.stdout.write(f"Added a new key to {path} ({len(keys)} keys now, newest first).")

    def _rotate_all(self) -> None:
        crypto.fernet()  # fails with a clear message when the configured keys are missing or malformed
        newest = Fernet(settings.ENCRYPTION_KEYS[0].encode())
        totals: Counter[str] = Counter()
        for model, field in encrypted_fields():
            counts = self._rotate_field(model, field, newest)
            totals.update(counts)
            if self.verbosity >= 2:
                self.stdout.write(f"{model._meta.label}.{field.name}: rotated {counts['rotated']}, "
                                  f"skipped {counts['skipped']}, failed {counts['failed']}.")
        self.stdout.write(f"Rotated {totals['rotated']}, skipped {totals['skipped']} (already under the "
                          f"newest key or changed meanwhile), failed {totals['failed']}.")
        if totals["failed"]:
            raise CommandError(
                f"{totals['failed']} stored value(s) could not be decrypted with any configured key (listed "
                "above). Put back the key they were encrypted with, or re-enter those secrets."
            )

    def _rotate_field(self, model: type[models.Model], field: EncryptedField, newest: Fernet) -> Counter[str]:
        counts: Counter[str] = Counter()
        for pk, raw in self._raw_values(model, field):
            try:
                if _is_current(raw, newest):
                    counts["skipped"] += 1
                    continue
                new = crypto.rotate(raw)
            except crypto.DecryptionError as exc:
                counts["failed"] += 1
                self.stderr.write(f"{model._meta.label}.{field.name} pk={pk}: {exc}")
                continue
            # Only where the column still holds what was read: a save in between wrote a value under
            # the newest key already (or deleted the row), and must not be overwritten.
            updated = (
                model._base_manager.annotate(_raw=Cast(field.name, TextField()))
                .filter(pk=pk, _raw=raw)
                .update(**{field.name: Value(new, output_field=TextField())})
            )
            counts["rotated" if updated else "skipped"] += 1
        return counts

    @staticmethod
    def _raw_values(model: type[models.Model], field: EncryptedField) -> Iterator[tuple[Any, str]]:
        """(pk, ciphertext) of each non-empty value, read as text so nothing is decrypted, in pk batches."""
        rows = (
            model._base_manager.annotate(_raw=Cast(field.name, TextField()))
            .exclude(_raw__isnull=True).exclude(_raw="")
            .order_by("pk").values_list("pk", "_raw")
        )
        last = None
        while True:
            batch = list((rows if last is None else rows.filter(pk__gt=last))[:BATCH])
            yield from batch
            if len(batch) < BATCH:
                return
            last = batch[-1][0]
