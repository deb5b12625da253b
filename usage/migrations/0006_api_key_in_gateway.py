"""The ledger's API keys now live in the gateway app (gateway 0001): the same table and column, so only
the migration state changes."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('gateway', '0001_initial'),
        ('usage', '0005_cache_write_1h_and_unpriced'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='dailyapikeyusage',
                    name='api_key',
                    field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='gateway.apikey'),
                ),
                migrations.AlterField(
                    model_name='dailyusage',
                    name='api_key',
                    field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='gateway.apikey'),
                ),
                migrations.AlterField(
                    model_name='usagerecord',
                    name='api_key',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='usage_records', to='gateway.apikey'),
                ),
            ],
            database_operations=[],
        ),
    ]
