import secrets
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from aspweb.roles import ROLES

from . import signin, sso
from .audit import action_words, target_words
from .models import User

# Django's own words do not say which address they refuse.
INVALID_EMAIL = "“%(value)s” is not a valid e-mail address."

ROLE_HELP = {
    "Admin": "providers, models, prices, users, keys, audit log",
    "Finance": "cost dashboards, budgets and alerts",
    "Member": "playground and their own usage",
}


class ThrottledSignIn(AuthenticationForm):
    """A sign-in refused by the throttle (accounts/signin.py) says when to try again, rather than blaming a
    password that may be right. A sign-in accepted is audited here, where its password was checked: Django's
    user_logged_in also fires for sessions that code starts (the test client's force_login)."""

    def clean_username(self) -> str:
        # Every e-mail is stored in lower case (UserManager.create_user, UserForm.clean_email): one typed
        # with capitals, as phones offer it, is the same account, and is counted as one by the throttle.
        return (self.cleaned_data.get("username") or "").strip().lower()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        signin.audit_sign_in(self.request, self.get_user())
        return cleaned

    def confirm_login_allowed(self, user: User) -> None:
        super().confirm_login_allowed(user)
        # Checked after the password, so the refusal tells only someone who knows it.
        if not sso.password_allowed(user):
            signin.audit_sign_in_failed(self.request, user.email, method="password", reason="password sign-in is off")
            raise ValidationError(f"Password sign-in is turned off. Sign in with {settings.SSO_NAME} instead.",
                                  code="password_off")

    def get_invalid_login_error(self) -> ValidationError:
        if signin.is_locked_out(self.request):
            return ValidationError(signin.lockout_message(self.cleaned_data.get("username", "")), code="locked_out")
        return super().get_invalid_login_error()


class SignInForm(ThrottledSignIn):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Please enter a correct e-mail and password. The password is case-sensitive.",
    }
    username = forms.EmailField(label="E-mail", widget=forms.EmailInput(attrs={"autofocus": True,
                                                                            "autocomplete": "email"}),
                                error_messages={"invalid": INVALID_EMAIL})


class AdminSignInForm(ThrottledSignIn, AdminAuthenticationForm):
    """The Django admin's own sign-in page, throttled alike."""


class AuditFilterForm(forms.Form):
    """The audit log's filters, all optional: who (part of an e-mail, an address or a command's name), what was
    done, to what kind of object, and between which days (both included, in the server's time zone)."""

    actor = forms.CharField(required=False, max_length=254, label="Who",
                            widget=forms.TextInput(attrs={"placeholder": "e-mail or address", "type": "search"}))
    action = forms.ChoiceField(required=False, label="Action",
                               widget=forms.Select(attrs={"data-submit-on-change": True}))
    type = forms.ChoiceField(required=False, label="Object type",
                             widget=forms.Select(attrs={"data-submit-on-change": True}))
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, actions: list[str], types: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [("", "any action"), *((a, f"{action_words(a)} ({a})") for a in actions)]
        self.fields["type"].choices = [("", "any object"), *((t, target_words(t)) for t in types)]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", f"The last day ({until:%Y-%m-%d}) comes before the first ({since:%Y-%m-%d}).")
        return cleaned


class UserForm(forms.ModelForm):
    roles = forms.MultipleChoiceField(
        choices=[(r, f"{r} — {ROLE_HELP[r]}") for r in ROLES], required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = User
        fields = ["email", "name", "is_active"]
        labels = {"email": "E-mail", "is_active": "Active (may sign in)"}
        error_messages = {"email": {"invalid": INVALID_EMAIL}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["roles"].initial = list(
                self.instance.groups.filter(name__in=ROLES).values_list("name", flat=True)
            )

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"A user with the e-mail {email} already exists.")
        return email

    def save_roles(self, user: User) -> tuple[set[str], set[str]]:
        """Set the user's role groups; returns (added, removed)."""
        wanted = set(self.cleaned_data["roles"])
        current = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user.groups.remove(*Group.objects.filter(name__in=current - wanted))
        user.groups.add(*Group.objects.filter(name__in=wanted - current))
        return wanted - current, current - wanted


class SetPasswordForm(forms.Form):
    """An admin sets a password, or leaves it blank to have one generated and shown once."""

    password = forms.CharField(
        required=False, strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Leave blank to generate a strong password, shown once.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not password:
            self.generated = True
            return secrets.token_urlsafe(12)
        self.generated = False
        password_validation.validate_password(password, self.user)
        return password
