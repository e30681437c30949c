"""Seed the API catalogue with the CERRIX modules and the audit chain head.

It seeded the roles too, until portal/roles.py became their one home: its post_migrate handler
gives the groups their permissions after every migrate, this first one included.
"""

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
