"""The tables of API keys, routes and deployments take the gateway's names (gateway_apikey, gateway_route,
gateway_deployment). A rename keeps every row, id and foreign key: the ledger's and budgets' references follow
the table on PostgreSQL and on SQLite."""

from django.db import migrations


class Migration(migrations.Migration):

    # After providers forgets the models (and so after every migration that names their old tables).
    dependencies = [
        ('gateway', '0001_initial'),
        ('providers', '0010_keys_and_routes_to_gateway'),
    ]

    operations = [
        migrations.AlterModelTable(
            name='apikey',
            table=None,
        ),
        migrations.AlterModelTable(
            name='deployment',
            table=None,
        ),
        migrations.AlterModelTable(
            name='route',
            table=None,
        ),
    ]
