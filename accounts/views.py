from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from aspweb.roles import ADMIN, ROLES, role_required

from . import signin, sso
from .audit import audit_log
from .forms import AuditFilterForm, SetPasswordForm, SignInForm, UserForm
from .models import AuditEvent, User

AUDIT_PAGE_SIZE = 50
# A user's fields as the audit log names them.
_FIELD_NAMES = {"email": "e-mail", "is_active": "active"}


class SignInView(auth_views.LoginView):
    """Django's sign-in page; a throttled sign-in shows the page with its form error, as 429 Too Many
    Requests, so that scripts see it too."""

    template_name = "accounts/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), **_sso_context()}

    def form_invalid(self, form: SignInForm) -> HttpResponse:
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "locked_out"):
            response.status_code = 429
        return response


def _sso_context() -> dict[str, Any]:
    return {"sso_name": settings.SSO_NAME if sso.enabled() else "", "password_signin": settings.PASSWORD_SIGNIN}


# Where the person was going, kept in the session while they are at the identity provider.
_SSO_NEXT = "sso_next"


def _callback_url(request: HttpRequest) -> str:
    path = reverse("sso_callback")
    # Behind a proxy that does not pass the public host, the configured site URL says it.
    return settings.SITE_URL.rstrip("/") + path if settings.SITE_URL else request.build_absolute_uri(path)


def sso_start(request: HttpRequest) -> HttpResponse:
    """The "Sign in with ..." button: off to the identity provider, which sends the person back to sso_callback.
    A link (GET), not a form: the Content-Security-Policy's form-action would stop a form's redirect there."""
    if not sso.enabled():
        raise Http404("Single sign-on is not set up.")
    wanted = request.GET.get("next", "")
    safe = url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure())
    request.session[_SSO_NEXT] = wanted if safe else ""
    try:
        return sso.redirect_to_provider(request, _callback_url(request))
    except sso.SSO_ERRORS:
        # The provider's discovery document could not be read: nothing the person can fix, and no secret in it.
        return _sso_failed(request, None, "The identity provider could not be reached. Try again later.", 502,
                           reason="provider unreachable")


def sso_callback(request: HttpRequest) -> HttpResponse:
    if not sso.enabled():
        raise Http404("Single sign-on is not set up.")
    try:
        claims = sso.claims_from_callback(request)
    except sso.SSO_ERRORS as error:
        # The error's class says what failed (a bad signature, a wrong audience, an expired token) without
        # repeating the token or the secret.
        return _sso_failed(request, None, f"Signing in with {settings.SSO_NAME} failed. Try again.", 400,
                           reason=sso.failure_reason(error))
    try:
        user = sso.sso_sign_in(claims=claims)
    except sso.SignInRefused as refusal:
        return _sso_failed(request, claims.get("email"), str(refusal), 403, reason="refused")
    login(request, user, backend="accounts.backends.CachedUserBackend")
    signin.audit_sign_in(request, user, method="single sign-on")
    wanted = request.session.pop(_SSO_NEXT, "")
    return redirect(wanted or settings.LOGIN_REDIRECT_URL)


def _sso_failed(request: HttpRequest, email: Any, message: str, status: int, *, reason: str) -> HttpResponse:
    email = email.strip().lower() if isinstance(email, str) else ""
    signin.audit_sign_in_failed(request, email, method="single sign-on", reason=reason)
    context = {"form": SignInForm(request), "sso_error": message, **_sso_context()}
    return render(request, "accounts/login.html", context, status=status)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


@role_required(ADMIN)
def user_list(request: HttpRequest) -> HttpResponse:
    users = User.objects.prefetch_related("groups")
    query = request.GET.get("q", "").strip()
    if query:
        users = users.filter(Q(email__icontains=query) | Q(name__icontains=query))
    rows = [(user, _role_names(user)) for user in users]
    return render(request, "accounts/user_list.html", {"rows": rows, "query": query,
                                                       "locked": signin.locked_emails()})


def _role_names(user: User) -> list[str]:
    """The user's roles as the role matrix counts them: a superuser is an admin, whatever groups they have."""
    names = {group.name for group in user.groups.all()} & set(ROLES)
    if user.is_superuser:
        names.add(ADMIN)
    return [role for role in ROLES if role in names]


@role_required(ADMIN)
@require_POST
def user_unlock(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(User, pk=pk)
    signin.user_unlock(actor=request.user, user=user)
    messages.success(request, f"{user.email} may sign in again.")
    return redirect("user_list")


@role_required(ADMIN)
def user_add(request: HttpRequest) -> HttpResponse:
    form = UserForm(request.POST or None, initial={"roles": ["Member"], "is_active": True})
    password_form = SetPasswordForm(request.POST or None, user=form.instance)
    if request.method == "POST" and form.is_valid() and password_form.is_valid():
        with transaction.atomic():
            user = form.save(commit=False)
            user.set_password(password_form.cleaned_data["password"])
            user.save()
            added, _ = form.save_roles(user)
            audit_log(request.user, "user.create", user, roles=sorted(added))
        return _password_shown_once(request, user, password_form, created=True)
    return render(request, "accounts/user_form.html", {"form": form, "password_form": password_form,
                                                       "editing": None})


@role_required(ADMIN)
def user_edit(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(User, pk=pk)
    form = UserForm(request.POST or None, instance=user)
    if request.method == "POST" and form.is_valid():
        if user == request.user and ((ADMIN not in form.cleaned_data["roles"] and not user.is_superuser)
                                     or not form.cleaned_data["is_active"]):
            form.add_error(None, "You cannot remove your own Admin role or deactivate yourself.")
        else:
            with transaction.atomic():
                form.save()
                added, removed = form.save_roles(user)
                changed = {_FIELD_NAMES.get(f, f): {"from": form.initial.get(f), "to": form.cleaned_data[f]}
                           for f in form.changed_data if f != "roles"}
                if changed:
                    audit_log(request.user, "user.update", user, **changed)
                if added or removed:
                    audit_log(request.user, "user.roles", user, added=sorted(added), removed=sorted(removed))
            messages.success(request, f"{user.email} saved.")
            return redirect("user_list")
    return render(request, "accounts/user_form.html", {"form": form, "editing": user})


@role_required(ADMIN)
def user_password(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(User, pk=pk)
    form = SetPasswordForm(request.POST or None, user=user)
    if request.method == "POST" and form.is_valid():
        user.set_password(form.cleaned_data["password"])
        user.save(update_fields=["password"])
        if user == request.user:
            update_session_auth_hash(request, user)
        audit_log(request.user, "user.password_reset", user)
        return _password_shown_once(request, user, form, created=False)
    return render(request, "accounts/user_password.html", {"form": form, "editing": user})


def _password_shown_once(request: HttpRequest, user: User, form: SetPasswordForm, *, created: bool) -> HttpResponse:
    # Rendered straight from the POST, never stored or redirected through a URL, so it is shown once.
    response = render(request, "accounts/password_shown.html", {
        "editing": user, "created": created,
        "password": form.cleaned_data["password"] if form.generated else None,
    })
    response["Cache-Control"] = "no-store"
    return response


@role_required(ADMIN)
def audit_list(request: HttpRequest) -> HttpResponse:
    everything = AuditEvent.objects.order_by()
    form = AuditFilterForm(request.GET or None,
                           actions=sorted(everything.values_list("action", flat=True).distinct()),
                           types=sorted(everything.values_list("target_type", flat=True).distinct()))
    valid = form.is_valid() if form.is_bound else True
    chosen = form.cleaned_data if form.is_bound else {}
    events = AuditEvent.objects.all()
    if chosen.get("actor"):
        events = events.filter(actor_label__icontains=chosen["actor"].strip())
    if chosen.get("action"):
        events = events.filter(action=chosen["action"])
    if chosen.get("type"):
        events = events.filter(target_type=chosen["type"])
    # The first and last days a calendar holds mean no bound (and would overflow in another time zone).
    if chosen.get("since") and chosen["since"] > date.min + timedelta(days=1):
        events = events.filter(created_at__gte=_day_start(chosen["since"]))
    if chosen.get("until") and chosen["until"] < date.max - timedelta(days=1):
        events = events.filter(created_at__lt=_day_start(chosen["until"] + timedelta(days=1)))
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    filtered = any(chosen.get(name) for name in ("actor", "action", "type", "since", "until"))
    return render(request, "accounts/audit_list.html", {"page": page, "form": form, "filtered": filtered},
                  status=200 if valid else 400)


def _day_start(day: date) -> datetime:
    """The first instant of `day` in the server's time zone (settings.TIME_ZONE)."""
    return timezone.make_aware(datetime.combine(day, time.min))
