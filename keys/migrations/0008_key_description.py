"""ApiKey.description, added without rebuilding the table.

Django adds a NOT NULL column on SQLite by copying the table into a new one, and the copy
loses the trigger of 0006 (revocation is final). ALTER TABLE ... ADD COLUMN keeps the table
and its trigger on both databases; SQLite cannot drop the default afterwards, which only ever
serves the rows that existed before.
"""

from django.db import migrations, models


def add_column(apps, schema_editor):
    schema_editor.execute(
        "ALTER TABLE keys_apikey ADD COLUMN description text NOT NULL DEFAULT ''", params=None
    )
    if schema_editor.connection.vendor != "sqlite":
        schema_editor.execute(
            "ALTER TABLE keys_apikey ALTER COLUMN description DROP DEFAULT", params=None
        )


def drop_column(apps, schema_editor):
    schema_editor.execute("ALTER TABLE keys_apikey DROP COLUMN description", params=None)


class Migration(migrations.Migration):
    dependencies = [("keys", "0007_audit_append_only_signed")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="apikey",
                    name="description",
                    field=models.TextField(
                        blank=True,
                        max_length=1000,
                        help_text="Optional: what the key is for and who runs the integration.",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(add_column, drop_column)],
        ),
    ]
