"""A provider key entered in the UI never comes back out: not in any page, the audit log, a dump or the logs."""

import json
import logging
import secrets
from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import AuditEvent
from providers.models import Provider
from tests.fakes import upstream as upstream_module
from tests.fakes.upstream import FakeUpstream

# Not shaped like a known key prefix, so only the explicit redaction of the stored key can hide it.
KEY = "zq-" + secrets.token_hex(16)
NEW_KEY = "zq-" + secrets.token_hex(16)


def assert_no_secret(text: str, *keys: str) -> None:
    for key in keys or (KEY,):
        assert key not in text
        assert key[3:-4] not in text  # nor most of it


def form_data(base_url: str, **changes: str) -> dict[str, str]:
    return {"name": "local", "base_url": base_url, "api_key": KEY, "enabled": "on",
            "timeout_seconds": "120", "max_retries": "3", **changes}


@pytest.fixture
def provider(admin_client: Client, upstream: FakeUpstream) -> Provider:
    """A provider added through the UI, with its models synced from the fake upstream."""
    upstream.api_key = KEY
    response = admin_client.post("/providers/add/openai_compatible/", form_data(upstream.openai_base_url))
    provider = Provider.objects.get(name="local")
    assert response.status_code == 302 and response["Location"] == f"/providers/{provider.pk}/"
    admin_client.post(f"/providers/{provider.pk}/sync/")
    assert provider.models.count() == 2
    assert upstream.last_request.api_key == KEY  # the key really was stored and used
    return provider


def test_the_key_is_stored_encrypted(provider: Provider) -> None:
    assert Provider.objects.get(pk=provider.pk).api_key.reveal() == KEY


def test_no_page_shows_the_key(provider: Provider, admin_client: Client,
                               client_as: Callable[[str], Client]) -> None:
    model = provider.models.first()
    pages = [
        "/providers/", f"/providers/{provider.pk}/", f"/providers/{provider.pk}/edit/",
        f"/providers/{provider.pk}/delete/", f"/providers/{provider.pk}/models/add/",
        f"/models/{model.pk}/", "/audit/",
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert provider.name in html, url
        assert_no_secret(html)
        assert "fernet1:" not in html, url  # nor the ciphertext

    superuser = client_as("superuser")
    django_admin_pages = [
        "/django-admin/providers/provider/",
        f"/django-admin/providers/provider/{provider.pk}/change/",
        f"/django-admin/providers/provider/{provider.pk}/delete/",
        f"/django-admin/providers/provider/{provider.pk}/history/",
        "/django-admin/providers/model/",
        f"/django-admin/providers/model/{model.pk}/change/",
    ]
    for url in django_admin_pages:
        response = superuser.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert provider.name in html, url
        assert_no_secret(html)
        assert "fernet1:" not in html, url


def test_pages_show_only_the_last_four(provider: Provider, admin_client: Client,
                                       client_as: Callable[[str], Client]) -> None:
    edit = admin_client.get(f"/providers/{provider.pk}/edit/").content.decode()
    assert f"Stored key ends in {KEY[-4:]}; leave blank to keep it." in edit
    detail = admin_client.get(f"/providers/{provider.pk}/").content.decode()
    assert f"stored, ends in <code>{KEY[-4:]}</code>" in detail
    change = client_as("superuser").get(f"/django-admin/providers/provider/{provider.pk}/change/")
    assert f"••••{KEY[-4:]}" in change.content.decode()


def test_blank_key_on_edit_keeps_the_stored_key(provider: Provider, admin_client: Client,
                                                upstream: FakeUpstream) -> None:
    response = admin_client.post(f"/providers/{provider.pk}/edit/",
                                 form_data(upstream.openai_base_url, api_key="", max_retries="5"))
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.max_retries == 5
    assert provider.api_key.reveal() == KEY
    event = AuditEvent.objects.filter(action="provider.update").latest("id")
    assert event.details == {"fields": ["max_retries"]}


def test_new_key_on_edit_replaces_it_and_is_audited_by_name(provider: Provider, admin_client: Client,
                                                            upstream: FakeUpstream) -> None:
    response = admin_client.post(f"/providers/{provider.pk}/edit/",
                                 form_data(upstream.openai_base_url, api_key=NEW_KEY))
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.api_key.reveal() == NEW_KEY

    event = AuditEvent.objects.filter(action="provider.update").latest("id")
    assert event.details == {"fields": ["api_key"]}
    assert_no_secret(json.dumps(event.details), KEY, NEW_KEY)
    audit = admin_client.get("/audit/").content.decode()
    assert "provider.update" in audit and "<b>changed:</b> API key" in audit
    assert_no_secret(audit, KEY, NEW_KEY)
    edit = admin_client.get(f"/providers/{provider.pk}/edit/").content.decode()
    assert f"Stored key ends in {NEW_KEY[-4:]};" in edit
    assert_no_secret(edit, KEY, NEW_KEY)


def test_a_dump_of_the_database_does_not_hold_the_key(provider: Provider, admin_client: Client) -> None:
    admin_client.post(f"/providers/{provider.pk}/test/")  # so the check's outcome is in the dump too
    out = StringIO()
    call_command("dumpdata", stdout=out)
    dump = out.getvalue()
    assert '"model": "providers.provider"' in dump and '"name": "local"' in dump
    assert_no_secret(dump)


def test_a_rejected_key_is_in_neither_logs_nor_page(
    provider: Provider, admin_client: Client, upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The provider now expects another key, and echoes the one it got, as some real providers do.
    upstream.api_key = "zq-the-key-the-provider-wants"
    openai_type, code, anthropic_type, _ = upstream_module._ERRORS[401]
    monkeypatch.setitem(upstream_module._ERRORS, 401,
                        (openai_type, code, anthropic_type, f"Incorrect API key provided: {KEY}."))
    # Even with the SDK and HTTP loggers turned up past what settings allow.
    for name in ("", "openai", "anthropic", "httpx", "httpcore", "httpx2", "httpcore2", "providers", "django"):
        caplog.set_level(logging.DEBUG, logger=name)

    htmx = admin_client.post(f"/providers/{provider.pk}/test/", headers={"HX-Request": "true"})
    plain = admin_client.post(f"/providers/{provider.pk}/test/", follow=True)

    assert upstream.last_request.api_key == KEY
    for response in (htmx, plain):
        assert response.status_code == 200
        html = response.content.decode()
        assert "rejected the API key (HTTP 401)" in html
        assert "Incorrect API key provided: [redacted]." in html
        assert_no_secret(html)
    provider.refresh_from_db()
    assert provider.last_check_ok is False
    assert_no_secret(provider.last_check_message)
    assert caplog.records  # something was logged, so the check below has something to look at
    assert_no_secret(caplog.text)
    assert_no_secret(" ".join(repr(record.__dict__) for record in caplog.records))


def test_a_key_from_yaml_stays_secret_and_survives_rotation(
    admin_client: Client, upstream: FakeUpstream, settings: object, tmp_path: object, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cryptography.fernet import Fernet

    upstream.api_key = KEY
    monkeypatch.setenv("LOCAL_LLM_KEY", KEY)
    config = tmp_path / "aspweb.yaml"
    config.write_text(
        "providers:\n  - name: yaml-llm\n    kind: openai_compatible\n"
        f"    base_url: {upstream.openai_base_url}\n    api_key: ${{LOCAL_LLM_KEY}}\n"
        "    models:\n      - name: fake-model-a\n        prices: {input: 0.15, output: 0.60}\n"
    )
    call_command("import_config", str(config), stdout=StringIO())
    provider = Provider.objects.get(name="yaml-llm")

    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    assert_no_secret(dump.getvalue())
    exported = StringIO()
    call_command("export_config", stdout=exported)
    assert_no_secret(exported.getvalue())
    assert "${YAML_LLM_API_KEY}" in exported.getvalue()
    for url in ("/providers/", f"/providers/{provider.pk}/", f"/providers/{provider.pk}/edit/", "/audit/"):
        assert_no_secret(admin_client.get(url).content.decode())

    old_keys = list(settings.ENCRYPTION_KEYS)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *old_keys]
    call_command("rotate_encryption_key", stdout=StringIO())
    settings.ENCRYPTION_KEYS = settings.ENCRYPTION_KEYS[:1]  # the old key is gone

    response = admin_client.post(f"/providers/{provider.pk}/test/", headers={"HX-Request": "true"})
    assert "Connected; 2 models listed." in response.content.decode()
    assert upstream.last_request.api_key == KEY


@pytest.mark.parametrize("key", ["ask-abcd1234" + "x" * 40, "sk-proj-" + "y" * 30, "gsk_" + "z" * 30])
def test_key_shaped_text_is_redacted_from_messages(key: str) -> None:
    from providers.adapters.base import redact

    assert redact(f"The upstream said: invalid key {key}.") == "The upstream said: invalid key [redacted]."
