"""flush for the test database: lift the audit table's append-only guard for the wipe only.

Transactional tests (TransactionTestCase, pytest-django's transactional_db) empty every table
with `flush` after each test: DELETE FROM on SQLite, TRUNCATE on PostgreSQL. The guard from
keys migration 0007 refuses both, as it must everywhere else. This command exists only in the
test settings' INSTALLED_APPS; production's `flush` still meets the guard.
"""

from importlib import import_module

from django.core.management.commands import flush
from django.db import connections

guard = import_module("keys.migrations.0007_audit_append_only_signed")


def _execute(connection, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


class Command(flush.Command):
    def handle(self, **options):
        connection = connections[options["database"]]
        vendor = connection.vendor
        _execute(connection, guard.DROP.get(vendor, []))
        try:
            super().handle(**options)
        finally:
            _execute(connection, guard.CREATE.get(vendor, []))
