"""The database itself refuses to un-revoke a key or to move its identity or one-year limit.

save() and QuerySet.update() already refuse these changes; this trigger covers raw SQL and
any other client of the database (docs/design.md §3: guard with the database where it can).
"""

from django.db import migrations

FROZEN = ("identifier", "created_at", "latest_expires_on")
REVOCATION = ("revoked_at", "revoked_by_id", "revoke_reason")
MESSAGE = "API keys: revocation is final; identifier, creation time and expiry limit never change"

SQLITE_CHANGED = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in FROZEN)
SQLITE_UNREVOKED = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in REVOCATION)
SQLITE = f"""
CREATE TRIGGER keys_apikey_guard BEFORE UPDATE ON keys_apikey
WHEN ({SQLITE_CHANGED}) OR (OLD.revoked_at IS NOT NULL AND ({SQLITE_UNREVOKED}))
BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;
"""

PG_CHANGED = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in FROZEN)
PG_UNREVOKED = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in REVOCATION)
POSTGRESQL = [
    f"""
    CREATE FUNCTION keys_apikey_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF ({PG_CHANGED}) OR (OLD.revoked_at IS NOT NULL AND ({PG_UNREVOKED})) THEN
            RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER keys_apikey_guard BEFORE UPDATE ON keys_apikey
    FOR EACH ROW EXECUTE FUNCTION keys_apikey_guard()
    """,
]

CREATE = {"sqlite": [SQLITE], "postgresql": POSTGRESQL}
DROP = {
    "sqlite": ["DROP TRIGGER IF EXISTS keys_apikey_guard"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS keys_apikey_guard ON keys_apikey",
        "DROP FUNCTION IF EXISTS keys_apikey_guard()",
    ],
}


def create(apps, schema_editor):
    for sql in CREATE.get(schema_editor.connection.vendor, []):
        schema_editor.execute(sql, params=None)


def drop(apps, schema_editor):
    for sql in DROP.get(schema_editor.connection.vendor, []):
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("keys", "0005_key_newest_first_index")]

    operations = [migrations.RunPython(create, drop)]
