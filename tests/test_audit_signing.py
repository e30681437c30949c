"""Someone with the database alone cannot rewrite the audit history unseen.

The database refuses to change or remove events; each event's hash is signed with a key the
database does not hold; signed checkpoints of the head, kept outside the database, show a
history cut short. Each attack below is done with raw SQL (the append-only trigger dropped
first, as a database administrator could), re-hashing with plain SHA-256 where that would
hide it from the hash chain alone, and verify_audit reports it.
"""

import base64
import csv
import hashlib
import io
import json
import subprocess

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction

from keys import actions
from keys.audit import chain as audit
from keys.audit import signing
from keys.models import AuditEvent, AuditHead
from tests import db_admin
from tests.servers import manage, manage_env

OTHER_KEY = base64.b64encode(b"another-audit-signing-key-seed!!").decode()


@pytest.fixture
def history(alice, carol, make_key):
    """Five events: three keys created, one edited, one revoked."""
    key, _ = make_key(alice, name="First")
    make_key(alice, name="Second")
    third, _ = make_key(alice, name="Third")
    actions.edit_key(
        key,
        actor=alice,
        name="First, renamed",
        expires_on=key.expires_on,
        networks=["127.0.0.1"],
        apis=list(key.apis.all()),
    )
    actions.revoke_key(third, actor=carol, reason="Leaked in a log")
    assert AuditHead.objects.get().seq == 5
    return key


@pytest.fixture
def checkpoints(tmp_path, settings):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    settings.AUDIT_CHECKPOINT_DIR = str(directory)
    return directory


@pytest.fixture
def public_key_file(tmp_path):
    """The installation's public key, as an auditor receives it."""
    out = io.StringIO()
    call_command("audit_public_key", stdout=out)
    path = tmp_path / "audit-public-key.pem"
    path.write_text(out.getvalue())
    return path


def verify(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def plain_sha256(prev_hash: str, event: AuditEvent) -> str:
    """The chain's formula, by hand: no secret is needed for it."""
    fields = audit.hashed_fields(event)
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()


def rehash_from(seq: int) -> None:
    """Re-compute prev_hash and hash from seq on, and move the head: the hash chain is whole."""
    prev = AuditEvent.objects.get(seq=seq - 1).hash if seq > 1 else audit.GENESIS_HASH
    for event in AuditEvent.objects.filter(seq__gte=seq).order_by("seq"):
        new = plain_sha256(prev, event)
        db_admin.raw(
            "UPDATE {table} SET prev_hash = %s, hash = %s WHERE seq = %s", [prev, new, event.seq]
        )
        prev = new
    newest = AuditEvent.objects.order_by("-seq").first()
    AuditHead.objects.filter(pk=1).update(seq=newest.seq, hash=newest.hash)


def assert_hash_chain_alone_is_whole() -> None:
    """What verify_audit checked before signatures: here it would print OK."""
    prev = audit.GENESIS_HASH
    for number, event in enumerate(AuditEvent.objects.order_by("seq"), start=1):
        assert (event.seq, event.prev_hash, event.hash) == (number, prev, plain_sha256(prev, event))
        prev = event.hash
    assert AuditHead.objects.get().hash == prev


# --- The database refuses ------------------------------------------------------------------


def test_the_database_refuses_to_update_an_event_by_raw_sql(history):
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"UPDATE {table} SET actor_label = 'mallory' WHERE seq = 2")  # noqa: S608
    assert AuditEvent.objects.get(seq=2).actor_label == "alice"


def test_the_database_refuses_to_delete_events_by_raw_sql(history):
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"DELETE FROM {table} WHERE seq >= 4")  # noqa: S608
    assert AuditEvent.objects.count() == 5


@pytest.mark.postgres_only
def test_postgresql_refuses_to_truncate_the_events(history):
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the fixture's deferred FK checks
        cursor.execute("TRUNCATE keys_auditevent CASCADE")
    assert AuditEvent.objects.count() == 5


def test_bulk_create_of_events_is_refused(history):
    forged = AuditEvent(seq=6, at=AuditEvent.objects.get(seq=5).at, action="key_created")
    with pytest.raises(ValueError, match=r"appended only through keys\.audit"):
        AuditEvent.objects.bulk_create([forged])
    assert AuditEvent.objects.count() == 5


# --- Signatures -------------------------------------------------------------------------------


def test_each_event_carries_a_signature_of_its_hash_that_the_published_key_verifies(
    history, public_key_file
):
    keys = signing.load_public_keys(public_key_file.read_text())
    events = list(AuditEvent.objects.order_by("seq"))
    assert len(events) == 5
    for event in events:
        assert signing.verify(keys, signing.EVENT, event.hash, event.signature) is None
    output = verify("--public-key", str(public_key_file))
    (key_id,) = keys
    assert output.splitlines()[1].startswith(f"signed by key {key_id} (5)")


def test_editing_an_event_and_rehashing_the_rest_is_reported_at_that_event(history):
    db_admin.raw("UPDATE {table} SET details = %s WHERE seq = 3", ['{"name": "innocent"}'])
    rehash_from(3)
    assert_hash_chain_alone_is_whole()
    with pytest.raises(CommandError, match=r"BROKEN at seq 3: its signature by key \w+ does not"):
        verify()


def test_inserting_an_event_and_rehashing_is_reported_at_the_inserted_seq(history):
    for seq in (5, 4, 3):  # make room at 3, newest first (seq is unique)
        db_admin.raw("UPDATE {table} SET seq = %s WHERE seq = %s", [seq + 1, seq])
    second = AuditEvent.objects.get(seq=2)
    db_admin.raw(
        "INSERT INTO {table} (seq, at, actor_label, key_identifier, action, details, prev_hash,"
        " hash, signature) VALUES (3, %s, 'carol', '', 'catalogue_changed', '{{}}', '', %s, %s)",
        [second.at, "e" * 64, second.signature],  # a real signature, copied from another event
    )
    rehash_from(3)
    assert_hash_chain_alone_is_whole()
    with pytest.raises(CommandError, match="BROKEN at seq 3: its signature by key"):
        verify()


def test_an_inserted_event_without_a_signature_is_reported(history):
    db_admin.raw(
        "INSERT INTO {table} (seq, at, actor_label, key_identifier, action, details, prev_hash,"
        " hash, signature) VALUES (6, %s, 'carol', '', 'catalogue_changed', '{{}}', '', %s, '')",
        [AuditEvent.objects.get(seq=5).at, "e" * 64],
    )
    rehash_from(6)
    assert_hash_chain_alone_is_whole()
    with pytest.raises(CommandError, match="BROKEN at seq 6: it is not signed"):
        verify()


def test_deleting_an_event_and_rehashing_the_rest_is_reported_at_its_seq(history):
    db_admin.raw("DELETE FROM {table} WHERE seq = 2")
    for seq in (3, 4, 5):  # close the gap
        db_admin.raw("UPDATE {table} SET seq = %s WHERE seq = %s", [seq - 1, seq])
    rehash_from(2)
    assert_hash_chain_alone_is_whole()
    with pytest.raises(CommandError, match="BROKEN at seq 2: its signature by key") as failure:
        verify()
    assert failure.value.returncode == 1


def test_a_signature_by_a_key_nobody_trusts_is_reported(history):
    forger = signing.Signer(signing.load_private_key(OTHER_KEY))
    event = AuditEvent.objects.get(seq=4)
    db_admin.raw(
        "UPDATE {table} SET signature = %s WHERE seq = 4",
        [forger.sign(signing.EVENT, event.hash)],
    )
    with pytest.raises(CommandError, match=f"BROKEN at seq 4: .*names key {forger.key_id}, which"):
        verify()


def test_after_a_key_rotation_old_events_verify_with_the_old_public_key(
    history, alice, make_key, public_key_file, tmp_path, settings
):
    settings.AUDIT_SIGNING_KEY = OTHER_KEY
    make_key(alice, name="After the rotation")
    new_key = tmp_path / "new.pem"
    out = io.StringIO()
    call_command("audit_public_key", stdout=out)
    new_key.write_text(out.getvalue())
    old_id = next(iter(signing.load_public_keys(public_key_file.read_text())))
    new_id = signing.signer().key_id

    output = verify("--public-key", str(public_key_file), "--public-key", str(new_key))

    assert output.splitlines()[0].startswith("OK: 6 events")
    assert f"key {old_id} (5)" in output
    assert f"key {new_id} (1)" in output
    with pytest.raises(CommandError, match=f"BROKEN at seq 1: .*names key {old_id}"):
        verify("--public-key", str(new_key))


# --- Checkpoints ----------------------------------------------------------------------------


def checkpoint_seqs(directory) -> list[int]:
    return [
        json.loads(line)["seq"]
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_truncating_the_newest_events_is_caught_by_a_checkpoint(
    history, checkpoints, public_key_file
):
    call_command("audit_checkpoint", stdout=io.StringIO())
    db_admin.raw("DELETE FROM {table} WHERE seq >= 4")
    third = AuditEvent.objects.get(seq=3)
    AuditHead.objects.filter(pk=1).update(seq=3, hash=third.hash)
    assert_hash_chain_alone_is_whole()

    message = "BROKEN at seq 4: the newest events are missing: checkpoint audit-checkpoints-"
    other_server = checkpoints.parent / "other-server"
    other_server.mkdir()
    with pytest.raises(CommandError, match=message) as failure:
        verify(
            *("--checkpoints", str(other_server), "--checkpoints", str(checkpoints)),
            *("--public-key", str(public_key_file)),
        )
    assert "names #5" in str(failure.value)
    with pytest.raises(CommandError, match="BROKEN at seq 4"):
        verify()  # AUDIT_CHECKPOINT_DIR by default


def test_rewriting_history_behind_a_checkpoint_is_reported_at_the_checkpoint(
    history, checkpoints, settings
):
    """Even with the signing key stolen, an event a checkpoint already covers cannot change."""
    call_command("audit_checkpoint", stdout=io.StringIO())
    db_admin.raw("UPDATE {table} SET actor_label = 'mallory' WHERE seq = 5")
    rehash_from(5)
    thief = signing.signer()
    event = AuditEvent.objects.get(seq=5)
    db_admin.raw(
        "UPDATE {table} SET signature = %s WHERE seq = 5",
        [thief.sign(signing.EVENT, event.hash)],
    )
    with pytest.raises(
        CommandError, match="BROKEN at seq 5: its hash is not the one in checkpoint"
    ):
        verify()


def test_the_app_writes_a_signed_checkpoint_every_n_events_to_the_log_and_the_directory(
    alice, make_key, checkpoints, settings, django_capture_on_commit_callbacks, caplog
):
    settings.AUDIT_CHECKPOINT_EVERY_EVENTS = 2
    settings.AUDIT_CHECKPOINT_EVERY_SECONDS = 3600
    with django_capture_on_commit_callbacks(execute=True):
        for number in range(5):
            make_key(alice, name=f"Key {number}")

    written = checkpoint_seqs(checkpoints)
    assert {2, 4} <= set(written)  # (1 too when it was this process's first event)
    assert set(written) <= {1, 2, 4}
    assert any(
        record.getMessage().startswith('audit checkpoint {"at":') for record in caplog.records
    )
    assert verify().splitlines()[0].startswith("OK: 5 events")


def test_the_app_writes_a_checkpoint_on_an_append_after_a_quiet_spell(
    alice, make_key, checkpoints, settings, django_capture_on_commit_callbacks
):
    settings.AUDIT_CHECKPOINT_EVERY_EVENTS = 0
    settings.AUDIT_CHECKPOINT_EVERY_SECONDS = 0  # every append comes after a long enough spell
    with django_capture_on_commit_callbacks(execute=True):
        make_key(alice, name="One")
        make_key(alice, name="Two")
    assert checkpoint_seqs(checkpoints) == [1, 2]


def test_a_rolled_back_event_gets_no_checkpoint(
    alice, make_key, checkpoints, settings, django_capture_on_commit_callbacks
):
    settings.AUDIT_CHECKPOINT_EVERY_SECONDS = 0
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        make_key(alice, name="Undone")
        raise RuntimeError("the change fails after its event")
    assert checkpoint_seqs(checkpoints) == []


def test_a_forged_checkpoint_is_reported(history, checkpoints):
    forger = signing.Signer(signing.load_private_key(OTHER_KEY))
    fake = audit.Checkpoint(9, "f" * 64, "2030-01-01T00:00:00.000000+00:00", "")
    fake = audit.Checkpoint(9, fake.hash, fake.at, forger.sign(signing.CHECKPOINT, fake.payload()))
    (checkpoints / "audit-checkpoints-2030-01-01.jsonl").write_text(fake.to_line() + "\n")
    with pytest.raises(CommandError, match="BROKEN at seq 9: checkpoint audit-checkpoints-2030"):
        verify()


def test_a_full_checkpoint_directory_does_not_fail_the_change(
    alice, make_key, tmp_path, settings, django_capture_on_commit_callbacks, caplog
):
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "missing")
    settings.AUDIT_CHECKPOINT_EVERY_SECONDS = 0
    with django_capture_on_commit_callbacks(execute=True):
        key, _ = make_key(alice, name="Still created")
    assert key.pk is not None
    assert "audit checkpoint #1 could not be written" in caplog.text
    with pytest.raises(CommandError, match="Cannot write to AUDIT_CHECKPOINT_DIR"):
        call_command("audit_checkpoint", stdout=io.StringIO())


# --- Security events are checkpointed at once --------------------------------------------------


def revoke_through_the_page(alice, bob, login, key):
    assert login(alice).post(f"/keys/{key.identifier}/revoke/", {}).status_code == 302


def regenerate_through_the_page(alice, bob, login, key):
    page = login(alice).post(f"/keys/{key.identifier}/regenerate/", {"overlap": "none"})
    assert page.status_code == 200


def make_bob_an_admin(alice, bob, login, key):
    bob.groups.add(Group.objects.get(name="admin"))


def set_bobs_password(alice, bob, login, key):
    bob.set_password("a-new-portal-password")
    bob.save()


def deactivate_bob(alice, bob, login, key):
    bob.is_active = False
    bob.save()


@pytest.mark.parametrize(
    "security_event",
    [
        revoke_through_the_page,
        regenerate_through_the_page,
        make_bob_an_admin,
        set_bobs_password,
        deactivate_bob,
    ],
)
def test_removing_a_security_event_just_after_it_happened_is_caught(
    alice, bob, login, make_key, checkpoints, settings, django_capture_on_commit_callbacks,
    security_event,
):  # fmt: skip
    settings.AUDIT_CHECKPOINT_EVERY_EVENTS = 1000
    settings.AUDIT_CHECKPOINT_EVERY_SECONDS = 3600
    key, _ = make_key(alice, name="Nightly export")
    call_command("audit_checkpoint", stdout=io.StringIO())  # #1; the next quiet spell: an hour
    with django_capture_on_commit_callbacks(execute=True):
        security_event(alice, bob, login, key)
    newest = AuditHead.objects.get().seq
    assert newest > 1

    # Someone with the database alone takes the event back: a whole, shorter chain is left.
    db_admin.raw("DELETE FROM {table} WHERE seq > 1")
    AuditHead.objects.filter(pk=1).update(seq=1, hash=AuditEvent.objects.get(seq=1).hash)
    assert_hash_chain_alone_is_whole()

    with pytest.raises(CommandError, match="BROKEN at seq 2: the newest events are missing"):
        verify()


def test_verify_audit_says_how_many_newest_events_no_checkpoint_covers_yet(
    alice, make_key, checkpoints, settings
):
    settings.AUDIT_CHECKPOINT_EVERY_EVENTS = 1000
    settings.AUDIT_CHECKPOINT_EVERY_SECONDS = 3600
    make_key(alice, name="First")
    call_command("audit_checkpoint", stdout=io.StringIO())
    assert "covered by no checkpoint" not in verify()

    make_key(alice, name="Second")
    make_key(alice, name="Third")

    output = verify()
    assert output.splitlines()[0].startswith("OK: 3 events")
    assert "the newest 2 event(s) are covered by no checkpoint yet" in output


# --- Installations from before signing -------------------------------------------------------


@pytest.fixture
def legacy_history(history):
    """The five events as migration 0007 finds them: no signatures."""
    db_admin.raw("UPDATE {table} SET signature = ''")
    return history


def test_migrating_seals_the_unsigned_history_with_a_signed_checkpoint(
    legacy_history, checkpoints, alice, make_key
):
    with pytest.raises(CommandError, match="BROKEN at seq 1: it is not signed"):
        verify()  # no checkpoint yet: nothing proves these events
    call_command("migrate", verbosity=0)
    assert checkpoint_seqs(checkpoints) == [5]
    make_key(alice, name="After the migration")

    output = verify()

    assert output.splitlines()[0].startswith("OK: 6 events")
    assert "5 unsigned, sealed by checkpoint #5" in output


def test_a_change_to_sealed_unsigned_events_is_reported_at_the_seal(
    legacy_history, checkpoints, alice, make_key
):
    call_command("migrate", verbosity=0)
    db_admin.raw("UPDATE {table} SET actor_label = 'mallory' WHERE seq = 2")
    rehash_from(2)
    with pytest.raises(
        CommandError, match="BROKEN at seq 5: its hash is not the one in checkpoint"
    ):
        verify()


# --- The CSV export, offline -----------------------------------------------------------------


def export(client) -> str:
    return b"".join(client.get("/audit/export.csv").streaming_content).decode()


def verify_offline(csv_path, key_path) -> subprocess.CompletedProcess:
    """verify_audit in a process with no database and a different signing key of its own."""
    env = manage_env(
        AUDIT_SIGNING_KEY=OTHER_KEY, DATABASE_URL="sqlite:////nonexistent/no-database.sqlite3"
    )
    return manage("verify_audit", "--csv", str(csv_path), "--public-key", str(key_path), env=env)


def test_an_exported_csv_verifies_offline_with_the_public_key_alone(
    history, dave, login, public_key_file, tmp_path
):
    path = tmp_path / "export.csv"
    path.write_text(export(login(dave)), encoding="utf-8")
    result = verify_offline(path, public_key_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 5 events")


def test_a_rehashed_csv_fails_the_offline_check(history, dave, login, public_key_file, tmp_path):
    rows = list(csv.DictReader(io.StringIO(export(login(dave)))))
    rows[1]["actor_label"] = "mallory"
    prev = rows[0]["hash"]
    for row in rows[1:]:  # plain SHA-256 again, row by row
        row["prev_hash"] = prev
        fields = {
            "seq": int(row["seq"]),
            "at": row["at_utc"],
            "actor_id": int(row["actor_id"]) if row["actor_id"] else None,
            "actor_label": row["actor_label"],
            "actor_ip": row["actor_ip"] or None,
            "key_id": int(row["key_id"]) if row["key_id"] else None,
            "key_identifier": row["key_identifier"],
            "owner_id": int(row["owner_id"]) if row["owner_id"] else None,
            "action": row["action"],
            "details": json.loads(row["details"]),
        }
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        row["hash"] = prev = hashlib.sha256((prev + text).encode()).hexdigest()
    path = tmp_path / "export.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    result = verify_offline(path, public_key_file)

    assert result.returncode == 1
    assert "BROKEN at seq 2: its signature by key" in result.stderr


# --- Start-up ---------------------------------------------------------------------------------


def test_production_needs_an_audit_signing_key():
    env = manage_env()
    del env["AUDIT_SIGNING_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "AUDIT_SIGNING_KEY_FILE is required when DEBUG is off" in result.stderr


def test_a_malformed_audit_signing_key_stops_start_up(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    env = manage_env(AUDIT_SIGNING_KEY_FILE=str(path))
    del env["AUDIT_SIGNING_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "is not a usable Ed25519 private key" in result.stderr
