"""send_expiry_reminders mails a key's owner once per threshold (30, 7, 1 days by default)."""

import datetime
import io
import smtplib

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends import locmem
from django.core.management import CommandError, call_command
from django.utils import timezone

from keys import actions
from keys.actions import reminders
from keys.models import AuditEvent

START = datetime.date(2030, 3, 1)  # keys are created on this day


def _noon(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time(12)))


def run_on(day: datetime.date) -> str:
    out = io.StringIO()
    with time_machine.travel(_noon(day), tick=False):
        call_command("send_expiry_reminders", stdout=out, stderr=out)
    return out.getvalue()


@pytest.fixture
def key_expiring(alice, make_key):
    """A key of alice's created on START that expires `days` after START."""

    def _key(days: int, owner=None, name="Nightly export"):
        with time_machine.travel(_noon(START), tick=False):
            key, _ = make_key(
                owner or alice, name=name, expires_on=START + datetime.timedelta(days=days)
            )
        return key

    return _key


def _reminders(key) -> list[int]:
    events = AuditEvent.objects.filter(key=key, action="expiry_reminder").order_by("seq")
    return [event.details["threshold_days"] for event in events]


def test_owner_is_mailed_when_a_key_expires_within_30_days(key_expiring):
    key = key_expiring(30)
    assert "Sent 1 reminder(s)" in run_on(START)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["alice@example.com"]
    assert message.subject == "Your API key “Nightly export” expires on 2030-03-31"
    assert key.identifier in message.body and "in 30 days" in message.body
    assert f"http://127.0.0.1:8000/keys/{key.identifier}/renew/" in message.body
    assert _reminders(key) == [30]


def test_a_key_further_than_30_days_from_expiry_gets_no_mail(key_expiring):
    key_expiring(31)
    run_on(START)
    assert mail.outbox == []
    assert not AuditEvent.objects.filter(action="expiry_reminder").exists()


def test_each_threshold_is_mailed_once(key_expiring):
    key = key_expiring(30)
    run_on(START)
    run_on(START)  # the same day again
    run_on(START + datetime.timedelta(days=20))  # 10 days left: still the 30-day window
    assert len(mail.outbox) == 1
    run_on(START + datetime.timedelta(days=23))  # 7 days left
    run_on(START + datetime.timedelta(days=24))
    assert len(mail.outbox) == 2 and "in 7 days" in mail.outbox[1].body
    run_on(START + datetime.timedelta(days=29))  # 1 day left
    run_on(START + datetime.timedelta(days=30))  # its last day
    assert len(mail.outbox) == 3 and "end of tomorrow" in mail.outbox[2].body
    assert _reminders(key) == [30, 7, 1]


def test_a_key_first_seen_inside_a_tighter_window_gets_only_that_reminder(key_expiring):
    key = key_expiring(5)
    run_on(START)
    assert _reminders(key) == [7]
    assert len(mail.outbox) == 1


def test_the_last_day_of_a_key_is_within_one_day(key_expiring):
    key = key_expiring(0)
    run_on(START)
    assert _reminders(key) == [1]
    assert "end of today" in mail.outbox[0].body


def test_each_mail_is_an_audit_event_by_the_system(key_expiring):
    key = key_expiring(7)
    run_on(START)
    event = AuditEvent.objects.get(action="expiry_reminder")
    assert event.key == key and event.owner == key.owner
    assert event.actor is None and event.actor_label == "system"
    assert event.details == {
        "threshold_days": 7,
        "days_left": 7,
        "expires_on": "2030-03-08",
        "to": "alice@example.com",
    }


def test_revoked_and_expired_keys_get_no_reminder(alice, key_expiring):
    revoked = key_expiring(10, name="Revoked")
    actions.revoke_key(revoked, actor=alice)
    key_expiring(3, name="Expired")
    run_on(START + datetime.timedelta(days=4))
    assert mail.outbox == []


def test_keys_of_deactivated_owners_get_no_reminder(bob, key_expiring):
    key_expiring(10, owner=bob)
    bob.is_active = False
    bob.save()
    run_on(START)
    assert mail.outbox == []


def test_an_owner_without_email_is_reported_and_not_recorded(bob, key_expiring):
    bob.email = ""
    bob.save()
    key = key_expiring(10, owner=bob)
    output = run_on(START)
    assert f"{key.identifier}: owner bob has no email address." in output
    assert mail.outbox == [] and _reminders(key) == []


def test_thresholds_come_from_the_setting(settings, key_expiring):
    settings.KEYS_EXPIRY_REMINDER_DAYS = [14]
    key = key_expiring(20)
    run_on(START)
    assert mail.outbox == []
    run_on(START + datetime.timedelta(days=6))
    assert _reminders(key) == [14]


def test_a_reminder_never_contains_the_password(alice, make_key, today):
    _, password = make_key(alice, expires_on=today + datetime.timedelta(days=1))
    call_command("send_expiry_reminders", stdout=io.StringIO())
    assert password not in mail.outbox[0].body and password not in mail.outbox[0].subject


def test_the_expiry_reminder_names_the_apis(alice, make_key, today):
    make_key(alice, apis=("risks", "kris"), expires_on=today + datetime.timedelta(days=3))
    call_command("send_expiry_reminders", stdout=io.StringIO())
    (message,) = mail.outbox
    assert "Its APIs: Risks, Key risk indicators." in message.body


# --- a slow or failing mail server ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_mail_goes_out_with_no_transaction_open(monkeypatch, key_expiring):
    from django.db import connection

    in_transaction = []

    def send_mail(**kwargs):
        in_transaction.append(connection.in_atomic_block)
        mail.outbox.append(kwargs)

    monkeypatch.setattr(reminders, "send_mail", send_mail)
    key = key_expiring(7)
    run_on(START)
    assert in_transaction == [False]  # a hung mail server holds no lock on the audit head
    assert _reminders(key) == [7]


def test_a_mail_that_fails_is_not_recorded_and_the_next_run_sends_it(monkeypatch, key_expiring):
    import smtplib

    key = key_expiring(7)

    def refused(**kwargs):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")

    with monkeypatch.context() as patched:
        patched.setattr(reminders, "send_mail", refused)
        with pytest.raises(CommandError, match="1 reminder"):
            run_on(START)
    assert _reminders(key) == [] and mail.outbox == []

    run_on(START)
    assert _reminders(key) == [7] and len(mail.outbox) == 1


def test_a_reminder_recorded_by_another_run_while_mailing_is_recorded_once(
    monkeypatch, key_expiring
):
    from keys.audit import chain as audit

    key = key_expiring(7)

    def another_run_records_it_meanwhile(**kwargs):
        audit.record("expiry_reminder", key=key, details={"threshold_days": 7})
        mail.outbox.append(kwargs)

    monkeypatch.setattr(reminders, "send_mail", another_run_records_it_meanwhile)
    run_on(START)
    assert _reminders(key) == [7]


def test_the_mail_server_is_given_up_on_after_email_timeout(settings):
    from django.core.mail import get_connection

    smtp = get_connection("django.core.mail.backends.smtp.EmailBackend")
    assert settings.EMAIL_TIMEOUT == 10 and smtp.timeout == 10


def test_a_key_that_cannot_be_mailed_is_reported_and_the_others_still_are(
    settings, bob, key_expiring
):
    settings.EMAIL_BACKEND = "tests.test_expiry_reminders.RefusesBob"
    refused = key_expiring(7, owner=bob, name="Bob's export")
    mailed = key_expiring(7, name="Alice's export")
    out = io.StringIO()
    with time_machine.travel(_noon(START), tick=False), pytest.raises(CommandError):
        call_command("send_expiry_reminders", stdout=out, stderr=out)
    assert f"{refused.identifier}: could not mail bob" in out.getvalue()
    assert "Sent 1 reminder(s)" in out.getvalue() and "1 failed" in out.getvalue()
    assert _reminders(mailed) == [7] and _reminders(refused) == []
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]


class RefusesBob(locmem.EmailBackend):
    """A mail server that refuses one recipient, as a real one refuses a dead mailbox."""

    def send_messages(self, messages):
        for message in messages:
            if "bob@example.com" in message.to:
                raise smtplib.SMTPRecipientsRefused({"bob@example.com": (550, b"No mailbox")})
        return super().send_messages(messages)
