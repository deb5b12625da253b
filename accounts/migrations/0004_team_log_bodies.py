from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_teams'),
    ]

    operations = [
        migrations.AddField(
            model_name='team',
            name='log_bodies',
            field=models.BooleanField(db_default=False, default=False, help_text='Keep the prompt and answer of every call counted for the team (usage/bodies.py).', verbose_name='log prompts and answers'),
        ),
    ]
