from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from aspweb.roles import ADMIN, FINANCE, MEMBER, has_role, role_required

from . import services
from .forms import BudgetForm
from .models import Budget, Delivery, Notification
from .status import budget_status

MANAGERS = (ADMIN, FINANCE)
NOTIFICATIONS_SHOWN = 100
ALERTS_SHOWN = 50


def _get_budget_for_user(pk: int, user: Any) -> Budget:
    """A budget the user may see; 404 for anyone else's user or API key budget."""
    return get_object_or_404(services.budgets_visible_to(user), pk=pk)


@role_required(ADMIN, FINANCE, MEMBER)
def budget_list(request: HttpRequest) -> HttpResponse:
    """The status page: every budget the user may see, with its current period."""
    statuses = [budget_status(budget) for budget in services.budgets_visible_to(request.user)]
    return render(request, "budgets/budget_list.html", {
        "statuses": statuses, "manages": has_role(request.user, *MANAGERS), "time_zone": settings.TIME_ZONE,
    })


@role_required(ADMIN, FINANCE, MEMBER)
def budget_detail(request: HttpRequest, pk: int) -> HttpResponse:
    budget = _get_budget_for_user(pk, request.user)
    manages = has_role(request.user, *MANAGERS)
    alerts = (budget.alerts.select_related("period")
              .prefetch_related(Prefetch("deliveries", queryset=Delivery.objects.order_by("channel")))
              [:ALERTS_SHOWN])
    channels = [(Delivery.Channel.IN_APP, "In-app (to you)", True),
                (Delivery.Channel.EMAIL, "E-mail", bool(budget.emails)),
                (Delivery.Channel.WEBHOOK, "Webhook", bool(budget.webhook_url))]
    status = budget_status(budget)
    context = {"budget": budget, "status": status, "alerts": alerts, "manages": manages, "channels": channels,
               "unpriced": services.budget_unpriced(budget, status.span),
               "prices_editable": has_role(request.user, ADMIN)}
    if request.htmx and request.GET.get("part") == "alerts":
        return render(request, "budgets/budget_detail.html#alerts", context)
    return render(request, "budgets/budget_detail.html", context)


@role_required(*MANAGERS)
def budget_add(request: HttpRequest) -> HttpResponse:
    form = BudgetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        budget = services.budget_save(budget=form.save(commit=False), actor=request.user)
        messages.success(request, f"Budget {budget.name} added.")
        return redirect("budget_detail", pk=budget.pk)
    return render(request, "budgets/budget_form.html", {"form": form, "budget": None})


@role_required(*MANAGERS)
def budget_edit(request: HttpRequest, pk: int) -> HttpResponse:
    budget = get_object_or_404(Budget, pk=pk)
    name = budget.name  # validating the form changes the instance; the page names the budget as saved
    form = BudgetForm(request.POST or None, instance=budget)
    if request.method == "POST" and form.is_valid():
        services.budget_save(budget=form.save(commit=False), actor=request.user, changed=form.changed_data)
        messages.success(request, f"Budget {budget.name} saved.")
        return redirect("budget_detail", pk=budget.pk)
    return render(request, "budgets/budget_form.html", {"form": form, "budget": budget, "budget_name": name})


@require_POST
@role_required(*MANAGERS)
def budget_delete(request: HttpRequest, pk: int) -> HttpResponse:
    budget = get_object_or_404(Budget, pk=pk)
    services.budget_delete(budget=budget, actor=request.user)
    messages.success(request, f"Budget {budget.name} deleted, with its alert history.")
    return redirect("budget_list")


@require_POST
@role_required(*MANAGERS)
def budget_test_alert(request: HttpRequest, pk: int) -> HttpResponse:
    budget = get_object_or_404(Budget, pk=pk)
    channel = request.POST.get("channel", Delivery.Channel.IN_APP)
    try:
        delivery = services.budget_test_alert(budget=budget, channel=channel, actor=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        delivery.refresh_from_db()
        label = delivery.get_channel_display()
        if delivery.status == Delivery.Status.SENT:
            messages.success(request, f"Test alert sent ({label}).")
        elif delivery.status == Delivery.Status.FAILED:
            messages.error(request, f"The test alert could not be sent ({label}): {delivery.last_error}")
        else:
            messages.info(request, f"Test alert queued ({label}); its status shows under Alerts.")
    return redirect("budget_detail", pk=budget.pk)


# -- notifications ----------------------------------------------------------------------------------


@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    notifications = Notification.objects.filter(user=request.user)[:NOTIFICATIONS_SHOWN]
    return render(request, "budgets/notification_list.html", {"notifications": notifications})


@login_required
def notification_bell(request: HttpRequest) -> HttpResponse:
    """The bell with its unread count, which every page polls."""
    return render(request, "base.html#bell")


@require_POST
@login_required
def notification_read(request: HttpRequest, pk: int) -> HttpResponse:
    notification = get_object_or_404(Notification, pk=pk, user=request.user)
    services.notifications_mark_read(user=request.user, notification_id=notification.pk)
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("notification_list")


@require_POST
@login_required
def notification_read_all(request: HttpRequest) -> HttpResponse:
    count = services.notifications_mark_read(user=request.user)
    messages.success(request, f"{count} notification{'s' if count != 1 else ''} marked as read.")
    return redirect("notification_list")
