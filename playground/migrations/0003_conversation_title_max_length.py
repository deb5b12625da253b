from django.db import migrations, models
from django.db.models.functions import Length

MAX_LENGTH = 120


def shorten_long_titles(apps, schema_editor):
    """Titles saved before the limit (up to 200 characters) are cut to fit it, with an ellipsis."""
    Conversation = apps.get_model("playground", "Conversation")
    long = Conversation.objects.annotate(length=Length("title")).filter(length__gt=MAX_LENGTH)
    for conversation in long.iterator():
        conversation.title = conversation.title[: MAX_LENGTH - 1].rstrip() + "…"
        conversation.save(update_fields=["title"])


class Migration(migrations.Migration):

    dependencies = [
        ('playground', '0002_answer_versions'),
    ]

    operations = [
        migrations.RunPython(shorten_long_titles, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='conversation',
            name='title',
            field=models.CharField(max_length=MAX_LENGTH),
        ),
    ]
