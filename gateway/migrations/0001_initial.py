"""API keys, routes and deployments move from providers to the gateway app with their rows: only
Django's idea of which app owns them changes here (their tables keep their names until 0002)."""

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('providers', '0009_api_key_limit_bounds'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Route',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(help_text='What applications put in “model”, e.g. fast-chat.', max_length=100, unique=True, validators=[django.core.validators.RegexValidator('^[A-Za-z0-9][A-Za-z0-9._:-]*$', 'Use letters, digits, dots, colons, dashes and underscores, and no slash (a slash means PROVIDER/MODEL).')])),
                        ('strategy', models.CharField(choices=[('priority', 'Priority, with fallback'), ('weighted', 'Weighted round-robin'), ('latency', 'Lowest latency (moving average)'), ('cost', 'Lowest cost')], default='priority', max_length=16)),
                        ('enabled', models.BooleanField(default=True)),
                        ('cache_ttl_seconds', models.PositiveIntegerField(default=0, help_text='Answer identical requests from the cache for this many seconds (at most 30 days, 2,592,000); 0 turns caching off.', validators=[django.core.validators.MinValueValidator(0, 'Enter a number from 0 to 2,592,000.'), django.core.validators.MaxValueValidator(2592000, 'Enter a number from 0 to 2,592,000.')])),
                        ('description', models.CharField(blank=True, max_length=300)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'providers_route',
                        'ordering': ['name'],
                    },
                ),
                migrations.CreateModel(
                    name='ApiKey',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100)),
                        ('prefix', models.CharField(max_length=24, unique=True)),
                        ('key_hash', models.CharField(max_length=64, unique=True)),
                        ('allowed_models', models.JSONField(blank=True, default=list, help_text='Model addresses and route names it may use; empty: all.')),
                        ('rpm_limit', models.PositiveIntegerField(blank=True, help_text='Requests per minute.', null=True, validators=[django.core.validators.MinValueValidator(1, 'Enter a number from 1 to 1,000,000.'), django.core.validators.MaxValueValidator(1000000, 'Enter a number from 1 to 1,000,000.')])),
                        ('tpm_limit', models.PositiveIntegerField(blank=True, help_text='Tokens per minute.', null=True, validators=[django.core.validators.MinValueValidator(1, 'Enter a number from 1 to 1,000,000,000.'), django.core.validators.MaxValueValidator(1000000000, 'Enter a number from 1 to 1,000,000,000.')])),
                        ('expires_at', models.DateTimeField(blank=True, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('user', models.ForeignKey(blank=True, help_text='The person the key belongs to or acts for.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='api_keys', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name': 'API key',
                        'verbose_name_plural': 'API keys',
                        'db_table': 'providers_apikey',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.CreateModel(
                    name='Deployment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('priority', models.PositiveSmallIntegerField(default=1, help_text='0 to 1,000; lower numbers are tried first.', validators=[django.core.validators.MinValueValidator(0, 'Enter a number from 0 to 1,000.'), django.core.validators.MaxValueValidator(1000, 'Enter a number from 0 to 1,000.')])),
                        ('weight', models.PositiveSmallIntegerField(default=1, help_text='Share of traffic under weighted round-robin, 1 to 1,000.', validators=[django.core.validators.MinValueValidator(1, 'Enter a number from 1 to 1,000.'), django.core.validators.MaxValueValidator(1000, 'Enter a number from 1 to 1,000.')])),
                        ('model', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deployments', to='providers.model')),
                        ('route', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deployments', to='gateway.route')),
                    ],
                    options={
                        'db_table': 'providers_deployment',
                        'ordering': ['route', 'priority', 'id'],
                        'constraints': [models.UniqueConstraint(fields=('route', 'model'), name='deployment_unique_per_route', violation_error_message='This model already serves the route.')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
