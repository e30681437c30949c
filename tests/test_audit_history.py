"""Auditors and admins browse the whole audit history with filters, newest first, by seq."""

import datetime

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keys import actions
from keys.audit import chain as audit
from keys.models import AuditEvent

HISTORY = "/audit/"
Action = AuditEvent.Action


def _seqs(response) -> list[int]:
    return [event.seq for event in response.context["page"].events]


@pytest.fixture
def alice_key(alice, make_key):
    key, _ = make_key(alice, name="Alice's pipeline")
    return key


@pytest.fixture
def bob_key(bob, make_key):
    key, _ = make_key(bob, name="Bob's reports")
    return key


def _local(day: str, hour: int = 12) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.fromisoformat(f"{day}T{hour:02d}:00"))


# --- who may read it -------------------------------------------------------------------------


def test_auditor_reads_the_audit_history_newest_first(dave, login, alice_key, bob_key):
    response = login(dave).get(HISTORY)
    assert response.status_code == 200
    assert _seqs(response) == [2, 1]
    assert "Audit history" in response.text
    assert alice_key.identifier in response.text and bob_key.identifier in response.text


def test_admin_reads_the_audit_history(carol, login, alice_key):
    response = login(carol).get(HISTORY)
    assert response.status_code == 200
    assert _seqs(response) == [1]


def test_header_shows_audit_history_to_auditors_and_admins_only(alice, carol, dave, login):
    assert 'href="/audit/"' not in login(alice).get("/keys/").text
    assert 'href="/audit/"' in login(carol).get("/keys/").text
    assert 'href="/audit/"' in login(dave).get("/profile/").text


def test_audit_history_page_has_an_export_csv_link_with_the_filters(dave, login, alice):
    response = login(dave).get(HISTORY, {"user": "alice", "action": "key_created"})
    assert 'href="/audit/export.csv?user=alice&amp;action=key_created"' in response.text
    assert "Export CSV" in response.text


# --- filters ---------------------------------------------------------------------------------


def test_history_filters_by_key(dave, login, alice_key, bob_key):
    response = login(dave).get(HISTORY, {"key": bob_key.identifier})
    assert _seqs(response) == [2]


def test_history_filters_by_user_as_actor_or_owner(dave, carol, login, alice_key, bob_key):
    actions.revoke_key(bob_key, actor=carol, reason="Contract ended")  # seq 3
    client = login(dave)
    assert _seqs(client.get(HISTORY, {"user": "bob"})) == [3, 2]  # about bob's key
    assert _seqs(client.get(HISTORY, {"user": "carol"})) == [3]  # carol acted
    assert _seqs(client.get(HISTORY, {"user": "alice"})) == [1]


def test_an_event_by_and_about_a_user_is_listed_once(dave, login, alice, alice_key):
    actions.revoke_key(alice_key, actor=alice)
    assert _seqs(login(dave).get(HISTORY, {"user": "alice"})) == [2, 1]


def test_history_filters_by_action(dave, carol, login, alice_key, bob_key):
    actions.revoke_key(alice_key, actor=carol, reason="Leaked")
    response = login(dave).get(HISTORY, {"action": "key_revoked"})
    assert _seqs(response) == [3]


def test_history_filters_by_outcome(dave, login, alice_key):
    audit.record(
        Action.USE_DENIED,
        key=alice_key,
        actor_label=alice_key.identifier,
        details={"reason": "ip_not_allowed"},
    )
    client = login(dave)
    assert _seqs(client.get(HISTORY, {"outcome": "denied"})) == [2]
    assert _seqs(client.get(HISTORY, {"outcome": "success"})) == [1]
    assert _seqs(client.get(HISTORY, {"outcome": "success", "action": "use_denied"})) == []
    assert _seqs(client.get(HISTORY, {"outcome": "denied", "action": "use_denied"})) == [2]


def test_denied_use_shows_its_reason(dave, login, alice_key):
    audit.record(
        Action.USE_DENIED,
        key=alice_key,
        actor_label=alice_key.identifier,
        details={"reason": "ip_not_allowed"},
    )
    page = login(dave).get(HISTORY, {"outcome": "denied"})
    assert "Called from an address that is not in the allowed IPs." in page.text


def test_events_read_as_words_apis_by_name_and_yes_or_no(dave, login, alice, make_key):
    key, _ = make_key(alice, name="Words", apis=("risks", "kris"))
    actions.edit_key(
        key, actor=alice, name="Words", expires_on=key.expires_on, networks=["127.0.0.1"],
        apis=list(key.apis.filter(slug="risks")),
    )  # fmt: skip

    for page in (login(dave).get(HISTORY), login(alice).get(f"/keys/{key.identifier}/")):
        assert "APIs: Key risk indicators, Risks" in page.text  # created
        assert "APIs: Key risk indicators, Risks → Risks" in page.text  # edited
        assert "may rotate itself: no" in page.text
        assert "kris" not in page.text.replace(key.identifier, "")


def test_history_filters_by_date_range_in_the_portal_time_zone(dave, login, alice_key):
    for day in ("2030-01-10", "2030-01-11", "2030-01-12"):
        # 00:30 local time is still the previous day in UTC: the day is the portal's.
        audit.record(
            Action.CATALOGUE_CHANGED,
            at=_local(day, hour=0) + datetime.timedelta(minutes=30),
            details={"api": day},
        )
    client = login(dave)
    one_day = {"date_from": "2030-01-11", "date_to": "2030-01-11"}
    assert _seqs(client.get(HISTORY, one_day)) == [3]
    assert _seqs(client.get(HISTORY, {"date_from": "2030-01-11"})) == [4, 3]
    assert _seqs(client.get(HISTORY, {"date_to": "2030-01-11"})) == [3, 2, 1]
    assert _seqs(client.get(HISTORY, {"date_from": "2030-01-13"})) == []


def test_filters_combine(dave, carol, login, alice_key, bob_key):
    actions.revoke_key(alice_key, actor=carol, reason="Leaked")
    actions.revoke_key(bob_key, actor=carol, reason="Leaked")
    response = login(dave).get(HISTORY, {"user": "bob", "action": "key_revoked"})
    assert _seqs(response) == [4]


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


# --- date presets, in the portal's time zone -------------------------------------------------

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


# --- the history table -----------------------------------------------------------------------


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


# --- bad input: an error next to the field, never a 500 --------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"key": "ckid_nosuchkey"}, "key", "No key with this name or identifier."),
        ({"user": "nobody"}, "user", "No user with this name."),
        ({"action": "key_deleted"}, "action", "Select a valid choice."),
        ({"outcome": "maybe"}, "outcome", "Select a valid choice."),
        ({"date_from": "yesterday"}, "date_from", "Enter a valid date."),
        ({"date_from": "2030-02-02", "date_to": "2030-02-01"}, "date_to", "before the start"),
        ({"before": "-5"}, "before", "greater than or equal to 1"),
        ({"after": "x"}, "after", "Enter a whole number."),
    ],
)
def test_bad_filter_input_is_an_error_next_to_its_field(dave, login, params, field, message):
    response = login(dave).get(HISTORY, params)
    assert response.status_code == 400
    assert any(message in error for error in response.context["form"].errors[field])
    assert response.context["page"] is None


@pytest.mark.parametrize(
    ("field", "day"),
    [
        ("date_from", "0001-01-01"),
        ("date_to", "9999-12-31"),
        ("date_from", "1999-12-31"),
        ("date_to", "9001-01-01"),
    ],
)
def test_a_date_at_the_end_of_the_calendar_is_an_error_next_to_its_field(
    dave, login, alice_key, field, day
):
    response = login(dave).get(HISTORY, {field: day})
    assert response.status_code == 400
    assert response.context["form"].errors[field] == [
        "Enter a date between 2000-01-01 and 9000-12-31."
    ]


def test_the_first_and_last_allowed_dates_filter_normally(dave, login, alice_key):
    response = login(dave).get(HISTORY, {"date_from": "2000-01-01", "date_to": "9000-12-31"})
    assert response.status_code == 200
    assert _seqs(response) == [1]


def test_older_and_newer_together_are_refused(dave, login):
    response = login(dave).get(HISTORY, {"before": "10", "after": "5"})
    assert response.status_code == 400
    assert "not both" in response.text


def test_a_user_filter_error_stands_next_to_the_user_field(dave, login):
    response = login(dave).get(HISTORY, {"user": "nobody"})
    assert 'id="id_user_error"' in response.text
    assert 'aria-describedby="id_user_helptext id_user_error"' in response.text


# --- keyset pagination -----------------------------------------------------------------------


@pytest.fixture
def many_events(db):
    for number in range(1, 121):
        audit.record(Action.CATALOGUE_CHANGED, details={"n": number})


def test_the_first_page_shows_the_newest_fifty_and_links_to_older(dave, login, many_events):
    page = login(dave).get(HISTORY).context["page"]
    assert [e.seq for e in page.events] == list(range(120, 70, -1))
    assert page.older == 71
    assert page.newer is None


def test_older_pages_are_cut_by_seq(dave, login, many_events):
    client = login(dave)
    second = client.get(HISTORY, {"before": 71}).context["page"]
    assert [e.seq for e in second.events] == list(range(70, 20, -1))
    assert (second.older, second.newer) == (21, 70)
    last = client.get(HISTORY, {"before": 21}).context["page"]
    assert [e.seq for e in last.events] == list(range(20, 0, -1))
    assert (last.older, last.newer) == (None, 20)


def test_newer_pages_go_back_towards_the_newest(dave, login, many_events):
    client = login(dave)
    page = client.get(HISTORY, {"after": 20}).context["page"]
    assert [e.seq for e in page.events] == list(range(70, 20, -1))
    assert (page.older, page.newer) == (21, 70)
    top = client.get(HISTORY, {"after": 70}).context["page"]
    assert [e.seq for e in top.events] == list(range(120, 70, -1))
    assert (top.older, top.newer) == (71, None)


def test_page_links_keep_the_filters(dave, login, many_events):
    response = login(dave).get(HISTORY, {"action": "catalogue_changed", "before": 71})
    assert 'href="?action=catalogue_changed&amp;before=21"' in response.text
    assert 'href="?action=catalogue_changed&amp;after=70"' in response.text


def test_a_history_of_one_page_has_no_empty_pages_landmark(dave, login, alice_key):
    assert 'aria-label="Pages"' not in login(dave).get(HISTORY).text


def test_a_history_of_more_pages_has_its_pages_landmark(dave, login, many_events):
    client = login(dave)
    first = client.get(HISTORY).text
    assert '<nav class="pager" aria-label="Pages">' in first and ">Older →</a>" in first
    last = client.get(HISTORY, {"before": 21}).text
    assert '<nav class="pager" aria-label="Pages">' in last and ">← Newer</a>" in last


def test_pages_of_a_filter_are_cut_by_seq_too(dave, login, alice_key):
    for _ in range(60):
        audit.record(Action.USE_DENIED, key=alice_key, details={"reason": "wrong_password"})
    client = login(dave)
    first = client.get(HISTORY, {"outcome": "denied"}).context["page"]
    assert len(first.events) == 50 and first.older == 12
    rest = client.get(HISTORY, {"outcome": "denied", "before": 12}).context["page"]
    assert [e.seq for e in rest.events] == list(range(11, 1, -1))
    assert rest.older is None


# --- the key page's timeline -----------------------------------------------------------------


def test_key_page_shows_its_timeline_to_an_auditor(dave, carol, login, alice, alice_key):
    actions.edit_key(
        alice_key,
        actor=alice,
        name="Renamed pipeline",
        expires_on=alice_key.expires_on - datetime.timedelta(days=10),
        networks=["127.0.0.1"],
        apis=list(alice_key.apis.all()),
    )
    actions.revoke_key(alice_key, actor=carol, reason="Rotated after an incident")
    response = login(dave).get(f"/keys/{alice_key.identifier}/")
    assert response.status_code == 200
    text = response.text
    assert "Key created" in text and "Key edited" in text and "Expiry shortened" in text
    assert "name: Alice&#x27;s pipeline → Renamed pipeline" in text
    assert "Key revoked</strong> by carol" in text and "Rotated after an incident" in text
    assert f'href="/audit/?key={alice_key.identifier}"' in text


def test_owner_sees_the_timeline_but_no_audit_history_link(alice, login, alice_key):
    response = login(alice).get(f"/keys/{alice_key.identifier}/")
    assert "Key created" in response.text
    assert "/audit/" not in response.text
