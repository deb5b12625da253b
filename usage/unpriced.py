"""The catalog's models called while nothing priced them, from the daily rollups: what the providers' pages
show (through providers/hooks.py, where this app registers it from its AppConfig.ready)."""

from django.db.models import Exists, Max, Min, OuterRef, Sum
from django.utils import timezone

from providers.models import Model, Price, Provider

from .models import DailyModelUsage


def unpriced_models(provider: Provider | None = None, model: Model | None = None) -> list[Model]:
    """The catalog's models that were called while nothing priced them, each with its count of such calls,
    their tokens and their first and last day, summed from the daily rollups over all days. Those calls
    count $0 in every total until an admin sets a price in force at their time and re-prices them."""
    rows = DailyModelUsage.objects.filter(unpriced__gt=0, model__isnull=False)
    if provider is not None:
        rows = rows.filter(provider=provider)
    if model is not None:
        rows = rows.filter(model=model)
    totals = {row["model"]: row for row in rows.order_by().values("model").annotate(
        calls=Sum("unpriced"), tokens=Sum("unpriced_tokens"), first_day=Min("day"), last_day=Max("day"))}
    priced = Price.objects.filter(model=OuterRef("pk"), effective_from__lte=timezone.now())
    models = list(Model.objects.filter(pk__in=totals).select_related("provider")
                  .annotate(priced_now=Exists(priced)).order_by("provider__name", "name"))
    for model in models:
        model.unpriced_usage = totals[model.pk]
    return models
