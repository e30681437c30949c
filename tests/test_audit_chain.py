"""The audit history is hash-chained, append-only, serialised, and verify_audit checks it."""

import itertools
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from keys import actions
from keys.audit import chain as audit
from keys.models import Api, AuditEvent, AuditHead, latest_expiry_for, local_date
from tests import db_admin


def _raw(sql: str, params=()) -> None:
    db_admin.raw(sql, params)  # the append-only trigger dropped first, as an admin could


def _verify() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


@pytest.fixture
def history(alice, carol, make_key):
    """Five events: two keys created, one edited (name), one revoked by an admin."""
    key, _ = make_key(alice, name="First")
    other, _ = make_key(alice, name="Second")
    actions.edit_key(
        key,
        actor=alice,
        name="First, renamed",
        expires_on=key.expires_on,
        networks=["127.0.0.1"],
        apis=list(key.apis.all()),
    )
    actions.revoke_key(other, actor=carol, reason="Leaked in a log")
    assert AuditEvent.objects.count() == 4
    return key


def test_each_event_chains_onto_the_previous_one_by_hash(history):
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[0].prev_hash == audit.GENESIS_HASH
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == previous.hash
        assert event.hash == audit.chain_hash(previous.hash, event)
    head = AuditHead.objects.get()
    assert (head.seq, head.hash) == (4, events[-1].hash)


def test_verify_audit_reports_an_intact_chain_with_its_head(history):
    head = AuditHead.objects.get()
    assert _verify().splitlines()[0] == f"OK: 4 events, head {head.hash}"


def test_verify_audit_on_an_empty_history_is_ok(db):
    assert _verify().splitlines()[0] == f"OK: 0 events, head {audit.GENESIS_HASH}"


def test_editing_a_row_by_hand_makes_verify_audit_fail_at_that_seq(history):
    _raw("UPDATE {table} SET details = %s WHERE seq = 3", ['{"name": "innocent"}'])
    with pytest.raises(CommandError, match="BROKEN at seq 3: its content does not match"):
        _verify()


def test_editing_who_acted_by_hand_is_detected(history):
    _raw("UPDATE {table} SET actor_label = %s WHERE seq = 2", ["mallory"])
    with pytest.raises(CommandError, match="BROKEN at seq 2"):
        _verify()


def test_deleting_a_row_by_hand_makes_verify_audit_fail(history):
    _raw("DELETE FROM {table} WHERE seq = 2")
    with pytest.raises(CommandError, match="BROKEN at seq 2: event 2 is missing"):
        _verify()


def test_deleting_the_newest_row_by_hand_is_detected_through_the_head(history):
    _raw("DELETE FROM {table} WHERE seq = 4")
    with pytest.raises(CommandError, match="BROKEN at seq 4: the chain head says #4"):
        _verify()


def _append_forged_event(seq: int) -> None:
    """A row written by hand after the head, which the head never took in."""
    _raw(
        "INSERT INTO {table} (seq, at, actor_label, key_identifier, action, details,"
        " prev_hash, hash, signature) VALUES (%s, %s, %s, '', %s, %s, %s, %s, '')",
        [seq, "2030-01-01 12:00:00", "mallory", "key_created", "{}", "f" * 64, "e" * 64],
    )


def test_an_event_appended_beyond_the_chain_head_makes_verify_audit_fail(history):
    _append_forged_event(5)
    with pytest.raises(CommandError, match="BROKEN at seq 5: event 5 lies beyond") as failure:
        _verify()
    assert failure.value.returncode == 1
    assert "the chain head #4" in str(failure.value)


def test_an_event_far_beyond_the_chain_head_is_named(history):
    _append_forged_event(40)
    assert [(b.seq, b.reason) for b in audit.verify_chain()] == [
        (40, "event 40 lies beyond the chain head #4")
    ]


def test_the_history_page_and_export_stop_at_the_chain_head(history, dave, login):
    _append_forged_event(5)
    client = login(dave)
    page = client.get("/audit/")
    assert [event.seq for event in page.context["page"].events] == [4, 3, 2, 1]
    export = b"".join(client.get("/audit/export.csv").streaming_content).decode()
    assert "mallory" not in export


def test_reordering_rows_by_hand_makes_verify_audit_fail(history):
    _raw("UPDATE {table} SET seq = 100 WHERE seq = 2")
    _raw("UPDATE {table} SET seq = 2 WHERE seq = 3")
    _raw("UPDATE {table} SET seq = 3 WHERE seq = 100")
    with pytest.raises(CommandError, match="BROKEN at seq 2"):
        _verify()


def test_verify_audit_exits_non_zero_on_a_break(history):
    _raw("UPDATE {table} SET action = %s WHERE seq = 1", ["key_revoked"])
    with pytest.raises(CommandError) as failure:
        _verify()
    assert failure.value.returncode == 1


def test_events_cannot_be_updated_through_the_orm(history):
    event = AuditEvent.objects.get(seq=1)
    event.actor_label = "mallory"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        AuditEvent.objects.filter(seq=1).update(actor_label="mallory")
    with pytest.raises(ValueError, match="append-only"):
        AuditEvent.objects.bulk_update([event], ["actor_label"])
    assert _verify().startswith("OK")


def test_events_cannot_be_deleted_through_the_orm(history):
    with pytest.raises(ValueError, match="append-only"):
        AuditEvent.objects.get(seq=1).delete()
    with pytest.raises(ValueError, match="append-only"):
        AuditEvent.objects.filter(seq__lte=2).delete()
    assert AuditEvent.objects.count() == 4


def test_an_event_is_never_timed_before_its_predecessor(history, alice):
    latest = AuditEvent.objects.get(seq=4)
    earlier = latest.at.replace(year=latest.at.year - 1)
    event = audit.record(AuditEvent.Action.KEY_EDITED, key=history, actor=alice, at=earlier)
    assert event.at == latest.at
    assert _verify().startswith("OK")


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_creates_leave_fifty_consecutive_events_and_a_valid_chain(
    django_user_model,
):
    owner = django_user_model.objects.create_user(username="erin", password="erin-portal-pw")
    apis = list(Api.objects.filter(slug="risks"))
    expires_on = latest_expiry_for(local_date())
    start = threading.Barrier(50)
    errors = []

    def create(number: int) -> None:
        try:
            start.wait(timeout=30)
            actions.create_key(
                owner=owner,
                name=f"Worker {number}",
                expires_on=expires_on,
                networks=["192.0.2.1"],
                apis=apis,
            )
        except Exception as error:  # any failure is reported below
            errors.append(repr(error))
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=create, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no repeat
    assert AuditEvent.objects.filter(action="key_created").count() == 50
    assert list(audit.verify_chain()) == []
