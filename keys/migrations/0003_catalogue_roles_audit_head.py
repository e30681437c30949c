"""Seed the API catalogue with the CERRIX modules, the audit chain head, and the roles."""

from django.db import migrations

from keys.seed import seed_in_migration


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0002_initial"),
        ("portal", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(seed_in_migration, migrations.RunPython.noop)]
