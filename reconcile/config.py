"""A provider entry's `reporting:` in the config file (aspweb/config.py runs it with the providers section):
the provider's reporting credential, checked with the settings page's form and written with
`services.credential_save`, in the import's transaction. The admin key is a `${NAME}` reference, never the key
itself, and is exported as a placeholder, as a provider's api_key is; so is the alert webhook (a credential)."""

from dataclasses import dataclass
from typing import Any

from aspweb import config
from providers.models import Provider

from . import services
from .forms import CredentialForm
from .models import REPORTING_KINDS, ReportingCredential

KEYS = ("admin_key", "api_key_id", "project_id", "tolerance_percent", "alert_emails", "alert_webhook_url")


@dataclass
class _Plan:
    existing: ReportingCredential | None
    form: CredentialForm
    key_changed: bool


def _check(value: Any, kind: str, provider: Provider | None, where: str, errors: list[str]) -> _Plan | None:
    if kind not in REPORTING_KINDS:
        errors.append(f"{where}: aspweb reads no usage reports of kind {kind}; reporting is for kinds "
                      f"{', '.join(REPORTING_KINDS)}")
        return None
    if not isinstance(value, dict):
        errors.append(f"{where}: expected a mapping of {', '.join(KEYS)}, not {config.type_name(value)}")
        return None
    existing = ReportingCredential.objects.filter(provider=provider).first() if provider is not None else None
    blank = CredentialForm(instance=existing, kind=kind)
    config.check_keys(value, tuple(key for key in KEYS if key in blank.fields), where, f"kind {kind} takes", errors)
    values = dict(value)
    emails = values.get("alert_emails")
    if emails is not None:
        if not isinstance(emails, list) or not all(isinstance(address, str) for address in emails):
            errors.append(f"{where}.alert_emails: expected a list of e-mail addresses, not {emails!r}")
            values.pop("alert_emails")
        else:
            values["alert_emails"] = ", ".join(emails)
    if "tolerance_percent" in values and not isinstance(values["tolerance_percent"], dict | list | bool):
        values["tolerance_percent"] = str(values["tolerance_percent"])  # through str(): the digits written
    admin_key = values.get("admin_key")
    if admin_key not in (None, "") and not isinstance(admin_key, config.FromEnv):
        errors.append(f"{where}.admin_key: write the key as a ${{NAME}} reference to an environment variable, "
                      "never the key itself")
    data = config.form_data(blank, values, where, errors)
    # A blank key keeps the stored one, as on the page; an unchanged one is not encrypted and saved again.
    key = str(data.get("admin_key") or "").strip()
    if existing is not None and existing.admin_key and existing.admin_key.reveal() == key:
        key = ""
    data["admin_key"] = key
    form = CredentialForm(data, instance=existing, kind=kind)
    config.form_errors(form, where, errors)
    return _Plan(existing, form, bool(key))


def _apply(provider: Provider, plan: _Plan | None, actor: Any, report: config.Report) -> None:
    if plan is None:
        return
    form = plan.form
    changed = [name for name in form.changed_data if name in CredentialForm.Meta.fields]
    if plan.existing is not None and not changed and not plan.key_changed:
        report.unchanged.append(f"reporting of provider {provider.name}")
        return
    fields = {name: form.cleaned_data[name] for name in (CredentialForm.Meta.fields if plan.existing is None
                                                         else changed) if name in form.fields}
    services.credential_save(provider=provider, actor=actor, admin_key=form.cleaned_data["admin_key"], **fields)
    if plan.existing is None:
        report.created.append(f"reporting of provider {provider.name}")
    else:
        report.updated.append(f"reporting of provider {provider.name} "
                              f"({', '.join(sorted([*changed, *(['admin_key'] if plan.key_changed else [])]))})")


def _export(provider: Provider, placeholders: set[str]) -> dict[str, Any] | None:
    credential = ReportingCredential.objects.filter(provider=provider).first()
    if credential is None or provider.kind not in REPORTING_KINDS:
        return None
    entry: dict[str, Any] = {}
    for secret, stored in (("admin_key", credential.admin_key), ("alert_webhook_url", credential.alert_webhook_url)):
        if stored:
            placeholder = config.env_placeholder(f"{provider.name} reporting", secret.upper(), placeholders)
            placeholders.add(placeholder)
            entry[secret] = f"${{{placeholder}}}"
    for name in ("api_key_id", "project_id"):
        if getattr(credential, name):
            entry[name] = config.literal(getattr(credential, name))
    entry["tolerance_percent"] = credential.tolerance_percent.normalize()
    if credential.alert_emails:
        entry["alert_emails"] = [config.literal(address) for address in credential.alert_emails]
    return entry


PART = config.ProviderPart("reporting", check=_check, apply=_apply, export=_export)
