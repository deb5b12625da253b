"""API key pages: admins issue, list and revoke every key and say who else may make keys; other people see
(and revoke) their own keys, and make some when an admin allowed them to."""

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.models import User
from aspweb.roles import ADMIN, FINANCE, MEMBER, role_required
from usage.services import ledger_timezone

from . import apikeys
from .apikey_forms import ApiKeyForm
from .models import ApiKey


def _get_key_for_user(user: Any, pk: int) -> ApiKey:
    keys = ApiKey.objects.all() if apikeys.key_rights(user).manage_all else ApiKey.objects.filter(user=user)
    return get_object_or_404(keys, pk=pk)


@role_required(ADMIN, FINANCE, MEMBER)
def apikey_list(request: HttpRequest) -> HttpResponse:
    rights = apikeys.key_rights(request.user)
    keys = ApiKey.objects.select_related("user", "team", "created_by")
    if not rights.manage_all:
        keys = keys.filter(user=request.user)
    show_all = request.GET.get("all") == "1"
    now = timezone.now()
    if not show_all:
        keys = keys.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True)
    month = timezone.localtime(now, ledger_timezone()).date().replace(day=1)
    rows = [(key, apikeys.key_status(key, now)) for key in apikeys.with_spend_since(keys, month)]
    return render(request, "gateway/apikey_list.html", {"rows": rows, "rights": rights, "show_all": show_all,
                                                          "month": month})


@role_required(ADMIN, FINANCE, MEMBER)
def apikey_add(request: HttpRequest) -> HttpResponse:
    rights = apikeys.key_rights(request.user)
    if not rights.create_own:
        raise PermissionDenied("An admin has not allowed you to make your own API keys.")
    form = ApiKeyForm(request.POST or None, choose_owner=rights.manage_all,
                      teams=None if rights.manage_all else request.user.teams.all())
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        key, raw = apikeys.api_key_create(
            name=data["name"], user=data["user"] if rights.manage_all else request.user, actor=request.user,
            allowed_models=data["allowed_models"], rpm_limit=data["rpm_limit"], tpm_limit=data["tpm_limit"],
            expires_at=data["expires_at"], team=data.get("team"), log_bodies=data["log_bodies"],
        )
        # Rendered from the POST, never stored or redirected through a URL: the key is shown this once.
        response = render(request, "gateway/apikey_created.html", {
            "key": key, "raw": raw, "base_url": request.build_absolute_uri("/v1"),
            "example_model": apikeys.example_model(key),
        })
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "gateway/apikey_form.html", {"form": form, "rights": rights})


@role_required(ADMIN, FINANCE, MEMBER)
@require_POST
def apikey_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    key = _get_key_for_user(request.user, pk)
    if apikeys.api_key_revoke(key=key, actor=request.user):
        messages.success(request, f"Key {key.name} ({key.prefix}…) revoked: it is refused from now on.")
    else:
        messages.info(request, f"Key {key.name} ({key.prefix}…) was already revoked.")
    return redirect("apikey_list")


@role_required(ADMIN)
def apikey_access(request: HttpRequest) -> HttpResponse:
    """Who besides admins may make keys for themselves."""
    people = (User.objects.filter(is_active=True, is_superuser=False).exclude(groups__name=ADMIN)
              .prefetch_related("groups").order_by("email"))
    if request.method == "POST":
        user_id = request.POST.get("user", "")
        person = get_object_or_404(people, pk=int(user_id) if user_id.isdigit() else 0)
        allowed = request.POST.get("allowed") == "1"
        apikeys.self_service_set(user=person, allowed=allowed, actor=request.user)
        messages.success(request, f"{person.email} {'may now make' if allowed else 'may no longer make'} "
                                  "their own API keys.")
        return redirect("apikey_access")
    allowed_ids = set(people.filter(user_permissions__codename=apikeys.SELF_SERVICE_PERMISSION,
                                     user_permissions__content_type__app_label="gateway")
                      .values_list("pk", flat=True))
    return render(request, "gateway/apikey_access.html", {
        "rows": [(person, person.pk in allowed_ids) for person in people],
    })
