from datetime import date, timedelta

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from aspweb.roles import ADMIN, FINANCE, has_role, role_required
from providers.models import Provider

from . import pages, services
from .forms import CredentialForm
from .models import REPORTING_KINDS, DayCheck, ReportingCredential


def _get_provider(pk: int) -> Provider:
    return get_object_or_404(Provider, pk=pk, kind__in=REPORTING_KINDS, archived_at__isnull=True)


@role_required(ADMIN, FINANCE)
def reconcile_index(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    first = pages.month_of(request.GET.get("month"), now.date())
    previous = (first.replace(day=1) - timedelta(days=1)).replace(day=1)
    following = pages.month_end(first)
    return render(request, "reconcile/index.html", {
        "month": first, "months": pages.providers_month(first, now), "previous": previous,
        "following": following if following <= now.date() else None, "is_admin": has_role(request.user, ADMIN),
    })


@role_required(ADMIN, FINANCE)
def reconcile_day(request: HttpRequest, pk: int, day: str) -> HttpResponse:
    provider = _get_provider(pk)
    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise Http404("No such day.") from None
    check = DayCheck.objects.filter(provider=provider, day=when).first()
    return render(request, "reconcile/day.html", {
        "provider": provider, "day": when, "check": check, "rows": pages.day_rows(check) if check else [],
        "is_admin": has_role(request.user, ADMIN),
    })


@role_required(ADMIN)
def reconcile_settings(request: HttpRequest, pk: int) -> HttpResponse:
    provider = _get_provider(pk)
    credential = ReportingCredential.objects.filter(provider=provider).first()
    form = CredentialForm(request.POST or None, instance=credential, kind=provider.kind)
    if request.method == "POST" and form.is_valid():
        fields = {name: form.cleaned_data[name] for name in form.Meta.fields if name in form.fields}
        services.credential_save(provider=provider, actor=request.user, admin_key=form.cleaned_data["admin_key"],
                                 **fields)
        messages.success(request, f"Reconciliation settings of {provider.name} saved.")
        return redirect("reconcile_index")
    return render(request, "reconcile/settings.html", {"provider": provider, "form": form, "credential": credential})


@require_POST
@role_required(ADMIN)
def reconcile_settings_delete(request: HttpRequest, pk: int) -> HttpResponse:
    provider = _get_provider(pk)
    credential = ReportingCredential.objects.filter(provider=provider).first()
    if credential is not None:
        services.credential_delete(credential=credential, actor=request.user)
        messages.success(request, f"The reporting key of {provider.name} is deleted.")
    return redirect("reconcile_index")
