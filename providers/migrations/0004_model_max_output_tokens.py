from django.db import migrations, models

# Anthropic's published "Max output" of the preset Claude models, as providers/kinds.py had it when this
# migration was written (a migration keeps its own copy: the registry may change later).
CLAUDE_MAX_OUTPUT_TOKENS = {
    "claude-opus-4-5": 64_000, "claude-sonnet-4-5": 64_000, "claude-haiku-4-5": 64_000,
    "claude-sonnet-4-20250514": 64_000,
}


def fill_claude_max_output(apps, schema_editor):
    """Catalog models added before the field existed get the published maximum: without it a Claude CLI
    call would reserve its whole context window as output."""
    Model = apps.get_model("providers", "Model")
    for name, tokens in CLAUDE_MAX_OUTPUT_TOKENS.items():
        Model.objects.filter(provider__kind__in=["anthropic", "claude_cli"], name=name,
                             max_output_tokens__isnull=True).update(max_output_tokens=tokens)


class Migration(migrations.Migration):

    dependencies = [
        ("providers", "0003_price_tiers_and_cache_write_1h"),
    ]

    operations = [
        migrations.AddField(
            model_name="model",
            name="max_output_tokens",
            field=models.PositiveIntegerField(
                blank=True, null=True,
                help_text="The most tokens one answer can have, as the provider publishes it. Hard-limit budgets "
                          "reserve it for providers that cannot cap an answer (the Claude CLI)."),
        ),
        migrations.RunPython(fill_claude_max_output, migrations.RunPython.noop),
    ]
