"""The API's one read of a key: everything its checks need, in one query.

The SQL is compiled once per process; on PostgreSQL it is a prepared statement. A reused
connection skips Django's health check (the read itself is the check) and reconnects once
when the database restarted or a migration made the prepared plan stale.
"""

import dataclasses
import datetime
import functools

from django.conf import settings
from django.db import (
    InterfaceError,
    NotSupportedError,
    OperationalError,
    connections,
    models,
)
from django.db.models.expressions import RawSQL

from keys.models import ApiKey, KeyGrant, RouteTable, key_status, previous_password_works_at


def read_key(identifier: str, using: str = "default") -> "KeyRow | None":
    """Everything the API checks need of the key `identifier`, from all keys (whatever
    this queryset filters), in one query through the unique identifier index."""
    connection = connections[using]
    rows = _fetch_skipping_health_check(
        connection, _key_row_sql(ApiKey, connection.alias), [identifier]
    )
    if not rows:
        return None
    (pk, name, owner, owner_active, revision, password_hash, revoked_at, expires_on, revoke_at,
     previous_hash, previous_until, may_rotate_itself, awaiting_approval, out_of_policy,
     routes_revision) = rows[0][:-3]  # fmt: skip
    return KeyRow(
        key_id=pk,
        name=name,
        owner=owner,
        owner_active=bool(owner_active),
        revision=revision,
        password_hash=password_hash,
        revoked_at=_moment(revoked_at),
        expires_on=_DATE.to_python(expires_on),  # SQLite returns text
        revoke_at=_moment(revoke_at),
        previous_password_hash=previous_hash,
        previous_password_valid_until=_moment(previous_until),
        may_rotate_itself=bool(may_rotate_itself),
        awaiting_approval=bool(awaiting_approval),
        out_of_policy=bool(out_of_policy),
        routes_revision=routes_revision or 0,
        networks=frozenset(row[-3] for row in rows if row[-3] is not None),
        apis=frozenset(row[-2] for row in rows if row[-2] is not None),
        read_only=frozenset(row[-2] for row in rows if row[-1] == KeyGrant.Access.READ),
    )


def _fetch_skipping_health_check(connection, sql: str, params: list) -> list[tuple]:
    """The rows of one read, without the `SELECT 1` round trip that CONN_HEALTH_CHECKS spends
    on a reused connection before a request's first query: the read itself is the check. If
    it fails because the connection is dead (the database restarted) or holds a prepared
    plan a migration made stale, it reconnects and reads once more, so the caller sees no
    failure; any other error (a timeout, a lock), or one inside a transaction, is raised."""
    reused = connection.connection is not None and not connection.in_atomic_block
    if reused:
        connection.health_check_done = True
    try:
        return _fetch_prepared(connection, sql, params)
    except (OperationalError, InterfaceError, NotSupportedError) as error:
        if not (reused and _reconnecting_helps(connection, error)):
            raise
        connection.close()
    return _fetch_prepared(connection, sql, params)


def _fetch_prepared(connection, sql: str, params: list) -> list[tuple]:
    """Run the read as a prepared statement on PostgreSQL (KEYS_PREPARED_KEY_READ): parsed
    and planned once per connection (0.29 -> 0.03 ms of PostgreSQL's CPU per read), its one
    plan right for any identifier. Only this read: a generic plan would be wrong for a search
    whose best plan depends on its pattern, so nothing else is prepared."""
    with connection.cursor() as cursor:
        driver = connection.connection
        if connection.vendor != "postgresql" or not settings.KEYS_PREPARED_KEY_READ:
            cursor.execute(sql, params)
            return cursor.fetchall()
        threshold, driver.prepare_threshold = driver.prepare_threshold, 0
        try:
            cursor.execute(sql, params)
        finally:
            driver.prepare_threshold = threshold
        return cursor.fetchall()


def _reconnecting_helps(connection, error: Exception) -> bool:
    if isinstance(error, NotSupportedError):
        # PostgreSQL refuses a prepared statement whose result columns changed type since it
        # was prepared (a migration while this process ran); a new connection prepares anew.
        return "cached plan must not change result type" in str(error)
    return not connection.is_usable()


@dataclasses.dataclass(frozen=True)
class KeyRow:
    """What the API checks read of a key (read_key)."""

    key_id: int
    name: str
    owner: str  # the owner's user name
    owner_active: bool
    revision: int
    password_hash: str
    revoked_at: datetime.datetime | None
    expires_on: datetime.date
    revoke_at: datetime.datetime | None
    previous_password_hash: str
    previous_password_valid_until: datetime.datetime | None
    may_rotate_itself: bool
    awaiting_approval: bool  # the key policy (docs/design.md §12): refused until approved
    out_of_policy: bool  # refused until an edit or a looser policy brings it back in
    routes_revision: int  # RouteTable's, read with the key (keys/api/routes.py)
    networks: frozenset[str]
    apis: frozenset[str]
    read_only: frozenset[str]  # the APIs of `apis` granted read only

    def access(self, api: str) -> str | None:
        """How the key holds `api`: "read", "write", or None if not at all."""
        if api not in self.apis:
            return None
        # A plain str: it goes out in the X-Key-Access header, and a WSGI server such as
        # runserver's wsgiref refuses a header value that is a str subclass (500).
        access = KeyGrant.Access.READ if api in self.read_only else KeyGrant.Access.WRITE
        return str(access.value)

    def status(self, at: datetime.datetime) -> str:
        """The key's status at `at`: the same rule as ApiKey.status()."""
        return key_status(self.revoked_at, self.expires_on, at, revoke_at=self.revoke_at)

    def previous_password_works(self, at: datetime.datetime) -> bool:
        """After a regeneration the old password works until its overlap ends, on every
        server at the same moment (the end is read from the database with each call)."""
        return previous_password_works_at(
            self.previous_password_hash, self.previous_password_valid_until, at
        )


# Columns every check needs. A key has few allowed IPs and APIs, so the joined rows
# (IPs x APIs) stay a handful.
_KEY_ROW_COLUMNS = (
    "pk",
    "name",
    "owner__username",
    "owner__is_active",
    "revision",
    "password_hash",
    "revoked_at",
    "expires_on",
    "revoke_at",
    "previous_password_hash",
    "previous_password_valid_until",
    "may_rotate_itself",
    "awaiting_approval",
    "out_of_policy",
    "routes_revision",
    # Last: one row per (allowed IP x API); the columns above are the same in each.
    "allowed_ips__network",
    "grants__api__slug",
    "grants__access",
)
_PLACEHOLDER = "identifier"
_DATE: models.DateField = models.DateField()


def _moment(value) -> datetime.datetime | None:
    """A stored moment as an aware datetime (SQLite returns UTC, naive or as text)."""
    if value is None:
        return None
    if not isinstance(value, datetime.datetime):
        value = datetime.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


@functools.cache
def _key_row_sql(model: type[models.Model], alias: str) -> str:
    """The SQL of read_key(), compiled by the ORM once per process and database.

    Building and compiling the queryset costs several times what SQLite needs to run it,
    on every call of the API; the SQL itself never changes, only its one parameter.
    """
    query = model._base_manager.filter(identifier=_PLACEHOLDER).order_by()
    # A scalar subquery with its id written out, so the read keeps its one parameter.
    table = RouteTable._meta.db_table
    revision = f"SELECT revision FROM {table} WHERE id = 1"  # noqa: S608 (a model's table name)
    query = query.annotate(routes_revision=RawSQL(revision, ()))  # noqa: S611 (no input)
    sql, params = query.values_list(*_KEY_ROW_COLUMNS).query.get_compiler(using=alias).as_sql()
    assert params == (_PLACEHOLDER,), params
    return sql
