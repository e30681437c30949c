"""Every change and its audit event are one transaction: when the event cannot be written,
nothing changes, and the person sees a clear error.

The failure is real: a database trigger refuses every insert into the audit table.
"""

import datetime

import pytest
from django.core import mail
from django.db import DatabaseError, connection

from keys import actions
from keys.models import Api, ApiKey, AuditEvent, AuditHead

TABLE = AuditEvent._meta.db_table
NOT_SAVED = "The key could not be saved; nothing was changed. Try again."


def _create_trigger() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER audit_insert_fails BEFORE INSERT ON {TABLE} "
                "BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END"
            )
        elif connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION audit_insert_fails() RETURNS trigger AS $$ "
                "BEGIN RAISE EXCEPTION 'audit store unavailable'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER audit_insert_fails BEFORE INSERT ON {TABLE} "
                "FOR EACH ROW EXECUTE FUNCTION audit_insert_fails()"
            )
        else:  # pragma: no cover
            pytest.skip(f"no trigger recipe for {connection.vendor}")


@pytest.fixture
def audit_insert_fails(db):
    """From now on, in this test's transaction, no audit event can be written."""
    head = AuditHead.objects.values_list("seq", "hash").get()
    _create_trigger()
    yield
    # The chain head never moved: no half-written append.
    assert AuditHead.objects.values_list("seq", "hash").get() == head


def _add_form(today) -> dict:
    return {
        "name": "Nightly export",
        "expires_on": (today + datetime.timedelta(days=30)).isoformat(),
        "allowed_ips": ["203.0.113.7"],
        "apis": [str(Api.objects.get(slug="risks").pk)],
    }


def test_the_trigger_really_refuses_audit_inserts(alice, make_key, audit_insert_fails):
    with pytest.raises(DatabaseError):
        make_key(alice)


def test_a_key_is_not_created_when_its_event_cannot_be_written(
    alice, login, today, audit_insert_fails
):
    response = login(alice).post("/keys/add/", _add_form(today))
    assert response.status_code == 200
    assert NOT_SAVED in response.text
    assert "ckpw_" not in response.text  # no password shown for a key that does not exist
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_key_is_not_edited_when_its_event_cannot_be_written(alice, login, make_key, today):
    key, _ = make_key(alice, name="Before")
    _create_trigger()
    data = {**_add_form(today), "name": "After"}
    response = login(alice).post(f"/keys/{key.identifier}/edit/", data)
    assert response.status_code == 200
    assert NOT_SAVED in response.text
    key.refresh_from_db()
    assert key.name == "Before" and key.revision == 1
    assert list(key.allowed_ips.values_list("network", flat=True)) == ["127.0.0.1/32"]
    assert AuditEvent.objects.count() == 1


def test_a_key_is_not_revoked_when_its_event_cannot_be_written(carol, login, alice, make_key):
    key, _ = make_key(alice)
    _create_trigger()
    response = login(carol).post(f"/keys/{key.identifier}/revoke/", {"reason": "Leaked"})
    assert response.status_code == 200
    assert "The key could not be revoked; nothing was changed. Try again." in response.text
    key.refresh_from_db()
    assert not key.is_revoked and key.revoke_reason == ""


def test_no_new_password_is_shown_when_the_regeneration_event_cannot_be_written(
    alice, login, make_key
):
    key, _ = make_key(alice)
    _create_trigger()
    response = login(alice).post(f"/keys/{key.identifier}/regenerate/", {"overlap": "1 hour"})
    assert response.status_code == 200
    assert NOT_SAVED in response.text
    assert "ckpw_" not in response.text
    assert ApiKey.objects.get(pk=key.pk).password_hash == key.password_hash


def test_no_new_key_is_made_when_the_renewal_event_cannot_be_written(alice, login, make_key):
    key, _ = make_key(alice)
    _create_trigger()
    response = login(alice).post(
        f"/keys/{key.identifier}/renew/",
        {"expires_on": key.expires_on.isoformat(), "overlap_days": "7"},
    )
    assert response.status_code == 200
    assert NOT_SAVED in response.text
    assert "ckpw_" not in response.text
    assert list(ApiKey.objects.values_list("pk", flat=True)) == [key.pk]
    assert ApiKey.objects.get(pk=key.pk).revoke_at is None


def test_a_one_click_allow_is_not_made_when_its_event_cannot_be_written(alice, login, make_key):
    key, _ = make_key(alice)
    _create_trigger()
    client = login(alice)
    response = client.post(f"/keys/{key.identifier}/allow/", {"network": "192.0.2.0/24"})
    assert response.status_code == 302
    messages = [str(m) for m in client.get(response.url).context["messages"]]
    assert messages == [NOT_SAVED]
    assert list(key.allowed_ips.values_list("network", flat=True)) == ["127.0.0.1/32"]


def test_a_user_is_not_deactivated_when_an_event_cannot_be_written(carol, bob, login, make_key):
    key, _ = make_key(bob)
    _create_trigger()
    response = login(carol).post("/users/bob/deactivate/", {"reason": "Left"})
    assert response.status_code == 200
    assert "could not be deactivated; nothing was changed" in response.text
    bob.refresh_from_db()
    key.refresh_from_db()
    assert bob.is_active and not key.is_revoked


def test_the_catalogue_is_not_changed_when_its_event_cannot_be_written(carol, audit_insert_fails):
    api = Api.objects.get(slug="risks")
    api.name = "Risk register"
    with pytest.raises(DatabaseError):
        actions.save_api(api, actor=carol)
    assert Api.objects.get(slug="risks").name == "Risks"
    with pytest.raises(DatabaseError):
        actions.save_api(Api(slug="new", name="New"), actor=carol)
    assert not Api.objects.filter(slug="new").exists()


def _drop_trigger() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER audit_insert_fails")
        else:
            cursor.execute(f"DROP TRIGGER audit_insert_fails ON {TABLE}")
            cursor.execute("DROP FUNCTION audit_insert_fails()")


def test_an_expiry_reminder_whose_event_cannot_be_written_is_mailed_again_next_run(
    alice, make_key, today
):
    # Mailed before its event is written, outside any transaction (a hung mail server must
    # not hold the audit head): so the failure is reported, nothing is recorded, and the next
    # run mails again rather than never.
    key, _ = make_key(alice, expires_on=today + datetime.timedelta(days=3))
    head = AuditHead.objects.values_list("seq", "hash").get()
    _create_trigger()
    with pytest.raises(DatabaseError):
        actions.send_expiry_reminder(key, threshold=7, today=today)
    assert len(mail.outbox) == 1
    assert AuditHead.objects.values_list("seq", "hash").get() == head
    _drop_trigger()
    assert actions.send_expiry_reminder(key, threshold=7, today=today)
    assert len(mail.outbox) == 2
    assert AuditEvent.objects.filter(key=key, action="expiry_reminder").count() == 1
