import re
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from accounts.models import Team
from aspweb import outbound
from providers.models import Model, Provider
from usage import attribution
from usage.models import api_key_model

from .models import Budget

ApiKey = api_key_model()

_SEPARATORS = re.compile(r"[\s,;]+")
MAX_THRESHOLDS = 20
MAX_EMAILS = 50


class ThresholdsField(forms.CharField):
    """Percentages as people type them ("50, 80, 100"), as a sorted list of distinct whole numbers."""

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else value

    def to_python(self, value: Any) -> list[int]:
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        numbers = set()
        for part in _SEPARATORS.split(str(value or "").replace("%", " ")):
            if not part:
                continue
            if not part.isdigit() or not 1 <= int(part) <= 1000:
                raise ValidationError(f"“{part}” is not a percentage from 1 to 1000.")
            numbers.add(int(part))
        if len(numbers) > MAX_THRESHOLDS:
            raise ValidationError(f"At most {MAX_THRESHOLDS} thresholds (this has {len(numbers)}).")
        return sorted(numbers)


class EmailsField(forms.CharField):
    """Addresses separated by commas or new lines, as a list."""

    widget = forms.Textarea(attrs={"rows": 2})

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        addresses = []
        for address in _SEPARATORS.split(str(value or "")):
            if address and address not in addresses:
                try:
                    validate_email(address)
                except ValidationError:
                    shown = address if len(address) <= 60 else address[:59] + "…"
                    raise ValidationError(f"“{shown}” is not an e-mail address.") from None
                addresses.append(address)
        if len(addresses) > MAX_EMAILS:
            raise ValidationError(f"At most {MAX_EMAILS} recipients (this has {len(addresses)}); a mailing list "
                                  "address reaches more.")
        return addresses


class BudgetForm(forms.ModelForm):
    """The scope picks which target field counts; the others are cleared. `with_target=False` leaves the
    target out, for config files that name a provider or model the same file creates."""

    thresholds = ThresholdsField(required=False, initial="50, 80, 100",
                                 help_text=f"Percentages of the amount that raise an alert, e.g. 50, 80, 100 (at most "
                                           f"{MAX_THRESHOLDS}).")
    emails = EmailsField(required=False, label="E-mail recipients",
                         help_text="Separated by commas or new lines. Finance users and admins always get "
                                   "in-app alerts.")

    class Meta:
        model = Budget
        fields = ["name", "scope", "provider", "model", "user", "api_key", "team", "tag", "end_user", "period",
                  "amount", "thresholds", "forecast", "hard_limit", "emails", "webhook_url"]
        labels = {"amount": "Amount (USD)", "api_key": "API key", "end_user": "End user", "hard_limit": "Hard limit",
                  "forecast": "Forecast alert", "webhook_url": "Webhook URL"}
        error_messages = {"name": {"unique": "Another budget already has this name."}}
        help_texts = {
            "name": f"Up to {Budget._meta.get_field('name').max_length} characters; alerts name the budget by it.",
            "forecast": "Alert once when the run-rate projects the period's spend above the amount "
                        "(from a quarter of the way through the period).",
            "hard_limit": "Refuse calls that could take spend past the amount, before any provider is called.",
            "webhook_url": "A Slack-compatible incoming webhook at a public address: it receives JSON with a text "
                           "field.",
        }

    def __init__(self, *args: Any, with_target: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.with_target = with_target
        if not with_target:
            for name in Budget.TARGETS.values():
                del self.fields[name]
            return
        self.fields["provider"].queryset = Provider.objects.active()
        self.fields["model"].queryset = (Model.objects.filter(provider__archived_at__isnull=True)
                                         .select_related("provider").order_by("provider__name", "name"))
        self.fields["user"].queryset = get_user_model().objects.filter(is_active=True).order_by("email")
        self.fields["api_key"].queryset = ApiKey.objects.filter(revoked_at__isnull=True).order_by("name")
        self.fields["team"].queryset = Team.objects.order_by("name")
        for scope, name in Budget.TARGETS.items():
            self.fields[name].help_text = f"For the “{scope.label}” scope." + {
                "tag": " Tags are compared in lower case.", "end_user": " As the application sends it."}.get(name, "")
            # static/js/forms.js shows the field only while that scope is chosen; without JavaScript every
            # target shows, and clean() keeps only the scope's own.
            self.fields[name].widget.attrs["data-show-when"] = f"scope={scope.value}"

    def clean_webhook_url(self) -> str:
        return outbound.clean_webhook_url(self.cleaned_data["webhook_url"])

    def clean_tag(self) -> str:
        try:
            tags = attribution.tags_parse([self.cleaned_data["tag"]], "tag")
        except attribution.AttributionError as exc:
            raise ValidationError(exc.message) from None
        if len(tags) > 1:
            raise ValidationError("One tag: a budget covers the calls carrying it.")
        return tags[0] if tags else ""

    def clean_end_user(self) -> str:
        try:
            return attribution.end_user_clean(self.cleaned_data["end_user"], "end_user")
        except attribution.AttributionError as exc:
            raise ValidationError(exc.message) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        scope = data.get("scope")
        if self.with_target and scope:
            wanted = Budget.TARGETS.get(scope)
            for name in Budget.TARGETS.values():
                if name != wanted:
                    data[name] = "" if name in ("tag", "end_user") else None
            if wanted and not data.get(wanted) and wanted not in self.errors:
                what = Budget.Scope(scope).label.removeprefix("One ")
                self.add_error(wanted, f"Choose the {what} this budget is for: the “{Budget.Scope(scope).label}” "
                                       f"scope needs one.")
        if data.get("forecast") and data.get("period") == Budget.Period.TOTAL:
            self.add_error("forecast", "A total budget never ends, so there is no period end to forecast.")
        return data
