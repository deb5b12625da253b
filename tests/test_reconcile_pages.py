"""The reconciliation pages (finance and admin), the reporting key settings (admin), and `manage.py reconcile`."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.models import AuditEvent
from reconcile.models import ReportingCredential
from tests.fakes.reports import ADMIN_KEY, FakeReports
from tests.reconcile_support import DAY, OUR_KEY, OUR_PROJECT, call, openai_provider, priced, run

pytestmark = pytest.mark.django_db


def _drifting_day(fake: FakeReports, *, output_cost: float = 1.5):
    provider = openai_provider(fake)
    model = priced(provider, "gpt-4o-mini")
    call(model, input_tokens=1_000_000, output_tokens=500_000)  # $1 + $1
    fake.add_usage("openai", DAY, model="gpt-4o-mini-2024-07-18", api_key_id=OUR_KEY, project_id=OUR_PROJECT,
                   input_tokens=1_000_000, output_tokens=500_000, num_model_requests=1)
    fake.add_cost("openai", DAY, line_item="gpt-4o-mini-2024-07-18, input", project_id=OUR_PROJECT, value=1.0)
    fake.add_cost("openai", DAY, line_item="gpt-4o-mini-2024-07-18, output", project_id=OUR_PROJECT,
                  value=output_cost)
    return provider, model


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("superuser", 200), ("finance", 200),
                                              ("member", 403), ("none", 403)])
def test_who_sees_the_reconciliation_pages(client_as, reports_server: FakeReports, role: str, status: int) -> None:
    provider, _ = _drifting_day(reports_server)
    run(provider)
    client = client_as(role)
    assert client.get("/reconciliation/").status_code == status
    assert client.get(f"/reconciliation/{provider.pk}/{DAY.isoformat()}/").status_code == status


def test_signed_out_people_are_sent_to_sign_in(client) -> None:
    response = client.get("/reconciliation/")
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("finance", 403), ("member", 403)])
def test_only_admins_set_the_reporting_key(client_as, reports_server: FakeReports, role: str, status: int) -> None:
    provider = openai_provider(reports_server)
    assert client_as(role).get(f"/reconciliation/{provider.pk}/settings/").status_code == status


def test_the_month_says_what_aspweb_recorded_and_what_the_provider_reports(client_as,
                                                                            reports_server: FakeReports) -> None:
    provider, model = _drifting_day(reports_server)
    run(provider)
    finance = client_as("finance")
    html = finance.get(f"/reconciliation/?month={DAY:%Y-%m}").content.decode()
    assert "aspweb recorded <strong>$2.00</strong>; the provider reports <strong>$2.50</strong>" in html
    assert "1 day drifts" in html
    assert f'href="/reconciliation/{provider.pk}/2026-11-02/"' in html
    day = client_as("admin").get(f"/reconciliation/{provider.pk}/2026-11-02/").content.decode()
    assert "Tokens match, the cost does not" in day
    assert f'href="/models/{model.pk}/"' in day and f'href="/models/{model.pk}/reprice/"' in day
    finance_day = finance.get(f"/reconciliation/{provider.pk}/2026-11-02/").content.decode()
    assert f'href="/models/{model.pk}/reprice/"' not in finance_day  # re-pricing is an admin's


def test_a_bad_day_or_month_is_not_an_error(client_as, reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server)
    client = client_as("finance")
    assert client.get(f"/reconciliation/{provider.pk}/2026-13-45/").status_code == 404
    assert client.get("/reconciliation/?month=never").status_code == 200
    assert client.get(f"/reconciliation/{provider.pk}/2026-11-03/").status_code == 200  # never checked


def test_the_reporting_key_is_stored_encrypted_and_never_shown(client_as, reports_server: FakeReports) -> None:
    provider, _ = _drifting_day(reports_server)
    provider.reporting.delete()
    admin = client_as("admin")
    response = admin.post(f"/reconciliation/{provider.pk}/settings/", {
        "admin_key": ADMIN_KEY, "api_key_id": OUR_KEY, "project_id": OUR_PROJECT, "tolerance_percent": "1",
        "alert_emails": "", "alert_webhook_url": ""})
    assert response.status_code == 302
    with connection.cursor() as cursor:
        cursor.execute("SELECT admin_key FROM reconcile_reportingcredential")
        [(stored,)] = cursor.fetchall()
    assert stored.startswith("fernet1:") and ADMIN_KEY not in stored
    run(provider)
    for path in ("/reconciliation/", f"/reconciliation/{provider.pk}/settings/", f"/providers/{provider.pk}/",
                 f"/reconciliation/{provider.pk}/2026-11-02/"):
        html = admin.get(path).content.decode()
        assert ADMIN_KEY not in html and ADMIN_KEY[-4:] not in html, path
    # A blank key keeps the stored one.
    admin.post(f"/reconciliation/{provider.pk}/settings/", {
        "admin_key": "", "api_key_id": OUR_KEY, "project_id": "", "tolerance_percent": "2"})
    credential = ReportingCredential.objects.get(provider=provider)
    assert (str(credential.admin_key.reveal()), credential.tolerance_percent, credential.project_id) == (
        ADMIN_KEY, 2, "")


@pytest.mark.parametrize(("field", "value"), [("tolerance_percent", "-1"), ("tolerance_percent", "lots"),
                                              ("alert_emails", "not-an-address")])
def test_bad_settings_are_form_errors(client_as, reports_server: FakeReports, field: str, value: str) -> None:
    provider = openai_provider(reports_server)
    data = {"admin_key": "", "api_key_id": "", "project_id": "", "tolerance_percent": "1", field: value}
    response = client_as("admin").post(f"/reconciliation/{provider.pk}/settings/", data)
    assert response.status_code == 200 and 'class="error"' in response.content.decode()


def test_a_revoked_key_is_said_on_the_provider_page_and_the_reconciliation_page(
        client_as, reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server)
    reports_server.fail_next.append(401)
    run(provider)
    admin = client_as("admin")
    for path in (f"/providers/{provider.pk}/", "/reconciliation/"):
        assert "The reporting key was refused: it is wrong, revoked" in admin.get(path).content.decode(), path


def test_the_command_prints_a_line_per_day_and_model_and_exits_non_zero_on_drift(
        reports_server: FakeReports) -> None:
    _drifting_day(reports_server)
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("reconcile", "--provider", "openai-prod", "--since", "2026-11-02", "--until", "2026-11-02",
                     stdout=out)
    assert exit_info.value.code == 1
    assert out.getvalue().splitlines() == [
        "2026-11-02  gpt-4o-mini  ledger $2.00  provider $2.50  difference $0.50  drift"]


def test_the_command_exits_zero_when_everything_matches(reports_server: FakeReports) -> None:
    _drifting_day(reports_server, output_cost=1.0)
    out = StringIO()
    call_command("reconcile", "--provider", "openai-prod", "--since", "2026-11-02", "--until", "2026-11-03",
                 stdout=out)
    assert out.getvalue().splitlines() == [
        "2026-11-02  gpt-4o-mini  ledger $2.00  provider $2.00  difference $0.00  match",
        "2026-11-03  no usage on either side  match"]


@pytest.mark.parametrize("args", [["--provider", "nope", "--since", "2026-11-02"],
                                  ["--provider", "openai-prod", "--since", "02/11/2026"],
                                  ["--provider", "openai-prod", "--since", "2026-11-05", "--until", "2026-11-02"]])
def test_the_command_refuses_bad_input(reports_server: FakeReports, args: list[str]) -> None:
    openai_provider(reports_server)
    with pytest.raises(CommandError):
        call_command("reconcile", *args, stdout=StringIO())


def test_changes_to_the_reporting_key_are_audited_without_the_key(client_as, reports_server: FakeReports) -> None:
    provider = openai_provider(reports_server)
    provider.reporting.delete()
    admin = client_as("admin")
    admin.post(f"/reconciliation/{provider.pk}/settings/", {"admin_key": ADMIN_KEY, "tolerance_percent": "1"})
    admin.post(f"/reconciliation/{provider.pk}/settings/delete/")
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", flat=True))
    assert actions[-2:] == ["reconcile.credential_created", "reconcile.credential_deleted"]
    assert not ReportingCredential.objects.exists()
    html = admin.get("/audit/").content.decode()
    assert "reporting key added" in html and ADMIN_KEY not in html
