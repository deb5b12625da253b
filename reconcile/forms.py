from typing import Any

from django import forms

from aspweb import outbound
from budgets.forms import EmailsField

from .models import OWN_KEY_KINDS, ReportingCredential

KEY_HELP = {
    "openai": "An organisation admin key (sk-admin-…) from the OpenAI platform's admin keys.",
    "anthropic": "An Admin API key (sk-ant-admin…) from the Claude Console.",
    "openrouter": "Optional: OpenRouter's generation stats are read with an API key of the same account; left "
                  "blank, the provider's own API key reads them.",
}


class CredentialForm(forms.ModelForm):
    """The reporting key is written, never read back: a blank field keeps the stored one."""

    admin_key = forms.CharField(
        required=False, strip=True, max_length=500, label="Admin key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}))
    alert_emails = EmailsField(required=False, label="E-mail recipients",
                               help_text="Who gets drift alerts by e-mail, separated by commas or spaces.")

    class Meta:
        model = ReportingCredential
        fields = ["api_key_id", "project_id", "tolerance_percent", "alert_emails", "alert_webhook_url"]
        labels = {"api_key_id": "aspweb's API key id", "project_id": "Project or workspace id",
                  "tolerance_percent": "Tolerance (%)", "alert_webhook_url": "Webhook URL"}

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stored = bool(self.instance.pk is not None and self.instance.admin_key)
        self.fields["admin_key"].required = self.instance.pk is None and kind not in OWN_KEY_KINDS
        kept = "A key is stored; leave blank to keep it. " if stored else ""
        self.fields["admin_key"].help_text = kept + KEY_HELP[kind]
        if kind in OWN_KEY_KINDS:
            self.fields["admin_key"].label = "API key for reports"
            # Each call is looked up by its own id: there is no key or project to restrict a report to.
            del self.fields["api_key_id"], self.fields["project_id"]

    def clean_alert_webhook_url(self) -> str:
        return outbound.clean_webhook_url(self.cleaned_data["alert_webhook_url"])
