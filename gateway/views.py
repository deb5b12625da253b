"""The pages of routes (API keys': apikey_views.py)."""

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.audit import audit_log
from aspweb.roles import ADMIN, role_required

from . import routing, services
from .forms import DeploymentForm, RouteForm
from .models import Deployment, Route


@role_required(ADMIN)
def route_list(request: HttpRequest) -> HttpResponse:
    routes = Route.objects.annotate(deployment_count=Count("deployments"))
    return render(request, "gateway/route_list.html", {"routes": routes})


@role_required(ADMIN)
def route_add(request: HttpRequest) -> HttpResponse:
    form = RouteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        route = services.route_save(route=form.save(commit=False), actor=request.user)
        messages.success(request, f"Route {route.name} added: now give it deployments.")
        return redirect("route_detail", pk=route.pk)
    return render(request, "gateway/route_form.html", {"form": form, "route": None})


@role_required(ADMIN)
def route_edit(request: HttpRequest, pk: int) -> HttpResponse:
    route = get_object_or_404(Route, pk=pk)
    form = RouteForm(request.POST or None, instance=route)
    if request.method == "POST" and form.is_valid():
        services.route_save(route=form.save(commit=False), actor=request.user, changed=form.changed_data)
        messages.success(request, f"Route {route.name} saved.")
        return redirect("route_detail", pk=route.pk)
    return render(request, "gateway/route_form.html", {"form": form, "route": route})


@role_required(ADMIN)
def route_detail(request: HttpRequest, pk: int) -> HttpResponse:
    route = get_object_or_404(Route, pk=pk)
    form = DeploymentForm(request.POST or None, route=route)
    if request.method == "POST" and form.is_valid():
        services.deployment_add(deployment=form.save(commit=False), actor=request.user)
        messages.success(request, "Deployment added.")
        return redirect("route_detail", pk=route.pk)
    deployments = list(route.deployments.select_related("model__provider"))
    for deployment in deployments:
        deployment.circuit = routing.circuit(deployment.model_id)
        deployment.latency_ms = routing.latency_average(deployment.model_id)
        deployment.price_now = deployment.model.current_price()
    return render(request, "gateway/route_detail.html", {"route": route, "deployments": deployments,
                                                           "form": form})


@require_POST
@role_required(ADMIN)
def route_delete(request: HttpRequest, pk: int) -> HttpResponse:
    route = get_object_or_404(Route, pk=pk)
    services.route_delete(route=route, actor=request.user)
    messages.success(request, f"Route {route.name} deleted.")
    return redirect("route_list")


@require_POST
@role_required(ADMIN)
def deployment_remove(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = get_object_or_404(Deployment.objects.select_related("route", "model"), pk=pk)
    services.deployment_remove(deployment=deployment, actor=request.user)
    messages.success(request, f"{deployment.model} no longer serves {deployment.route.name}.")
    return redirect("route_detail", pk=deployment.route_id)


@require_POST
@role_required(ADMIN)
def deployment_reset(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = get_object_or_404(Deployment, pk=pk)
    routing.reset(deployment.model_id)
    audit_log(request.user, "route.circuit_reset", deployment.route, model=str(deployment.model))
    messages.success(request, f"{deployment.model} is back in rotation.")
    return redirect("route_detail", pk=deployment.route_id)
