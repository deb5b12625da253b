"""API keys, routes and deployments now belong to the gateway app (gateway 0001), which keeps their tables:
providers forgets them without dropping anything."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('budgets', '0003_api_key_in_gateway'),
        ('providers', '0009_api_key_limit_bounds'),
        ('usage', '0006_api_key_in_gateway'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='deployment',
                    name='model',
                ),
                migrations.RemoveField(
                    model_name='deployment',
                    name='route',
                ),
                migrations.DeleteModel(
                    name='ApiKey',
                ),
                migrations.DeleteModel(
                    name='Deployment',
                ),
                migrations.DeleteModel(
                    name='Route',
                ),
            ],
            database_operations=[],
        ),
    ]
