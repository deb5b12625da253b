"""Budgets as code: the `budgets:` section of import_config, checked with the UI's form and all or nothing,
idempotent, and written back by export_config with the webhook URL as a placeholder."""

import io
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import yaml
from django.core.management import call_command

from accounts.models import User
from aspweb.config import ConfigError, config_export, config_import, dump_yaml, load_yaml
from budgets.models import Budget
from gateway.models import ApiKey
from tests.budgets_support import PUBLIC_IP, fake_dns

PROVIDERS = """\
providers:
  - name: lab
    kind: ollama
    models:
      - name: small
        prices: {input: 1, output: 2}
"""
BUDGETS = """\
budgets:
  - name: Everything
    scope: global
    period: monthly
    amount: 1000
    forecast: true
    hard_limit: true
    emails: [cfo@example.com]
    webhook_url: ${SLACK_HOOK}
  - name: Lab weekly
    scope: provider
    target: lab
    period: weekly
    amount: 12.345
    thresholds: [25, 75]
  - name: Small daily
    scope: model
    target: lab/small
    period: daily
    amount: 0.5
"""
HOOK = "https://hooks.slack.example/services/T0/B0/secret"
ENV = {"SLACK_HOOK": HOOK}


@pytest.fixture(autouse=True)
def _hook_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    # The form checks that a webhook resolves to a public address; no test asks a real DNS server.
    fake_dns(monkeypatch, {"hooks.slack.example": [PUBLIC_IP]})


def run_import(text: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return config_import(load_yaml(text, ENV if env is None else env), actor="import_config", **kwargs)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        run_import(text)
    return caught.value.errors


def test_budgets_import_with_targets_the_same_file_creates(db: None) -> None:
    report = run_import(PROVIDERS + BUDGETS)

    assert report.created[-3:] == ["budget Everything", "budget Lab weekly", "budget Small daily"]
    everything = Budget.objects.get(name="Everything")
    assert (everything.scope, everything.period, everything.amount) == ("global", "monthly", Decimal(1000))
    assert everything.thresholds == [50, 80, 100]  # the default when the file leaves them out
    assert (everything.forecast, everything.hard_limit) == (True, True)
    assert (everything.emails, everything.webhook_url) == (["cfo@example.com"], HOOK)
    lab = Budget.objects.get(name="Lab weekly")
    assert (lab.provider.name, lab.amount, lab.thresholds) == ("lab", Decimal("12.345"), [25, 75])
    assert str(Budget.objects.get(name="Small daily").model) == "lab/small"


def test_reimport_changes_nothing_and_a_change_is_reported(db: None) -> None:
    run_import(PROVIDERS + BUDGETS)

    again = run_import(PROVIDERS + BUDGETS)
    assert not again.changed
    assert {"budget Everything", "budget Lab weekly", "budget Small daily"} <= set(again.unchanged)

    changed = run_import(PROVIDERS + BUDGETS.replace("amount: 12.345", "amount: 20").replace("target: lab/small",
                                                                                          "target: lab/small\n"
                                                                                          "    hard_limit: true"))
    assert changed.updated == ["budget Lab weekly (amount)", "budget Small daily (hard_limit)"]
    assert Budget.objects.get(name="Lab weekly").amount == Decimal(20)


def test_a_file_can_move_a_budget_to_another_scope(db: None) -> None:
    run_import(PROVIDERS + BUDGETS)
    run_import("budgets:\n  - name: Lab weekly\n    scope: model\n    target: lab/small\n")

    budget = Budget.objects.get(name="Lab weekly")
    assert (budget.scope, budget.provider, str(budget.model)) == ("model", None, "lab/small")
    assert budget.amount == Decimal("12.345")  # what the file leaves out keeps its value


def test_users_and_api_keys_are_named_by_e_mail_and_prefix(db: None, make_user: Callable[..., User]) -> None:
    ana = make_user("member", email="ana@example.com")
    key = ApiKey.objects.create(name="ci", user=ana, prefix="ak-ci01", key_hash="x")
    run_import("budgets:\n"
               "  - {name: Ana, scope: user, target: ANA@example.com, period: monthly, amount: 5}\n"
               "  - {name: CI, scope: api_key, target: ak-ci01, period: total, amount: 50}\n")

    assert Budget.objects.get(name="Ana").user == ana
    assert Budget.objects.get(name="CI").api_key == key


def test_a_webhook_to_cloud_metadata_is_refused_on_import(db: None) -> None:
    errors = errors_of(BUDGETS.replace("${SLACK_HOOK}", "http://169.254.169.254/latest/meta-data/").split(
        "  - name: Lab weekly")[0])

    assert len(errors) == 1
    assert errors[0].startswith("budgets[0] (Everything).webhook_url: 169.254.169.254 is a link-local address.")
    assert not Budget.objects.exists()


def test_every_budget_error_names_its_place_and_nothing_is_written(db: None) -> None:
    text = PROVIDERS + """\
budgets:
  - name: A
    scope: provider
    target: nowhere
    period: monthly
    amount: 5
  - name: B
    scope: global
    target: lab
    period: fortnightly
    amount: -1
  - name: C
    scope: user
    period: total
    amount: 5
    forecast: true
    thresholds: [50, high]
    emails: cfo@example.com
    colour: red
  - name: A
    scope: global
    amount: 1
"""
    errors = errors_of(text)

    assert errors == [
        "budgets[0] (A).target: no provider 'nowhere' in the catalog or in this file "
        "(a provider budget's target is a provider name)",
        "budgets[1] (B).target: a global budget has no target",
        "budgets[1] (B).period: Select a valid choice. fortnightly is not one of the available choices.",
        "budgets[1] (B).amount: A budget must be above $0.",
        "budgets[2] (C).colour: unknown setting; budget settings are: name, scope, target, period, amount, "
        "thresholds, forecast, hard_limit, emails, webhook_url",
        "budgets[2] (C).thresholds: expected a list of whole-number percentages, not [50, 'high']",
        "budgets[2] (C).emails: expected a list of e-mail addresses, not 'cfo@example.com'",
        "budgets[2] (C).target: a user budget needs a target: a user's e-mail",
        "budgets[2] (C).forecast: A total budget never ends, so there is no period end to forecast.",
        "budgets[3] (A).name: budget 'A' appears twice in the file (also budgets[0] (A))",
    ]
    assert not Budget.objects.exists()


def test_export_round_trips_with_the_webhook_url_as_a_placeholder(db: None) -> None:
    run_import(PROVIDERS + BUDGETS)

    exported = config_export()
    text = dump_yaml(exported)

    assert HOOK not in text
    everything = exported["budgets"][0]
    assert everything == {"name": "Everything", "scope": "global", "period": "monthly", "amount": Decimal(1000),
                          "thresholds": [50, 80, 100], "forecast": True, "hard_limit": True,
                          "emails": ["cfo@example.com"], "webhook_url": "${BUDGET_EVERYTHING_WEBHOOK_URL}"}
    assert exported["budgets"][1]["target"] == "lab" and exported["budgets"][2]["target"] == "lab/small"
    report = run_import(text, env={"BUDGET_EVERYTHING_WEBHOOK_URL": HOOK})
    assert not report.changed
    assert yaml.safe_load(dump_yaml(config_export())) == yaml.safe_load(text)


def test_export_command_names_the_webhook_variable(db: None) -> None:
    run_import(PROVIDERS + BUDGETS)
    out = io.StringIO()
    call_command("export_config", stdout=out)
    assert "# Budget webhook URLs are not in this file either: set these environment variables:\n" \
           "#   BUDGET_EVERYTHING_WEBHOOK_URL\n" in out.getvalue()
