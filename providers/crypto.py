"""Secrets at rest: an encrypted model field on MultiFernet, with versioned ciphertext and key rotation.

Stored form: ``fernet1:<token>``. The prefix names the format, so a later format can live beside it and
plain text left in a column is never mistaken for ciphertext. Keys come from settings.ENCRYPTION_KEYS,
newest first: the newest encrypts, every key decrypts, so a new key can be put first with no downtime
and `manage.py rotate_encryption_key` re-encrypts everything before the old key is dropped.
"""

from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet1:"


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


class Secret:
    """A decrypted value that will not print itself: str() and repr() show only the last 4 characters."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def last4(self) -> str:
        return self._value[-4:] if len(self._value) >= 8 else ""

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __str__(self) -> str:
        return f"••••{self.last4}" if self._value else ""

    __repr__ = __str__


def reveal(value: "Secret | str | None") -> str:
    """The plaintext of a field value, whether loaded (a Secret) or just assigned (a str)."""
    if isinstance(value, Secret):
        return value.reveal()
    return value or ""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("No encryption key configured (ASPWEB_ENCRYPTION_KEYS).")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "ASPWEB_ENCRYPTION_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes; `manage.py rotate_encryption_key --generate` makes one)."
        ) from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return PREFIX + fernet().encrypt(plaintext.encode()).decode()


_UNDECRYPTABLE = (
    "A stored secret cannot be decrypted with the configured keys: "
    "was a key removed from ASPWEB_ENCRYPTION_KEYS before `rotate_encryption_key` ran?"
)


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise DecryptionError("Stored secret has no known format prefix.")
    try:
        return fernet().decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise DecryptionError(_UNDECRYPTABLE) from None


def rotate(stored: str) -> str:
    """The same secret re-encrypted under the newest key."""
    if not stored.startswith(PREFIX):
        raise DecryptionError("Stored secret has no known format prefix.")
    try:
        return PREFIX + fernet().rotate(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise DecryptionError(_UNDECRYPTABLE) from None


class EncryptedField(models.TextField):
    """Text encrypted at rest. In Python the value is a `Secret` (or "" when empty)."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret | str:
        if not value:
            return ""
        return Secret(decrypt(value))

    def to_python(self, value: Any) -> Secret | str:
        if isinstance(value, Secret) or not value:
            return value or ""
        value = str(value)
        # Fixtures written by dumpdata hold ciphertext (see value_to_string).
        return Secret(decrypt(value) if value.startswith(PREFIX) else value)

    def get_prep_value(self, value: Any) -> str:
        if isinstance(value, Secret):
            value = value.reveal()
        if not value:
            return ""
        return encrypt(str(value))

    def value_to_string(self, obj: models.Model) -> str:
        # Serialisation (dumpdata, fixtures) gets the ciphertext, never the secret.
        return self.get_prep_value(self.value_from_object(obj))
