"""The content types of API keys, routes and deployments move to the gateway with their models, so that what
points at them keeps working: the permission that lets a person make their own API keys (add_apikey, now
`gateway.add_apikey`) stays granted to whoever had it, and the Django admin's history keeps its links.

A database migrated before the move has providers' content types (and their permissions) and no gateway
ones yet (post_migrate makes those after every migration has run): they are renamed. Where both exist
already, the grants of the old permissions are copied to the new ones, and the old rows are left."""

from django.db import migrations

MODELS = ("apikey", "route", "deployment")


def _move(apps, schema_editor, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    User = apps.get_model("accounts", "User")
    Group = apps.get_model("auth", "Group")
    for model in MODELS:
        before = ContentType.objects.filter(app_label=old, model=model).first()
        if before is None:
            continue
        after = ContentType.objects.filter(app_label=new, model=model).first()
        if after is None:
            before.app_label = new
            before.save(update_fields=["app_label"])
            continue
        for permission in Permission.objects.filter(content_type=before):
            moved = Permission.objects.filter(content_type=after, codename=permission.codename).first()
            if moved is None:
                continue
            for user in User.objects.filter(user_permissions=permission):
                user.user_permissions.add(moved)
            for group in Group.objects.filter(permissions=permission):
                group.permissions.add(moved)


def forwards(apps, schema_editor):
    _move(apps, schema_editor, "providers", "gateway")


def backwards(apps, schema_editor):
    _move(apps, schema_editor, "gateway", "providers")


class Migration(migrations.Migration):

    dependencies = [
        ("gateway", "0002_tables_named_gateway"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
    ]
