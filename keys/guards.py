"""The database's own guard on keys: triggers built from what the models declare.

ApiKey.NEVER_CHANGES never change once written; ApiKey.FINAL_ONCE_REVOKED never change once
a key is revoked; ApiKey.FINAL_ONCE_SET never change once set; the expiration date only
moves earlier; a key has at most MAX_ALLOWED_IPS
allowed IPs. save() and update() refuse these changes in Python; these triggers refuse them
from raw SQL and any other database client.
"""

from keys.models import AllowedIp, ApiKey
from keys.validators import MAX_ALLOWED_IPS

NAME = "keys_apikey_guard"
CAP_NAME = "keys_allowedip_cap"
CAP_MESSAGE = f"API keys: at most {MAX_ALLOWED_IPS} allowed IP entries per key"
MESSAGE = (
    "API keys: identity, owner, creation and one-year limit never change, revocation is "
    "final and the expiration date only moves earlier"
)


def _columns(names: tuple[str, ...], existing: set[str] | None) -> list[str]:
    columns = [ApiKey.column_field(name).column for name in names]
    return [c for c in columns if existing is None or c in existing]


def _condition(differs: str, existing: set[str] | None) -> str:
    changed = [differs.format(c=c) for c in _columns(ApiKey.NEVER_CHANGES, existing)]
    final = [differs.format(c=c) for c in _columns(ApiKey.FINAL_ONCE_REVOKED, existing)]
    once = [
        f"(OLD.{c} IS NOT NULL AND {differs.format(c=c)})"
        for c in _columns(ApiKey.FINAL_ONCE_SET, existing)
    ]
    return " OR ".join(
        [
            f"({' OR '.join(changed)})",
            f"(OLD.revoked_at IS NOT NULL AND ({' OR '.join(final)}))",
            *once,
            "NEW.expires_on > OLD.expires_on",
        ]
    )


def create_sql(vendor: str, existing: set[str] | None = None) -> list[str]:
    """The statements that install the triggers on this database vendor.

    `existing`: the key table's columns at this point of the migrations (a column the model
    declares may not exist yet); None for all of them.
    """
    table = ApiKey._meta.db_table
    ips = AllowedIp._meta.db_table
    # Table names and a constant of the models: no outside input reaches these statements.
    full = f"(SELECT COUNT(*) FROM {ips} WHERE key_id = NEW.key_id) >= {MAX_ALLOWED_IPS}"  # noqa: S608
    if vendor == "sqlite":
        when = _condition("NEW.{c} IS NOT OLD.{c}", existing)
        return [
            f"CREATE TRIGGER {NAME} BEFORE UPDATE ON {table} WHEN {when} "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
            f"CREATE TRIGGER {CAP_NAME} BEFORE INSERT ON {ips} WHEN {full} "
            f"BEGIN SELECT RAISE(ABORT, '{CAP_MESSAGE}'); END",
        ]
    if vendor == "postgresql":
        when = _condition("NEW.{c} IS DISTINCT FROM OLD.{c}", existing)
        return [
            f"""CREATE FUNCTION {NAME}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF {when} THEN
                    RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'integrity_constraint_violation';
                END IF;
                RETURN NEW;
            END $$""",
            f"CREATE TRIGGER {NAME} BEFORE UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {NAME}()",
            # Serialised per key: the count is taken under a lock on the key's row, so two
            # concurrent inserts cannot both see 49.
            f"""CREATE FUNCTION {CAP_NAME}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM 1 FROM {table} WHERE id = NEW.key_id FOR UPDATE;
                IF {full} THEN
                    RAISE EXCEPTION '{CAP_MESSAGE}' USING ERRCODE = 'check_violation';
                END IF;
                RETURN NEW;
            END $$""",
            f"CREATE TRIGGER {CAP_NAME} BEFORE INSERT ON {ips} "
            f"FOR EACH ROW EXECUTE FUNCTION {CAP_NAME}()",
        ]
    return []


def drop_sql(vendor: str) -> list[str]:
    if vendor == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {name}" for name in (NAME, CAP_NAME)]
    if vendor == "postgresql":
        return [
            sql
            for name, model in ((NAME, ApiKey), (CAP_NAME, AllowedIp))
            for sql in (
                f"DROP TRIGGER IF EXISTS {name} ON {model._meta.db_table}",
                f"DROP FUNCTION IF EXISTS {name}()",
            )
        ]
    return []


def reinstall(apps, schema_editor) -> None:
    """Migration step: replace the triggers with ones built from the current declarations."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, ApiKey._meta.db_table)
    existing = {column.name for column in description}
    for sql in [*drop_sql(connection.vendor), *create_sql(connection.vendor, existing)]:
        schema_editor.execute(sql, params=None)
