"""Audit events get a signature column, and the database refuses to change or remove them.

AuditEvent.save(), delete() and the QuerySet already refuse; these triggers cover raw SQL and
any other client of the database. PostgreSQL also refuses TRUNCATE (no row trigger sees it).
Someone who can drop a trigger can still rewrite rows: the Ed25519 signatures (keys.audit.signing)
and the signed checkpoints kept outside the database are what show it.

Events recorded before this migration keep an empty signature; the first checkpoint, written
right after `migrate` (keys.apps), seals them as a block.

On SQLite a later migration that rebuilds this table (Django's _remake_table, e.g. for AddField
with a default) drops these triggers: it must create them again (tests/test_audit_signing.py
fails otherwise).
"""

from django.db import migrations, models

MESSAGE = "Audit events are append-only"

SQLITE = [
    f"""
    CREATE TRIGGER keys_auditevent_no_update BEFORE UPDATE ON keys_auditevent
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
    f"""
    CREATE TRIGGER keys_auditevent_no_delete BEFORE DELETE ON keys_auditevent
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
]

POSTGRESQL = [
    f"""
    CREATE FUNCTION keys_auditevent_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'integrity_constraint_violation';
    END $$
    """,
    """
    CREATE TRIGGER keys_auditevent_append_only BEFORE UPDATE OR DELETE ON keys_auditevent
    FOR EACH ROW EXECUTE FUNCTION keys_auditevent_append_only()
    """,
    """
    CREATE TRIGGER keys_auditevent_no_truncate BEFORE TRUNCATE ON keys_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION keys_auditevent_append_only()
    """,
]

CREATE = {"sqlite": SQLITE, "postgresql": POSTGRESQL}
DROP = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS keys_auditevent_no_update",
        "DROP TRIGGER IF EXISTS keys_auditevent_no_delete",
    ],
    "postgresql": [
        "DROP TRIGGER IF EXISTS keys_auditevent_append_only ON keys_auditevent",
        "DROP TRIGGER IF EXISTS keys_auditevent_no_truncate ON keys_auditevent",
        "DROP FUNCTION IF EXISTS keys_auditevent_append_only()",
    ],
}


def create(apps, schema_editor):
    for sql in CREATE.get(schema_editor.connection.vendor, []):
        schema_editor.execute(sql, params=None)


def drop(apps, schema_editor):
    for sql in DROP.get(schema_editor.connection.vendor, []):
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("keys", "0006_revocation_is_final_in_the_database")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="signature",
            field=models.CharField(
                blank=True,
                default="",
                editable=False,
                help_text="'<key id>:<base64 Ed25519 signature>' of the hash; empty only for events recorded before signing began, which the first signed checkpoint covers.",
                max_length=128,
            ),
        ),
        migrations.RunPython(create, drop),
    ]
