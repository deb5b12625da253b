"""A budget's API key now lives in the gateway app (gateway 0001): the same table and column, so only
the migration state changes."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('budgets', '0002_alert_text_unbounded'),
        ('gateway', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='budget',
                    name='api_key',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='budgets', to='gateway.apikey'),
                ),
            ],
            database_operations=[],
        ),
    ]
