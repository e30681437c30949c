"""Raw SQL on the audit table, as someone with the database alone (no signing key) would run it.

Such a person can drop the append-only triggers first; in a test the drop is rolled back with
the rest of the test's transaction.
"""

from importlib import import_module

from django.db import connection

from keys.models import AuditEvent

guard = import_module("keys.migrations.0007_audit_append_only_signed")


def lift_guard() -> None:
    with connection.cursor() as cursor:
        for sql in guard.DROP[connection.vendor]:
            cursor.execute(sql)


def raw(sql: str, params=()) -> None:
    """Run sql with {table} for the events table, without the guard."""
    lift_guard()
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql.format(table=table), params)
