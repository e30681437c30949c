"""PostgreSQL under concurrency: the audit chain and name uniqueness with real parallel writers.

Each thread has its own database connection (Django's are per thread), so these are real
concurrent transactions on the server, not interleavings inside one of them.
"""

import itertools
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections

from keys.audit import chain as audit
from keys.models import ApiKey, ApiKeyQuerySet, AuditEvent, AuditHead
from tests.api_calls import call

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.django_db(transaction=True),
]

WRITERS = 6
EVENTS_EACH = 8


def run_in_threads(target, count: int) -> list[BaseException]:
    """Start `count` threads at one barrier; return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def worker(index):
        try:
            barrier.wait(timeout=30)
            target(index)
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    return errors


def test_the_suite_really_runs_on_postgresql():
    assert connection.vendor == "postgresql"


def test_concurrent_key_creations_keep_one_unbroken_audit_chain(alice, bob, carol, dave, make_key):
    owners = [alice, bob, carol, dave]

    def create_keys(index):
        owner = owners[index % len(owners)]
        for n in range(EVENTS_EACH):
            make_key(owner, name=f"writer {index} key {n}")

    errors = run_in_threads(create_keys, WRITERS)

    assert errors == []
    total = WRITERS * EVENTS_EACH
    assert ApiKey.objects.count() == total
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)), "gaps or duplicates in the sequence"
    assert AuditEvent.objects.filter(action=AuditEvent.Action.KEY_CREATED).count() == total
    assert list(audit.verify_chain()) == []
    head = AuditHead.objects.get(pk=1)
    assert head.seq == seqs[-1]


def test_concurrent_raw_appends_each_chain_onto_the_one_before():
    def append(index):
        for n in range(EVENTS_EACH):
            audit.record(
                AuditEvent.Action.USE_DENIED, actor_label=f"writer-{index}", details={"n": n}
            )

    assert run_in_threads(append, WRITERS) == []

    events = list(AuditEvent.objects.order_by("seq"))
    assert len(events) == WRITERS * EVENTS_EACH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    assert list(audit.verify_chain()) == []


def test_a_lost_race_for_the_same_key_name_is_a_form_error_not_a_crash(alice, make_key):
    # Both writers pass the early "name taken?" check, so the database's partial unique
    # index decides: the second INSERT waits for the first to commit, then fails.
    real_name_taken = ApiKeyQuerySet.name_taken
    seen = threading.local()

    def name_taken_after_the_race(*args, **kwargs):
        if not getattr(seen, "checked", False):
            seen.checked = True
            return False
        return real_name_taken(*args, **kwargs)

    outcomes: list[str] = []

    def create(_index):
        try:
            make_key(alice, name="Same name")
            outcomes.append("created")
        except ValidationError as error:
            outcomes.append(error.message_dict["name"][0])

    ApiKeyQuerySet.name_taken = name_taken_after_the_race
    try:
        assert run_in_threads(create, 2) == []
    finally:
        ApiKeyQuerySet.name_taken = real_name_taken

    assert sorted(outcomes) == ["You already have a key with this name.", "created"]
    assert ApiKey.objects.filter(owner=alice, name="Same name").count() == 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.KEY_CREATED).count() == 1
    assert list(audit.verify_chain()) == []


def test_the_api_key_read_is_prepared_once_and_then_only_executed(client, alice, make_key):
    # PostgreSQL parses and plans a prepared statement once per connection; Django turns
    # psycopg's preparing off unless asked (portal/settings.py asks).
    key, password = make_key(alice, apis=("risks",), networks=("127.0.0.1",))
    for _ in range(10):
        assert call(client, "/api/v1/whoami", key.identifier, password).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans + custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE %s",
            ['%AS "owner__is_active"%'],  # the key read's own column alias
        )
        executions = [row[0] for row in cursor.fetchall()]
    assert len(executions) == 1  # one prepared key read
    assert executions[0] >= 5  # the calls after the first few run it without parsing


def test_a_migration_that_changes_a_read_columns_type_fails_no_api_call(client, alice, make_key):
    # A prepared key read planned before the change is refused by PostgreSQL ("cached plan
    # must not change result type"); the read reconnects, prepares anew and answers.
    key, password = make_key(alice, apis=("risks",), networks=("127.0.0.1",))
    whoami = "/api/v1/whoami"
    before = [call(client, whoami, key.identifier, password).status_code for _ in range(10)]
    alter = "ALTER TABLE keys_apikey ALTER COLUMN name TYPE varchar(%s)"
    migration = connections.create_connection("default")  # another process's connection
    try:
        with migration.cursor() as cursor:
            cursor.execute(alter % 101)
        after = call(client, whoami, key.identifier, password).status_code
    finally:
        with migration.cursor() as cursor:
            cursor.execute(alter % 100)
        migration.close()
    assert before == [200] * 10
    assert after == 200
