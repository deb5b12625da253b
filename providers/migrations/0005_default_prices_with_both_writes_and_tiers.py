from django.db import migrations
from django.utils import timezone


def refresh_default_prices(apps, schema_editor):
    """Models priced from genai-prices' defaults before prices carried 1-hour cache writes and long-context
    tiers would go on charging 1-hour writes at the 5-minute rate and long prompts at the base rate. Each
    such model whose default now says more gets a new version, in force from now: the defaults as genai-prices
    gives them today, both write prices and tiers included. Recorded calls keep their cost (re-pricing them is
    an admin's choice); versions an admin or a config file set are left alone."""
    from providers.kinds import KINDS
    from providers.services import default_price

    Model = apps.get_model("providers", "Model")
    Price = apps.get_model("providers", "Price")
    PriceTier = apps.get_model("providers", "PriceTier")
    now = timezone.now()
    fields = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
    for model in Model.objects.select_related("provider").filter(provider__archived_at__isnull=True):
        kind = KINDS.get(model.provider.kind)
        current = (Price.objects.filter(model=model, effective_from__lte=now)
                   .order_by("-effective_from", "-id").first())
        if kind is None or current is None or current.source != "default":
            continue
        defaults = default_price(kind, model.name, now)
        if defaults is None:
            continue
        stored = {name: getattr(current, name) for name in fields}
        tiers = [{"above": t.above, **{name: getattr(t, name) for name in fields}}
                 for t in PriceTier.objects.filter(price=current).order_by("above")]
        if stored == {name: defaults[name] for name in fields} and tiers == defaults["tiers"]:
            continue
        price = Price.objects.create(model=model, effective_from=now, source="default",
                                     **{name: defaults[name] for name in fields})
        PriceTier.objects.bulk_create([PriceTier(price=price, **tier) for tier in defaults["tiers"]])


class Migration(migrations.Migration):

    dependencies = [
        ("providers", "0004_model_max_output_tokens"),
    ]

    operations = [
        migrations.RunPython(refresh_default_prices, migrations.RunPython.noop),
    ]
