"""The auditor's desk: where an auditor lands, filters by name and part of a name with date
presets, the key's name in the history, the inventory CSV for access reviews, and when the
chain was last verified (issue 10, point 6)."""

import csv
import datetime
import io

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keys import actions
from keys.audit import chain as audit
from keys.audit import signing
from keys.models import AuditEvent, ChainVerification
from tests import db_admin
from tests.browser import check, log_in
from tests.leak_reports import match

HISTORY = "/audit/"
INVENTORY = "/all-keys/inventory.csv"


def _seqs(response) -> list[int]:
    return [event.seq for event in response.context["page"].events]


def _rows(response) -> list[dict]:
    assert response.status_code == 200 and response.streaming
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def pipeline(alice, make_key):
    """alice's key, event 1."""
    return make_key(alice, name="Pipeline", apis=("risks", "kris"))[0]


@pytest.fixture
def reports(bob, make_key):
    """bob's key, event 2."""
    return make_key(bob, name="Reports")[0]


# --- where each person lands ------------------------------------------------------------------


def test_home_takes_an_auditor_to_the_audit_history(dave, login):
    assert login(dave).get("/").url == "/audit/"


@pytest.mark.parametrize("persona", ["alice", "carol"])
def test_home_keeps_staff_and_admins_on_their_api_keys(persona, request, login):
    assert login(request.getfixturevalue(persona)).get("/").url == "/keys/"


def test_an_auditor_who_logs_in_lands_on_the_audit_history(dave, client):
    response = client.post("/login/", {"username": "dave", "password": "dave-portal-pw"})
    assert response.url == "/audit/"


# --- filters: a key's name or the start of its identifier, part of a user name ------------------


def test_the_key_filter_takes_a_key_name_in_any_case(dave, login, pipeline, reports):
    assert _seqs(login(dave).get(HISTORY, {"key": "pIPELINE"})) == [1]


def test_the_key_filter_takes_the_start_of_an_identifier(dave, login, pipeline, reports):
    client = login(dave)
    assert _seqs(client.get(HISTORY, {"key": reports.identifier[:12]})) == [2]
    assert _seqs(client.get(HISTORY, {"key": reports.identifier})) == [2]
    assert _seqs(client.get(HISTORY, {"key": "ckid_"})) == [2, 1]


def test_an_identifier_prefix_in_another_case_finds_no_key(dave, login, pipeline):
    letter = next(i for i, c in enumerate(pipeline.identifier) if i > 4 and c.isalpha())
    prefix = pipeline.identifier[:letter] + pipeline.identifier[letter].swapcase()
    response = login(dave).get(HISTORY, {"key": prefix})
    assert response.status_code == 400
    assert response.context["form"].errors["key"] == ["No key with this name or identifier."]
    assert response.context["page"] is None


def test_the_user_filter_takes_part_of_a_name_in_any_case(dave, carol, login, pipeline, reports):
    actions.revoke_key(reports, actor=carol, reason="Contract ended")  # 3
    client = login(dave)
    assert _seqs(client.get(HISTORY, {"user": "LIC"})) == [1]  # alice
    assert _seqs(client.get(HISTORY, {"user": "o"})) == [3, 2]  # bob and carol


def test_a_user_filter_matching_too_many_people_asks_for_more_letters(dave, login, make_user):
    for number in range(101):
        make_user(f"tester{number:03}", "staff")
    response = login(dave).get(HISTORY, {"user": "tester"})
    assert response.status_code == 400
    assert response.context["form"].errors["user"] == [
        "More than 100 users match: type more of the name."
    ]
    assert _seqs(login(dave).get(HISTORY, {"user": "tester05"})) == []  # ten people, no events


def test_an_unknown_name_is_an_error_next_to_its_field(dave, login, pipeline):
    response = login(dave).get(HISTORY, {"key": "Nonexistent", "user": "zed"})
    assert response.status_code == 400
    assert 'id="id_key_error"' in response.text and 'id="id_user_error"' in response.text
    assert response.context["page"] is None


# --- date presets, in the portal's time zone ----------------------------------------------------

# 23:30 UTC on 15 January is 00:30 on the 16th in Europe/Amsterdam.
LATE_EVENING_UTC = datetime.datetime(2030, 1, 15, 23, 30, tzinfo=datetime.UTC)


def test_date_presets_are_days_in_the_portal_time_zone(dave, login):
    with time_machine.travel(LATE_EVENING_UTC, tick=False):
        page = login(dave).get(HISTORY, {"action": "key_created", "before": "9"})
    presets = {preset["label"]: preset["query"] for preset in page.context["presets"]}
    assert presets == {
        "Today": "action=key_created&date_from=2030-01-16&date_to=2030-01-16",
        "Last 7 days": "action=key_created&date_from=2030-01-10&date_to=2030-01-16",
        "This month": "action=key_created&date_from=2030-01-01&date_to=2030-01-16",
    }
    assert "Days in Europe/Amsterdam" in page.text
    assert 'href="?action=key_created&amp;date_from=2030-01-16&amp;date_to=2030-01-16"' in page.text


def test_the_last_7_days_preset_lists_the_events_of_those_days(dave, login):
    local = timezone.get_current_timezone()
    for days_ago in (7, 6, 0):
        moment = datetime.datetime(2030, 1, 16, 0, 10, tzinfo=local)
        audit.record(AuditEvent.Action.CATALOGUE_CHANGED, at=moment - datetime.timedelta(days_ago))
    with time_machine.travel(LATE_EVENING_UTC, tick=False):
        client = login(dave)
        (last_7_days,) = [p for p in client.get(HISTORY).context["presets"] if "7" in p["label"]]
        page = client.get(f"{HISTORY}?{last_7_days['query']}")
    assert _seqs(page) == [3, 2]
    assert 'aria-current="true">Last 7 days' in page.text


# --- the history table --------------------------------------------------------------------------


def test_the_history_shows_each_keys_name_beside_its_identifier(dave, login, pipeline, reports):
    text = login(dave).get(HISTORY).text
    assert f"<code>{pipeline.identifier}</code></a><br>Pipeline" in text
    assert f"<code>{reports.identifier}</code></a><br>Reports" in text


def _history_queries(client, params) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(HISTORY, params).status_code == 200
    return len(queries)


@pytest.mark.parametrize("params", [{}, {"key": "ckid_"}, {"user": "a"}])
def test_the_history_page_costs_the_same_queries_for_2_events_as_for_39_or_more(
    dave, alice, bob, carol, login, make_key, params
):
    client = login(dave)
    keys = [make_key(owner, name=f"Key {n}")[0] for n, owner in enumerate((alice, bob))]
    few = _history_queries(client, params)
    for n in range(38):
        audit.record(AuditEvent.Action.KEY_EDITED, key=keys[n % 2], actor=carol, details={})
    assert len(client.get(HISTORY, params).context["page"].events) >= 39
    assert _history_queries(client, params) == few


# --- the inventory CSV --------------------------------------------------------------------------

INVENTORY_COLUMNS = [
    "owner",
    "name",
    "identifier",
    "apis",
    "api_names",
    "read_only_apis",
    "allowed_ips",
    "created_utc",
    "expires_on",
    "status",
    "last_used_utc",
]


def test_all_keys_offers_the_inventory_with_its_filters(carol, login, pipeline):
    text = login(carol).get("/all-keys/", {"status": "active", "before": pipeline.identifier}).text
    assert 'href="/all-keys/inventory.csv?status=active"' in text
    assert "Export inventory (CSV)" in text


def test_the_inventory_has_one_row_per_key_times_in_utc(carol, login, pipeline, reports):
    actions.revoke_key(reports, actor=carol, reason="Contract ended")
    response = login(carol).get(INVENTORY)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="key-inventory-')
    assert "no-store" in response["Cache-Control"]
    rows = _rows(response)
    assert list(rows[0]) == INVENTORY_COLUMNS
    by_name = {row["name"]: row for row in rows}
    assert by_name["Pipeline"] == {
        "owner": "alice",
        "name": "Pipeline",
        "identifier": pipeline.identifier,
        "apis": "risks kris",
        "api_names": "Risks; Key risk indicators",
        "read_only_apis": "",
        "allowed_ips": "127.0.0.1",
        "created_utc": pipeline.created_at.astimezone(datetime.UTC).isoformat("T", "seconds"),
        "expires_on": pipeline.expires_on.isoformat(),
        "status": "active",
        "last_used_utc": "",
    }
    assert by_name["Pipeline"]["created_utc"].endswith("+00:00")
    assert (by_name["Reports"]["owner"], by_name["Reports"]["status"]) == ("bob", "revoked")


def test_the_inventory_follows_the_all_keys_filters(dave, login, pipeline, reports):
    assert [row["name"] for row in _rows(login(dave).get(INVENTORY, {"owner": "bob"}))] == [
        "Reports"
    ]


def test_a_bad_inventory_filter_is_an_error_next_to_its_field(dave, login):
    response = login(dave).get(INVENTORY, {"status": "nonsense"})
    assert response.status_code == 400
    assert not response.streaming
    assert "Select a valid choice" in response.context["form"].errors["status"][0]


def test_the_inventory_holds_no_hash_and_is_spreadsheet_safe(carol, login, alice, make_key):
    key, password = make_key(alice, name="=HYPERLINK(1)")
    text = b"".join(login(carol).get(INVENTORY).streaming_content).decode()
    assert "'=HYPERLINK(1)" in text
    assert key.password_hash not in text and "argon2" not in text and password not in text


def test_the_inventory_costs_the_same_queries_for_2_keys_as_for_30(
    carol, alice, bob, login, make_key
):
    client = login(carol)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            rows = _rows(client.get(INVENTORY))
        return len(captured), len(rows)

    make_key(alice, name="First")
    make_key(bob, name="Second")
    few, _ = queries()
    for n in range(28):
        make_key(alice if n % 2 else bob, name=f"Key {n}", networks=("10.0.0.0/24", "::1"))
    assert queries() == (few, 30)


# --- when the chain was last verified -----------------------------------------------------------


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


# --- the audit CSV says UTC ---------------------------------------------------------------------


def _check_csv(tmp_path, text: str) -> str:
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="utf-8")
    out = io.StringIO()
    call_command("verify_audit", csv=str(path), stdout=out)
    return out.getvalue().splitlines()[0]


def test_the_audit_csv_header_says_its_times_are_utc(dave, login, pipeline):
    text = b"".join(login(dave).get("/audit/export.csv").streaming_content).decode()
    header, row = text.splitlines()[:2]
    assert header.split(",")[:2] == ["seq", "at_utc"]
    assert row.split(",")[1].endswith("+00:00")


def test_verify_audit_still_accepts_an_older_export_whose_column_is_at(
    dave, login, pipeline, tmp_path
):
    text = b"".join(login(dave).get("/audit/export.csv").streaming_content).decode()
    assert _check_csv(tmp_path, text).startswith("OK: 1 events")
    older = text.replace("seq,at_utc,", "seq,at,", 1)
    assert _check_csv(tmp_path, older).startswith("OK: 1 events")
    with pytest.raises(CommandError, match="the columns are not"):
        _check_csv(tmp_path, text.replace("seq,at_utc,", "seq,when,", 1))


# --- breadcrumbs and mails ----------------------------------------------------------------------

NEXT = " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} "


def test_an_admin_on_someone_elses_key_sees_all_keys_and_the_owner_in_the_breadcrumbs(
    carol, alice, login, pipeline
):
    client = login(carol)
    crumbs = (
        f'<p class="breadcrumb"><a href="/all-keys/">All keys</a>{NEXT}'
        f'<a href="/all-keys/?owner=alice">alice</a>{NEXT}'
    )
    assert crumbs + "Pipeline</p>" in client.get(f"/keys/{pipeline.identifier}/").text
    assert crumbs in client.get(f"/keys/{pipeline.identifier}/revoke/").text
    own = login(alice).get(f"/keys/{pipeline.identifier}/").text
    assert f'<p class="breadcrumb"><a href="/keys/">API Keys</a>{NEXT}Pipeline</p>' in own


def test_the_expiry_reminder_names_the_apis(alice, make_key, today):
    make_key(alice, apis=("risks", "kris"), expires_on=today + datetime.timedelta(days=3))
    call_command("send_expiry_reminders", stdout=io.StringIO())
    (message,) = mail.outbox
    assert "Its APIs: Risks, Key risk indicators." in message.body


def test_the_leak_mail_names_the_apis(client, alice, make_key, scanner):
    _key, password = make_key(alice, apis=("kris",))
    scanner.post(client, [match(password, "https://example.com/leak")])
    (message,) = mail.outbox
    assert "Its APIs: Key risk indicators." in message.body


# --- the history showing a verification, checked by axe-core (tests/test_accessibility.py) ------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_history_showing_a_verification_has_no_axe_violation(browser, live_server, world):
    found: dict[str, list[str]] = {}
    page = browser.new_context().new_page()
    log_in(page, live_server.url, "dave")
    assert page.url == live_server.url + "/audit/"
    page.get_by_role("button", name="Verify now").click()
    page.wait_for_load_state("load")
    assert "The chain is intact:" in page.content()
    check(page, "audit-verified", found)
    audit.keep_verification(  # as a check that found the chain broken records it
        ChainVerification(
            by="manage.py verify_audit",
            intact=False,
            events=AuditEvent.objects.count(),
            broken_at=2,
            reason="its content does not match its hash",
        )
    )
    page.goto(live_server.url + HISTORY)
    check(page, "audit-verification-broken", found)
    page.context.close()
    assert found == {"audit-verified": [], "audit-verification-broken": []}
