import os
import secrets

from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from accounts.models import User


class Command(BaseCommand):
    help = (
        "Create the first admin if no superuser exists: from ASPWEB_ADMIN_EMAIL / ASPWEB_ADMIN_PASSWORD "
        "when set, otherwise admin@localhost with a generated password printed once. Does nothing otherwise."
    )

    def handle(self, *args: object, **options: object) -> None:
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin already exists; nothing to do.")
            return
        email = os.environ.get("ASPWEB_ADMIN_EMAIL", "").strip().lower() or "admin@localhost"
        try:
            validate_email(email) if "@localhost" not in email else None
        except Exception:
            raise CommandError(f"ASPWEB_ADMIN_EMAIL is not an e-mail address: {email!r}") from None
        password = os.environ.get("ASPWEB_ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        with transaction.atomic():
            if User.objects.filter(email=email).exists():
                raise CommandError(f"{email} exists but is not a superuser; make it one in the Users page "
                                   "or choose another ASPWEB_ADMIN_EMAIL.")
            User.objects.create_superuser(email, password, name="Admin")
        self.stdout.write(self.style.SUCCESS(f"Created the first admin: {email}"))
        if generated:
            self.stdout.write(
                "Its password, shown only this once (set ASPWEB_ADMIN_PASSWORD to choose one):\n\n"
                f"    {password}\n"
            )
