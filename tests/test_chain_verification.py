"""When the chain was last verified: Verify now on the history page, verify_audit's runs on the
record (outside the chain), the result shown, one check at a time."""

import datetime
import io

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from keys.audit import chain as audit
from keys.audit import signing
from keys.models import AuditEvent, ChainVerification
from tests import db_admin

HISTORY = "/audit/"


def test_the_history_says_when_the_chain_was_never_verified(dave, login, pipeline):
    assert "The chain was never verified here." in login(dave).get(HISTORY).text


def test_verify_now_checks_the_chain_and_the_page_shows_the_result(dave, login, pipeline):
    with time_machine.travel(datetime.datetime(2030, 1, 15, 8, 12, tzinfo=datetime.UTC)):
        client = login(dave)
        response = client.post("/audit/verify/")
        assert response.url == "/audit/"
        page = client.get(HISTORY)
    assert "The chain is intact: 1 events checked." in page.text
    assert "Chain last verified 2030-01-15 09:12 CET by dave: intact, 1 events." in page.text
    assert AuditEvent.objects.count() == 1  # checking appended nothing to the chain


def test_verify_audit_records_its_run_too(pipeline, reports):
    call_command("verify_audit", stdout=io.StringIO())
    checked = ChainVerification.objects.get()
    assert (checked.by, checked.intact, checked.events) == ("manage.py verify_audit", True, 2)


def test_a_broken_chain_is_shown_in_red_with_the_event_it_breaks_at(dave, login, pipeline, reports):
    db_admin.raw("UPDATE {table} SET actor_label = %s WHERE seq = 2", ["mallory"])
    with pytest.raises(CommandError, match="BROKEN at seq 2"):
        call_command("verify_audit", stdout=io.StringIO())
    page = login(dave).get(HISTORY).text
    assert (
        '<p class="form-errors">Chain last verified' in page
        and "by manage.py verify_audit: <strong>broken at event 2</strong>" in page
    )


def test_verify_now_leaves_a_long_history_to_the_scheduled_check(dave, login, pipeline, settings):
    settings.AUDIT_VERIFY_NOW_MAX_EVENTS = 0
    page = login(dave).post("/audit/verify/", follow=True)
    assert "too many to check while you wait" in page.text
    assert not ChainVerification.objects.exists()


def test_verify_now_runs_one_check_at_a_time(dave, carol, login, pipeline, monkeypatch):
    second = {}
    check_chain = audit.check_chain

    def while_checking(**kwargs):  # carol clicks while dave's check runs
        second["page"] = login(carol).post("/audit/verify/", follow=True)
        return check_chain(**kwargs)

    monkeypatch.setattr(audit, "check_chain", while_checking)
    login(dave).post("/audit/verify/")

    assert "A check of the chain is running already" in second["page"].text
    assert list(ChainVerification.objects.values_list("by", flat=True)) == ["dave"]
    monkeypatch.setattr(audit, "check_chain", check_chain)
    login(carol).post("/audit/verify/")  # dave's check is over: carol's runs
    assert ChainVerification.objects.count() == 2


def test_verify_now_needs_the_csrf_token(dave):
    client = Client(enforce_csrf_checks=True)
    client.force_login(dave)
    assert client.post("/audit/verify/").status_code == 403
    assert not ChainVerification.objects.exists()


def test_the_history_page_records_no_verification_by_being_read(dave, login, pipeline):
    login(dave).get(HISTORY)
    assert not ChainVerification.objects.exists()


@pytest.fixture
def broken_and_checked(pipeline, reports):
    """A chain edited at event 2, and the scheduled check that found it."""
    db_admin.raw("UPDATE {table} SET actor_label = %s WHERE seq = 2", ["mallory"])
    with pytest.raises(CommandError, match="BROKEN at seq 2"):
        call_command("verify_audit", stdout=io.StringIO())
    return ChainVerification.objects.get()


def forge(**fields) -> None:
    """A record of a check written straight into the database, as its writer alone could."""
    row = {"by": "manage.py verify_audit", "intact": True, "events": 2, **fields}
    ChainVerification.objects.bulk_create([ChainVerification(**row)])  # save() is skipped


def test_a_forged_record_of_an_intact_chain_does_not_hide_a_broken_one(
    dave, login, broken_and_checked
):
    forge(at=timezone.now())
    page = login(dave).get(HISTORY).text

    assert "intact" not in page
    assert "is not signed with this portal's audit key" in page


def test_a_genuine_signature_moved_onto_a_forged_record_does_not_verify(
    dave, login, broken_and_checked
):
    forge(at=timezone.now(), signature=broken_and_checked.signature)
    page = login(dave).get(HISTORY).text
    assert "intact" not in page and "is not signed with this portal's audit key" in page


def test_a_record_dated_in_the_future_is_passed_over(dave, login, broken_and_checked):
    forge(at=timezone.now() + datetime.timedelta(days=1))
    page = login(dave).get(HISTORY).text
    assert "<strong>broken at event 2</strong>" in page and "intact" not in page
    with pytest.raises(ValueError, match="in the future"):
        ChainVerification(
            at=timezone.now() + datetime.timedelta(minutes=1), by="x", intact=True, events=2
        ).save()


def test_each_check_signs_its_record(dave, login, pipeline):
    login(dave).post("/audit/verify/")
    (checked,) = ChainVerification.objects.all()
    assert checked.signature.startswith(signing.signer().key_id + ":")
    assert "intact, 1 events" in login(dave).get(HISTORY).text
