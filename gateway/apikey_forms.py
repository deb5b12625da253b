from datetime import datetime
from typing import Any

from django import forms
from django.utils import timezone

from accounts.models import Team, User
from aspweb.forms import BoundedIntegerField

from . import apikeys
from .models import RPM_RANGE, TPM_RANGE


def allowed_model_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """Routes, whole providers (PROVIDER/*) and single models, grouped, for the allowed-models boxes."""
    models, routes = apikeys.addressable()
    providers = sorted({model.provider.name for model in models})
    groups = [
        ("Routes", [(route.name, route.name) for route in routes]),
        ("Every model of a provider", [(f"{name}/*", f"{name}/*") for name in providers]),
        ("Single models", sorted((str(model), str(model)) for model in models)),
    ]
    return [(label, choices) for label, choices in groups if choices]


class ApiKeyForm(forms.Form):
    """A new key. Admins choose its owner; others make keys for themselves only (no owner field)."""

    name = forms.CharField(max_length=100, help_text="What will use it: an application, a script, a laptop.")
    user = forms.ModelChoiceField(
        User.objects.filter(is_active=True), required=False, label="Owner",
        help_text="The person it belongs to or acts for; leave empty for an application's key.",
    )
    team = forms.ModelChoiceField(
        Team.objects.order_by("name"), required=False,
        help_text="The team its calls are counted for (dashboards, team budgets); empty: none.",
    )
    allowed_models = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Allowed models and routes",
        help_text="None ticked: every model and route, including ones added later.",
    )
    rpm_limit = BoundedIntegerField(min_value=RPM_RANGE[0], max_value=RPM_RANGE[1], required=False,
                                    label="Requests per minute", help_text="Empty: no limit.")
    tpm_limit = BoundedIntegerField(min_value=TPM_RANGE[0], max_value=TPM_RANGE[1], required=False,
                                    label="Tokens per minute", help_text="Input and output tokens; empty: no limit.")
    expires_at = forms.DateTimeField(
        required=False, label="Expires",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Empty: never (revoke it when it is no longer needed).",
    )
    log_bodies = forms.BooleanField(
        required=False, label="Log prompts and answers",
        help_text="Keep each call's prompt and answer (redacted, encrypted, deleted after the retention period) "
                  "for its page; only admins and the key's owner can read them.",
    )

    def __init__(self, *args: Any, choose_owner: bool, teams: Any = None, **kwargs: Any) -> None:
        """`teams`: the teams the key may be for, when not every team (a person's own)."""
        super().__init__(*args, **kwargs)
        if not choose_owner:
            del self.fields["user"]
        if teams is not None:
            self.fields["team"].queryset = teams.order_by("name")
            if not self.fields["team"].queryset.exists():
                del self.fields["team"]
        self.fields["allowed_models"].choices = allowed_model_choices()

    def clean_expires_at(self) -> datetime | None:
        expires_at = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("Choose a time in the future.")
        return expires_at
