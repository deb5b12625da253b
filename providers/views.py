from django.contrib import messages
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from aspweb.roles import ADMIN, role_required

from . import hooks, services
from .adapters.base import ProviderError
from .forms import CatalogChoiceForm, CatalogModelForm, PriceForm, ProviderForm, stored_secrets
from .kinds import EXTRA_FIELDS, KINDS, SECRET_FIELDS, get_kind
from .models import Model, Price, Provider


def _get_provider(pk: int, *, active: bool = True) -> Provider:
    queryset = Provider.objects.active() if active else Provider.objects.all()
    return get_object_or_404(queryset, pk=pk)


def _models_with_prices(provider: Provider) -> list[Model]:
    """The catalog with each model's price in force now, from one prefetch rather than a query a model."""
    now = timezone.now()
    prices = Price.objects.filter(effective_from__lte=now).order_by("-effective_from", "-id").prefetch_related("tiers")
    models = list(provider.models.prefetch_related(Prefetch("prices", queryset=prices, to_attr="prices_in_force")))
    for model in models:
        model.price_now = model.prices_in_force[0] if model.prices_in_force else None
    return models


@role_required(ADMIN)
def provider_list(request: HttpRequest) -> HttpResponse:
    show_archived = request.GET.get("archived") == "1"
    providers = Provider.objects.defer("api_key").annotate(
        model_count=Count("models"), enabled_model_count=Count("models", filter=Q(models__enabled=True))
    )
    providers = providers.filter(archived_at__isnull=not show_archived)
    return render(request, "providers/list.html", {"providers": providers, "show_archived": show_archived,
                                                   "unpriced_models": hooks.unpriced_models()})


@role_required(ADMIN)
def provider_add_choose(request: HttpRequest) -> HttpResponse:
    return render(request, "providers/add_choose.html", {"kinds": KINDS.values()})


@role_required(ADMIN)
def provider_add(request: HttpRequest, kind: str) -> HttpResponse:
    try:
        preset = get_kind(kind)
    except ValueError:
        raise Http404("Unknown provider kind") from None
    form = ProviderForm(request.POST or None, kind=preset)
    if request.method == "POST" and form.is_valid():
        provider = form.save(commit=False)
        services.provider_save(provider=provider, actor=request.user)
        messages.success(request, f"Provider {provider.name} added. Test the connection, then sync its models.")
        return redirect("provider_detail", pk=provider.pk)
    return render(request, "providers/form.html", {"form": form, "kind": preset, "provider": None})


@role_required(ADMIN)
def provider_detail(request: HttpRequest, pk: int) -> HttpResponse:
    provider = _get_provider(pk, active=False)
    kind = provider.kind_preset
    stored = stored_secrets(provider.api_key) if kind.secrets else {}
    return render(request, "providers/detail.html", {
        "provider": provider,
        "kind": kind,
        # Named as the form names them (Cloudflare account ID, API version), never by their stored keys.
        "settings": [(EXTRA_FIELDS[name].label, provider.extra[name]) for name in kind.extra
                     if provider.extra.get(name)],
        # Whether each of a kind's secrets is stored, by the form's label; never the secret itself.
        "secrets": [(SECRET_FIELDS[name].label, bool(stored.get(name))) for name in kind.secrets],
        "models": _models_with_prices(provider),
        "unpriced_models": hooks.unpriced_models(provider),
    })


@role_required(ADMIN)
def provider_edit(request: HttpRequest, pk: int) -> HttpResponse:
    provider = _get_provider(pk)
    form = ProviderForm(request.POST or None, instance=provider, kind=provider.kind_preset)
    if request.method == "POST" and form.is_valid():
        provider = form.save(commit=False)
        services.provider_save(provider=provider, actor=request.user, changed=form.changed_settings(),
                               key_changed=form.key_changed)
        messages.success(request, f"Provider {provider.name} saved.")
        return redirect("provider_detail", pk=provider.pk)
    return render(request, "providers/form.html", {"form": form, "kind": provider.kind_preset, "provider": provider})


@require_POST
@role_required(ADMIN)
def provider_set_enabled(request: HttpRequest, pk: int) -> HttpResponse:
    provider = _get_provider(pk)
    enabled = request.POST.get("enabled") == "1"
    services.provider_set_enabled(provider=provider, enabled=enabled, actor=request.user)
    messages.success(request, f"Provider {provider.name} {'enabled' if enabled else 'disabled'}.")
    return redirect("provider_detail", pk=provider.pk)


@role_required(ADMIN)
def provider_delete(request: HttpRequest, pk: int) -> HttpResponse:
    provider = _get_provider(pk)
    if request.method == "POST":
        name = provider.name
        outcome = services.provider_delete(provider=provider, actor=request.user)
        if outcome == "archived":
            messages.success(request, f"Provider {name} has usage history, so it was archived, not erased.")
        else:
            messages.success(request, f"Provider {name} deleted.")
        return redirect("provider_list")
    has_usage = provider.usage_records.exists()
    return render(request, "providers/delete.html", {"provider": provider, "has_usage": has_usage})


@require_POST
@role_required(ADMIN)
def provider_test(request: HttpRequest, pk: int) -> HttpResponse:
    provider = _get_provider(pk)
    health = services.provider_test(provider=provider, actor=request.user)
    context = {"provider": provider, "health": health}
    if request.htmx:
        return render(request, "providers/detail.html#health", context)
    messages.info(request, health.message)
    return redirect("provider_detail", pk=provider.pk)


# A sync names at most this many models in its message; the rest are counted.
SYNC_NAMES_SHOWN = 10


def _named(names: list[str]) -> str:
    """a, b, c; past SYNC_NAMES_SHOWN, "a, b, … and 12 more"."""
    shown = ", ".join(names[:SYNC_NAMES_SHOWN])
    return shown + (f" and {len(names) - SYNC_NAMES_SHOWN:,} more" if len(names) > SYNC_NAMES_SHOWN else "")


def _bulk_prices_url(provider: Provider, models: list[Model]) -> str:
    return reverse("model_bulk_prices", args=[provider.pk]) + "?" + "&".join(f"model={m.pk}" for m in models)


def sync_summary(provider: Provider, added: list[str]) -> str:
    """What a sync did, in one sentence with a link to price what it added without a price: "Added 3 models:
    a, b, c; 2 have no price yet: b, c. Set their prices." (HTML, escaped)."""
    if not added:
        return "Sync done: no new models."
    now = timezone.now()
    unpriced = list(provider.models.filter(name__in=added).exclude(prices__effective_from__lte=now).order_by("name"))
    names = format_html("Added {} model{}: {}", len(added), pluralize(added), _named(added))
    if not unpriced:
        return format_html("{}.", names)
    return format_html(
        '{}; {} {} no price yet: {}. <a href="{}">Set {} price{}</a>.', names,
        len(unpriced), "has" if len(unpriced) == 1 else "have", _named([m.name for m in unpriced]),
        _bulk_prices_url(provider, unpriced), "its" if len(unpriced) == 1 else "their", pluralize(unpriced),
    )


@require_POST
@role_required(ADMIN)
def provider_sync(request: HttpRequest, pk: int) -> HttpResponse:
    provider = _get_provider(pk)
    sync_error, summary = "", ""
    try:
        added, _ = services.models_sync(provider=provider, actor=request.user)
        summary = sync_summary(provider, added)
    except ProviderError as exc:
        sync_error = exc.message
    if not request.htmx:
        if sync_error:
            messages.error(request, sync_error)
        else:
            messages.success(request, summary)
        return redirect("provider_detail", pk=provider.pk)
    return render(request, "providers/detail.html#models", {
        "provider": provider, "models": _models_with_prices(provider), "sync_error": sync_error,
        "sync_summary": summary, "synced": True,
    })


@require_POST
@role_required(ADMIN)
def model_set_enabled(request: HttpRequest, pk: int) -> HttpResponse:
    """The catalog's toggle: over HTMX, the model's row comes back in place; without it, the catalog."""
    model = get_object_or_404(Model.objects.select_related("provider").filter(provider__archived_at__isnull=True),
                              pk=pk)
    enabled = request.POST.get("enabled") == "1"
    services.model_set_enabled(model=model, enabled=enabled, actor=request.user)
    if request.htmx:
        return render(request, "providers/detail.html#model_row", {
            "provider": model.provider, "m": next(m for m in _models_with_prices(model.provider) if m.pk == model.pk),
        })
    messages.success(request, f"Model {model.name} {'enabled' if enabled else 'disabled'}.")
    return redirect(reverse("provider_detail", args=[model.provider_id]) + "#models")


@role_required(ADMIN)
def model_bulk_prices(request: HttpRequest, pk: int) -> HttpResponse:
    """One new price version for several models of the provider at once, checked as the single model's form
    checks it; each model gets its own version, audited as a single edit (services.prices_set)."""
    provider = _get_provider(pk)
    catalog = _models_with_prices(provider)
    if request.method == "POST":
        choice = CatalogChoiceForm(request.POST, provider=provider)
        price_form = PriceForm(request.POST, prefix="price")
        choice_valid = choice.is_valid()  # both, so that every error shows at once
        if price_form.is_valid() and choice_valid:
            chosen = list(choice.cleaned_data["models"])
            priced = services.prices_set(models=chosen, prices=price_form.prices(), actor=request.user,
                                         effective_from=price_form.cleaned_data["effective_from"])
            unchanged = len(chosen) - len(priced)
            messages.success(request, f"New price version saved for {len(priced)} model{pluralize(priced)}"
                             + (f"; {unchanged} already had these prices." if unchanged else "."))
            return redirect(reverse("provider_detail", args=[provider.pk]) + "#models")
        chosen_ids = {str(v) for v in request.POST.getlist("models")}
    else:
        chosen_ids = {v for v in request.GET.getlist("model") if v.isdigit()}
        choice = CatalogChoiceForm(provider=provider)
        # Prefilled where every chosen model is priced alike now; blank otherwise.
        versions = [m.price_now.as_dict() if m.price_now else None for m in catalog if str(m.pk) in chosen_ids]
        shared = versions[0] if versions and all(v == versions[0] for v in versions) else None
        price_form = PriceForm(prefix="price", initial=shared)
    return render(request, "providers/bulk_prices.html", {
        "provider": provider, "catalog": catalog, "chosen_ids": chosen_ids, "choice": choice,
        "price_form": price_form,
    })


def pluralize(items: list) -> str:
    return "" if len(items) == 1 else "s"


@role_required(ADMIN)
def model_add(request: HttpRequest, pk: int) -> HttpResponse:
    provider = _get_provider(pk)
    form = CatalogModelForm(request.POST or None, provider=provider)
    if request.method == "POST" and form.is_valid():
        model = services.model_add(provider=provider, actor=request.user, **{
            k: form.cleaned_data[k]
            for k in ("name", "display_name", "type", "context_window", "max_output_tokens", "enabled")
        })
        messages.success(request, f"Model {model.name} added.")
        return redirect("model_detail", pk=model.pk)
    return render(request, "providers/model_add.html", {"form": form, "provider": provider})


@role_required(ADMIN)
def model_detail(request: HttpRequest, pk: int) -> HttpResponse:
    model = get_object_or_404(Model.objects.select_related("provider"), pk=pk)
    form = CatalogModelForm(instance=model, provider=model.provider, prefix="model")
    price_now = model.current_price()
    price_form = PriceForm(prefix="price", initial=price_now.as_dict() if price_now else None)
    if request.method == "POST" and "model-display_name" in request.POST:
        form = CatalogModelForm(request.POST, instance=model, provider=model.provider, prefix="model")
        if form.is_valid():
            services.model_update(model=model, changed={f: form.cleaned_data[f] for f in form.changed_data},
                                  actor=request.user)
            messages.success(request, "Model saved.")
            return redirect("model_detail", pk=model.pk)
    elif request.method == "POST":
        price_form = PriceForm(request.POST, prefix="price")
        if price_form.is_valid():
            created = services.price_set(model=model, prices=price_form.prices(), actor=request.user,
                                         effective_from=price_form.cleaned_data["effective_from"])
            if created:
                messages.success(request, "New price version saved.")
            else:
                messages.info(request, "Those are already the prices in force; nothing changed.")
            return redirect("model_detail", pk=model.pk)
    return render(request, "providers/model_detail.html", {
        "model": model,
        "provider": model.provider,
        "form": form,
        "price_form": price_form,
        "prices": model.prices.select_related("created_by").prefetch_related("tiers")
                              .order_by("-effective_from", "-id"),
        "price_now": price_now,
        "now": timezone.now(),
        # Calls made while nothing priced the model: a version must be in force from their first day to price
        # them, which the form says where it asks when the version takes effect.
        "unpriced": next((m.unpriced_usage for m in hooks.unpriced_models(model=model)), None),
    })
