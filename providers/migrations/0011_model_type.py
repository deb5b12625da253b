import re

from django.db import migrations, models

# As providers.kinds.names_embedding, frozen here: the names that clearly name an embedding model.
_EMBEDDING_NAME = re.compile(r"embed|(?:^|[/_.-])(?:bge|gte|e5)(?:[_.-]|$)", re.IGNORECASE)


def embedding_models_by_name(apps, schema_editor):
    """Catalog models from before the field whose names say they embed (text-embedding-3-small,
    nomic-embed-text, BAAI/bge-m3) become embedding models; every other stays a chat model."""
    Model = apps.get_model("providers", "Model")
    ids = [pk for pk, name in Model.objects.values_list("pk", "name") if _EMBEDDING_NAME.search(name)]
    Model.objects.filter(pk__in=ids).update(type="embedding")


class Migration(migrations.Migration):

    dependencies = [
        ('providers', '0010_keys_and_routes_to_gateway'),
    ]

    operations = [
        migrations.AddField(
            model_name='model',
            name='type',
            field=models.CharField(choices=[('chat', 'Chat'), ('embedding', 'Embedding')], default='chat', help_text='What the model does: chat (the playground, /v1/chat/completions, /v1/messages) or embedding (/v1/embeddings). A call of the other kind is refused.', max_length=16),
        ),
        migrations.RunPython(embedding_models_by_name, migrations.RunPython.noop),
    ]
