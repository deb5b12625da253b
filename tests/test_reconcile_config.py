"""A provider entry's `reporting:` in the config file: the reporting credential checked with the settings
page's form, written in the import's transaction, the admin key a ${NAME} reference stored encrypted, the
same file twice changing nothing, and export_config writing it back without the key."""

from decimal import Decimal
from typing import Any

import pytest
import yaml
from django.db.models import TextField
from django.db.models.functions import Cast

from accounts.models import AuditEvent
from aspweb.config import ConfigError, config_export, config_import, dump_yaml, load_yaml
from providers.models import Provider
from reconcile.models import ReportingCredential
from tests.budgets_support import PUBLIC_IP, fake_dns

pytestmark = pytest.mark.django_db

FILE = """\
providers:
  - name: openai-prod
    kind: openai
    api_key: ${OPENAI_API_KEY}
    reporting:
      admin_key: ${OPENAI_ADMIN_KEY}
      api_key_id: key_aspweb0001
      project_id: proj_aspweb
      tolerance_percent: 0.5
      alert_emails: [books@example.com]
      alert_webhook_url: ${RECONCILE_HOOK}
  - name: router
    kind: openrouter
    api_key: ${OPENROUTER_API_KEY}
    reporting:
      tolerance_percent: 2
"""
ADMIN_KEY = "sk-admin-from-the-environment-0123"
HOOK = "https://hooks.slack.example/services/T0/B0/reconcile"
ENV = {"OPENAI_API_KEY": "sk-proj-calls-0001", "OPENAI_ADMIN_KEY": ADMIN_KEY, "RECONCILE_HOOK": HOOK,
       "OPENROUTER_API_KEY": "sk-or-v1-calls-0002"}


@pytest.fixture(autouse=True)
def _hook_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    # The form checks that a webhook resolves to a public address; no test asks a real DNS server.
    fake_dns(monkeypatch, {"hooks.slack.example": [PUBLIC_IP]})


def run_import(text: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return config_import(load_yaml(text, ENV if env is None else env), actor="import_config", **kwargs)


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        run_import(text, env)
    return caught.value.errors


def stored_admin_key() -> str:
    return ReportingCredential.objects.annotate(raw=Cast("admin_key", TextField())).values_list(
        "raw", flat=True).get(provider__name="openai-prod")


def test_reporting_is_imported_with_the_providers_in_one_go() -> None:
    report = run_import(FILE)

    openai = ReportingCredential.objects.get(provider__name="openai-prod")
    assert openai.admin_key.reveal() == ADMIN_KEY
    assert stored_admin_key().startswith("fernet1:") and ADMIN_KEY not in stored_admin_key()
    assert (openai.api_key_id, openai.project_id, openai.tolerance_percent) == (
        "key_aspweb0001", "proj_aspweb", Decimal("0.5"))
    assert (openai.alert_emails, openai.alert_webhook_url) == (["books@example.com"], HOOK)
    router = ReportingCredential.objects.get(provider__name="router")
    assert (router.admin_key, router.tolerance_percent) == ("", Decimal(2))  # OpenRouter: the provider's own key
    assert report.created == ["provider openai-prod", "reporting of provider openai-prod", "provider router",
                              "reporting of provider router"]
    assert "reconcile.credential_created" in AuditEvent.objects.values_list("action", flat=True)
    assert all(ADMIN_KEY not in str(event.details) for event in AuditEvent.objects.all())


def test_the_same_file_twice_changes_nothing() -> None:
    run_import(FILE)
    before = (stored_admin_key(), list(ReportingCredential.objects.values_list("pk", "updated_at")),
              AuditEvent.objects.count())

    report = run_import(FILE)

    assert not report.changed
    assert (stored_admin_key(), list(ReportingCredential.objects.values_list("pk", "updated_at")),
            AuditEvent.objects.count()) == before
    assert "reporting of provider openai-prod" in report.unchanged


def test_a_change_is_written_and_said_and_a_left_out_key_keeps_the_stored_one() -> None:
    run_import(FILE)
    changed = FILE.replace("      admin_key: ${OPENAI_ADMIN_KEY}\n", "").replace("0.5", "3")

    report = run_import(changed)

    openai = ReportingCredential.objects.get(provider__name="openai-prod")
    assert (openai.admin_key.reveal(), openai.tolerance_percent) == (ADMIN_KEY, Decimal(3))
    assert report.updated == ["reporting of provider openai-prod (tolerance_percent)"]
    report = run_import(FILE, {**ENV, "OPENAI_ADMIN_KEY": "sk-admin-rotated-9999"})
    assert "reporting of provider openai-prod (admin_key, tolerance_percent)" in report.updated
    assert ReportingCredential.objects.get(provider__name="openai-prod").admin_key.reveal() == "sk-admin-rotated-9999"


def test_the_admin_key_is_a_reference_never_the_key_itself() -> None:
    text = FILE.replace("${OPENAI_ADMIN_KEY}", ADMIN_KEY)
    assert errors_of(text) == ["providers[0] (openai-prod).reporting.admin_key: write the key as a ${NAME} "
                               "reference to an environment variable, never the key itself"]
    assert not Provider.objects.exists()  # nothing written


def test_bad_reporting_settings_are_errors_with_their_place() -> None:
    text = (FILE.replace("tolerance_percent: 0.5", "tolerance_percent: 101")
            .replace("alert_emails: [books@example.com]", "alert_emails: [not-an-address]")
            .replace("      tolerance_percent: 2\n", "      tolerance_percent: 2\n      project_id: proj_x\n"))
    errors = errors_of(text)
    assert "providers[0] (openai-prod).reporting.tolerance_percent: Ensure this value is less than or equal " \
           "to 100." in errors
    assert "providers[0] (openai-prod).reporting.alert_emails: “not-an-address” is not an e-mail address." in errors
    assert any(e.startswith("providers[1] (router).reporting.project_id: unknown setting; kind openrouter takes:")
               for e in errors), errors
    assert not Provider.objects.exists()


def test_a_new_organisation_report_needs_its_admin_key() -> None:
    text = FILE.replace("      admin_key: ${OPENAI_ADMIN_KEY}\n", "")
    assert "providers[0] (openai-prod).reporting.admin_key: This field is required." in errors_of(text)


def test_reporting_is_only_for_kinds_whose_reports_aspweb_reads() -> None:
    text = "providers:\n  - name: lab\n    kind: ollama\n    reporting: {tolerance_percent: 1}\n"
    assert errors_of(text) == ["providers[0] (lab).reporting: aspweb reads no usage reports of kind ollama; "
                               "reporting is for kinds openai, anthropic, openrouter"]
    assert errors_of("providers:\n  - name: r\n    kind: openrouter\n    api_key: ${OPENROUTER_API_KEY}\n"
                     "    reporting: yes\n") == [
        "providers[0] (r).reporting: expected a mapping of admin_key, api_key_id, project_id, tolerance_percent, "
        "alert_emails, alert_webhook_url, not True"]


def test_export_writes_reporting_back_without_the_key_and_reimports_to_no_change() -> None:
    run_import(FILE)

    text = dump_yaml(config_export())

    assert ADMIN_KEY not in text and HOOK not in text
    exported = yaml.safe_load(text)["providers"]
    openai = next(p for p in exported if p["name"] == "openai-prod")
    assert openai["reporting"] == {
        "admin_key": "${OPENAI_PROD_REPORTING_ADMIN_KEY}",
        "alert_webhook_url": "${OPENAI_PROD_REPORTING_ALERT_WEBHOOK_URL}",
        "api_key_id": "key_aspweb0001", "project_id": "proj_aspweb", "tolerance_percent": 0.5,
        "alert_emails": ["books@example.com"]}
    assert next(p for p in exported if p["name"] == "router")["reporting"] == {"tolerance_percent": 2}
    env = {"OPENAI_PROD_API_KEY": ENV["OPENAI_API_KEY"], "ROUTER_API_KEY": ENV["OPENROUTER_API_KEY"],
           "OPENAI_PROD_REPORTING_ADMIN_KEY": ADMIN_KEY, "OPENAI_PROD_REPORTING_ALERT_WEBHOOK_URL": HOOK}
    assert not run_import(text, env).changed
