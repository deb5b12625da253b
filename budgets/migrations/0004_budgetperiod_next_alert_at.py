from django.db import migrations, models


def fill(apps, schema_editor):
    """Existing periods: the spend of their lowest threshold that has not fired yet."""
    from decimal import Decimal

    BudgetPeriod = apps.get_model("budgets", "BudgetPeriod")
    AlertEvent = apps.get_model("budgets", "AlertEvent")
    fired: dict[int, set[int]] = {}
    for period_id, threshold in AlertEvent.objects.filter(kind="threshold").values_list("period_id", "threshold"):
        fired.setdefault(period_id, set()).add(threshold)
    changed = []
    for period in BudgetPeriod.objects.select_related("budget").iterator(chunk_size=1000):
        left = sorted(set(period.budget.thresholds) - fired.get(period.pk, set()))
        if left:
            period.next_alert_at = (period.budget.amount * left[0] / 100).quantize(Decimal("1e-10"))
            changed.append(period)
    BudgetPeriod.objects.bulk_update(changed, ["next_alert_at"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("budgets", "0003_api_key_in_gateway"),
    ]

    operations = [
        migrations.AddField(
            model_name="budgetperiod",
            name="next_alert_at",
            field=models.DecimalField(blank=True, decimal_places=10, max_digits=22, null=True),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
