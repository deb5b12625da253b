"""Rows saved before the settings had bounds are brought within them: a timeout of 999,999,999 seconds
becomes 600, 99,999,999,999 retries become 10. A token count out of range is unknown rather than wrong
(0 becomes empty, as a model whose size nobody set). The bounds are written out here as they were when
this ran, so that later changes to them do not change what it did."""

from django.db import migrations

CLAMPS = [
    # (model, field, low, high, below low becomes)
    ("Provider", "timeout_seconds", 1, 600, 1),
    ("Provider", "max_retries", 0, 10, 0),
    ("Route", "cache_ttl_seconds", 0, 30 * 86_400, 0),
    ("Deployment", "priority", 0, 1_000, 0),
    ("Deployment", "weight", 1, 1_000, 1),
    ("Model", "context_window", 1, 100_000_000, None),
    ("Model", "max_output_tokens", 1, 100_000_000, None),
]


def clamp(apps, schema_editor):
    for model_name, field, low, high, below in CLAMPS:
        rows = apps.get_model("providers", model_name).objects
        rows.filter(**{f"{field}__gt": high}).update(**{field: high})
        rows.filter(**{f"{field}__lt": low}).update(**{field: below})


class Migration(migrations.Migration):

    dependencies = [
        ("providers", "0006_bounded_numbers_and_names"),
    ]

    operations = [
        migrations.RunPython(clamp, migrations.RunPython.noop),
    ]
