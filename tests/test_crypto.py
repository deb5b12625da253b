"""providers.crypto and `manage.py rotate_encryption_key`: secrets at rest and key rotation."""

import stat
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from providers import crypto
from providers.crypto import DecryptionError, Secret
from providers.management.commands.rotate_encryption_key import encrypted_fields
from providers.models import Provider

KEY = "sk-test-4f1d9c2b7a6e5d3c1b0aWXYZ"


def new_key() -> str:
    return Fernet.generate_key().decode()


def make_provider(name: str = "acme", api_key: str = KEY) -> Provider:
    return Provider.objects.create(name=name, kind="openai", api_key=api_key)


def raw_column(provider: Provider) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM providers_provider WHERE id = %s", [provider.pk])
        return cursor.fetchone()[0]


def rotate(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("rotate_encryption_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_field_round_trip(db: None) -> None:
    provider = make_provider()
    stored = Provider.objects.get(pk=provider.pk).api_key
    assert isinstance(stored, Secret)
    assert stored.reveal() == KEY


def test_empty_key_stays_empty(db: None) -> None:
    provider = make_provider(api_key="")
    assert raw_column(provider) == ""
    assert Provider.objects.get(pk=provider.pk).api_key == ""


def test_raw_column_holds_versioned_ciphertext(db: None) -> None:
    raw = raw_column(make_provider())
    assert raw.startswith("fernet1:")
    assert KEY not in raw
    assert crypto.decrypt(raw) == KEY


def test_secret_str_and_repr_show_only_last_four() -> None:
    secret = Secret(KEY)
    assert str(secret) == "••••WXYZ"
    assert repr(secret) == "••••WXYZ"
    assert f"{secret}" == "••••WXYZ"
    assert KEY not in repr([secret]) and KEY not in repr({"k": secret})


def test_short_secret_shows_nothing_of_itself() -> None:
    # Four of five characters would give most of a short secret away.
    assert str(Secret("abcde")) == "••••"
    assert str(Secret("")) == ""


def test_dumpdata_holds_ciphertext_not_the_key(db: None, tmp_path: Path) -> None:
    provider = make_provider()
    out = StringIO()
    call_command("dumpdata", "providers", stdout=out)
    dump = out.getvalue()
    assert '"api_key": "fernet1:' in dump
    assert KEY not in dump

    # The dump is a usable backup: loading it restores the key.
    fixture = tmp_path / "providers.json"
    fixture.write_text(dump)
    Provider.objects.all().delete()
    call_command("loaddata", str(fixture), stdout=StringIO())
    assert Provider.objects.get(pk=provider.pk).api_key.reveal() == KEY


def test_encrypted_fields_are_discovered_generically() -> None:
    found = {(model._meta.label, field.name) for model, field in encrypted_fields()}
    assert ("providers.Provider", "api_key") in found


def test_rotation_moves_values_to_the_newest_key(db: None, settings: Any) -> None:
    key_a, key_b = new_key(), new_key()
    settings.ENCRYPTION_KEYS = [key_a]
    provider = make_provider()
    empty = make_provider("keyless", api_key="")
    before = raw_column(provider)

    settings.ENCRYPTION_KEYS = [key_b, key_a]
    out, err = rotate()
    assert "Rotated 1, skipped 0" in out
    assert "failed 0" in out
    assert err == ""
    assert raw_column(provider) != before
    assert raw_column(provider).startswith("fernet1:")
    assert raw_column(empty) == ""

    settings.ENCRYPTION_KEYS = [key_b]
    assert Provider.objects.get(pk=provider.pk).api_key.reveal() == KEY
    assert key_a not in out + err and key_b not in out + err and KEY not in out + err


def test_second_rotation_changes_nothing(db: None, settings: Any) -> None:
    key_a, key_b = new_key(), new_key()
    settings.ENCRYPTION_KEYS = [key_a]
    provider = make_provider()
    settings.ENCRYPTION_KEYS = [key_b, key_a]
    rotate()
    after_first = raw_column(provider)

    out, _ = rotate()
    assert "Rotated 0, skipped 1" in out
    assert raw_column(provider) == after_first
    settings.ENCRYPTION_KEYS = [key_b]
    assert Provider.objects.get(pk=provider.pk).api_key.reveal() == KEY


def test_rotation_does_not_overwrite_a_concurrent_save(
    db: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_a, key_b = new_key(), new_key()
    settings.ENCRYPTION_KEYS = [key_a]
    provider = make_provider()
    settings.ENCRYPTION_KEYS = [key_b, key_a]
    real_rotate = crypto.rotate

    def rotate_while_an_admin_saves(stored: str) -> str:
        # Between the command's read and its write, the key is changed through the app.
        Provider.objects.filter(pk=provider.pk).update(api_key="sk-entered-meanwhile-0000")
        return real_rotate(stored)

    monkeypatch.setattr(crypto, "rotate", rotate_while_an_admin_saves)
    out, _ = rotate()
    assert "Rotated 0, skipped 1" in out
    assert Provider.objects.get(pk=provider.pk).api_key.reveal() == "sk-entered-meanwhile-0000"


def test_key_removed_before_rotating(db: None, settings: Any) -> None:
    key_a, key_b, key_lost = new_key(), new_key(), new_key()
    settings.ENCRYPTION_KEYS = [key_a]
    good = make_provider("good")
    settings.ENCRYPTION_KEYS = [key_lost]
    lost = make_provider("lost")

    settings.ENCRYPTION_KEYS = [key_b, key_a]
    with pytest.raises(DecryptionError, match="was a key removed from ASPWEB_ENCRYPTION_KEYS"):
        Provider.objects.get(pk=lost.pk)

    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 stored value"):
        call_command("rotate_encryption_key", stdout=out, stderr=err)
    assert f"providers.Provider.api_key pk={lost.pk}:" in err.getvalue()
    assert "cannot be decrypted with the configured keys" in err.getvalue()
    assert f"pk={good.pk}" not in err.getvalue()
    # The rest was rotated before the command gave up.
    assert "Rotated 1, skipped 0" in out.getvalue() and "failed 1" in out.getvalue()
    settings.ENCRYPTION_KEYS = [key_b]
    assert Provider.objects.get(pk=good.pk).api_key.reveal() == KEY


def test_plain_text_left_in_the_column_is_reported(db: None) -> None:
    provider = make_provider()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE providers_provider SET api_key = %s WHERE id = %s",
                       ["not-encrypted", provider.pk])
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("rotate_encryption_key", stdout=StringIO(), stderr=err)
    assert f"pk={provider.pk}: Stored secret has no known format prefix." in err.getvalue()
    assert "not-encrypted" not in err.getvalue()


def test_generate_prints_a_new_valid_key(db: None, settings: Any) -> None:
    settings.ENCRYPTION_KEYS = [new_key()]
    provider = make_provider()
    before = raw_column(provider)
    out, _ = rotate("--generate")
    printed = out.strip()
    token = Fernet(printed.encode()).encrypt(b"x")  # raises on anything but a Fernet key
    assert Fernet(printed.encode()).decrypt(token) == b"x"
    assert printed not in settings.ENCRYPTION_KEYS
    assert settings.ENCRYPTION_KEYS[0] not in out
    assert raw_column(provider) == before  # --generate changes nothing


@pytest.fixture
def embedded_keys(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """Keys as the embedded default has them: from a file under var/, not production, no env variable."""
    key_a = new_key()
    path = tmp_path / "encryption_keys"
    path.write_text(key_a + "\n")
    path.chmod(0o600)
    monkeypatch.delenv("ASPWEB_ENCRYPTION_KEYS", raising=False)
    settings.PRODUCTION = False
    settings.ENCRYPTION_KEYS_FILE = path
    settings.ENCRYPTION_KEYS = [key_a]
    return path, key_a


def test_new_key_prepends_to_the_embedded_file_and_rotates(
    db: None, settings: Any, embedded_keys: tuple[Path, str]
) -> None:
    path, key_a = embedded_keys
    provider = make_provider()

    out, _ = rotate("--new-key")
    keys = path.read_text().split()
    assert len(keys) == 2 and keys[1] == key_a and keys[0] != key_a
    Fernet(keys[0].encode())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "Rotated 1, skipped 0" in out
    assert key_a not in out and keys[0] not in out

    settings.ENCRYPTION_KEYS = [keys[0]]
    assert Provider.objects.get(pk=provider.pk).api_key.reveal() == KEY


@pytest.mark.parametrize("setup", ["env", "production", "file_changed"])
def test_new_key_refuses_outside_the_embedded_default(
    db: None, settings: Any, embedded_keys: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, setup: str
) -> None:
    path, key_a = embedded_keys
    if setup == "env":
        monkeypatch.setenv("ASPWEB_ENCRYPTION_KEYS", key_a)
    elif setup == "production":
        settings.PRODUCTION = True
    else:
        path.write_text(new_key() + "\n")
    before = path.read_text()
    with pytest.raises(CommandError):
        rotate("--new-key")
    assert path.read_text() == before
