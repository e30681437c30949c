"""Use and refusals of a key are recorded, cheaply, and shown on the key's page."""

import datetime
import zoneinfo

import pytest
import time_machine

from keys import actions, tokens
from keys.models import ApiKey, AuditEvent, KeyCaller, KeyUsageDay
from tests.api_calls import call

TZ = zoneinfo.ZoneInfo("Europe/Amsterdam")
RISKS = "/api/v1/risks/"
DENIED = AuditEvent.Action.USE_DENIED
NOON = datetime.datetime(2027, 3, 10, 12, 0, 0, tzinfo=TZ)


@pytest.fixture
def clock():
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


@pytest.fixture
def key(alice, make_key, clock):
    return make_key(alice, networks=("127.0.0.1", "::1"))


def use(client, key, path=RISKS, **extra):
    return call(client, path, key[0].identifier, key[1], **extra)


def later(clock, seconds: float) -> None:
    clock.shift(datetime.timedelta(seconds=seconds))


def uses_per_day(key) -> dict[datetime.date, int]:
    return dict(KeyUsageDay.objects.filter(key=key[0]).values_list("day", "uses"))


def refusals(key) -> list[dict]:
    events = AuditEvent.objects.filter(key=key[0], action=DENIED).order_by("seq")
    return [event.details for event in events]


# --- successful calls ---------------------------------------------------------------------------


def test_the_first_call_records_last_use_and_the_days_count(client, key):
    assert use(client, key).status_code == 200

    stored = ApiKey.objects.get(pk=key[0].pk)
    assert stored.last_used_at == NOON
    assert stored.last_used_ip == "127.0.0.1"
    assert uses_per_day(key) == {NOON.date(): 1}


def test_the_last_use_is_written_at_most_once_a_minute(client, key, clock):
    use(client, key)
    later(clock, 30)
    use(client, key, REMOTE_ADDR="::1")
    assert ApiKey.objects.get(pk=key[0].pk).last_used_ip == "127.0.0.1"

    later(clock, 31)  # 61 s after the first write
    use(client, key, REMOTE_ADDR="::1")
    stored = ApiKey.objects.get(pk=key[0].pk)
    assert stored.last_used_at == NOON + datetime.timedelta(seconds=61)
    assert stored.last_used_ip == "::1"
    assert uses_per_day(key) == {NOON.date(): 3}


def test_calls_around_midnight_are_counted_on_their_own_days(client, key, clock):
    clock.move_to(NOON.replace(hour=23, minute=59, second=30))
    use(client, key)
    use(client, key)
    clock.move_to(NOON.replace(hour=23, minute=59, second=59))
    use(client, key)
    later(clock, 61)
    use(client, key)

    assert uses_per_day(key) == {NOON.date(): 3, NOON.date() + datetime.timedelta(1): 1}


def uses_recorded(key) -> list[dict]:
    events = AuditEvent.objects.filter(key=key[0], action=AuditEvent.Action.KEY_USED)
    return [event.details for event in events.order_by("seq")]


def test_the_first_call_from_an_address_reaches_the_history(client, alice, key):
    assert use(client, key).status_code == 200

    event = AuditEvent.objects.get(action=AuditEvent.Action.KEY_USED)
    assert event.key == key[0] and event.owner == alice and event.actor is None
    assert event.actor_label == f"api:{key[0].identifier}"
    assert event.actor_ip == "127.0.0.1" and event.at == NOON
    assert event.details == {"first_call_from": "127.0.0.1", "day": "2027-03-10"}


def test_the_history_grows_with_addresses_and_days_not_with_calls(client, key, clock):
    for _ in range(30):
        use(client, key)
        later(clock, 7)
    use(client, key, REMOTE_ADDR="::1")
    assert uses_recorded(key) == [
        {"first_call_from": "127.0.0.1", "day": "2027-03-10"},
        {"first_call_from": "::1", "day": "2027-03-10"},
    ]
    assert uses_per_day(key) == {NOON.date(): 31}


def test_a_finished_day_reaches_the_history_once_with_its_count(client, key, clock):
    for _ in range(3):
        use(client, key)
    clock.move_to(NOON + datetime.timedelta(days=1))
    use(client, key)
    later(clock, 120)
    use(client, key)

    assert uses_recorded(key) == [
        {"first_call_from": "127.0.0.1", "day": "2027-03-10"},
        {"uses": 3, "day": "2027-03-10"},
    ]
    assert uses_per_day(key) == {NOON.date(): 3, NOON.date() + datetime.timedelta(1): 2}


def test_key_used_events_keep_the_chain_intact(client, key, clock):
    from keys.audit.chain import verify_chain

    for day in range(3):
        use(client, key, REMOTE_ADDR="::1" if day == 1 else "127.0.0.1")
        later(clock, 24 * 3600)
    use(client, key)
    assert len(uses_recorded(key)) == 5  # two addresses, three finished days
    assert list(verify_chain()) == []


def test_calls_from_many_addresses_are_each_counted(client, alice, make_key, clock):
    key = make_key(alice, networks=("10.1.2.0/24",))
    for host in range(1, 101):  # more addresses than a fresh journal has room for
        assert use(client, key, REMOTE_ADDR=f"10.1.2.{host}").status_code == 200
        later(clock, 1)

    assert uses_per_day(key) == {NOON.date(): 100}
    callers = KeyCaller.objects.filter(key=key[0], refused=False)
    assert callers.count() == 100 and {c.calls for c in callers} == {1}
    assert len(uses_recorded(key)) == 100  # each a first call from its address


def test_counts_the_database_refused_are_stored_by_the_next_flush(client, key, clock):
    from django.db import connection

    use(client, key)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER usage_refused BEFORE UPDATE ON keys_keyusageday "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION usage_refused() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER usage_refused BEFORE UPDATE ON keys_keyusageday "
                "FOR EACH ROW EXECUTE FUNCTION usage_refused()"
            )
    for _ in range(3):
        later(clock, 1)
        assert use(client, key).status_code == 200  # the caller never notices
    assert uses_per_day(key) == {NOON.date(): 1}

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER usage_refused")
        else:
            cursor.execute("DROP TRIGGER usage_refused ON keys_keyusageday")
    later(clock, 1)
    use(client, key)
    assert uses_per_day(key) == {NOON.date(): 5}


# --- refused calls ----------------------------------------------------------------------------


def test_each_refusal_of_a_known_key_is_recorded_with_its_reason(
    client, alice, key, make_key, settings, clock
):
    identifier = key[0].identifier
    use(client, key, REMOTE_ADDR="192.0.2.1")
    call(client, RISKS, identifier, tokens.generate_password(identifier))
    use(client, key, "/api/v1/findings/")

    events = AuditEvent.objects.filter(key=key[0], action=DENIED).order_by("seq")
    # Only the last caller proved the password: the identifier alone names nobody.
    assert [event.actor_label for event in events] == [
        "unauthenticated caller",
        "unauthenticated caller",
        f"api:{identifier}",
    ]
    assert events[0].actor_ip == "192.0.2.1"
    assert refusals(key) == [
        {"reason": "ip_not_allowed", "path": RISKS, "count": 1},
        {"reason": "bad_password", "path": RISKS, "count": 1},
        {"reason": "api_not_granted", "path": "/api/v1/findings/", "count": 1},
    ]


def test_a_revoked_key_and_an_expired_key_are_recorded_as_such(client, alice, make_key, clock):
    revoked = make_key(alice, name="Revoked")
    actions.revoke_key(revoked[0], actor=alice)
    expired = make_key(alice, name="Expired", expires_on=NOON.date())
    later(clock, 24 * 3600)

    use(client, revoked)
    use(client, expired)

    assert [e["reason"] for e in refusals(revoked)] == ["revoked"]
    assert [e["reason"] for e in refusals(expired)] == ["expired"]


def test_a_throttled_call_of_a_known_key_is_recorded(client, key, settings):
    settings.KEYS_THROTTLE_MAX_FAILURES_PER_IP = 1
    made_up = tokens.generate_identifier()
    call(client, RISKS, made_up, tokens.generate_password(made_up))  # a failure from this IP
    assert use(client, key).status_code == 429
    assert refusals(key) == [{"reason": "throttled", "path": RISKS, "count": 1}]


def test_a_flood_of_refusals_is_recorded_at_once_and_then_exactly_each_minute(client, key, clock):
    wrong = tokens.generate_password(key[0].identifier)
    for _ in range(15):
        call(client, RISKS, key[0].identifier, wrong)
        later(clock, 1)
    assert refusals(key) == [{"reason": "bad_password", "path": RISKS, "count": 1}]

    later(clock, 60)  # the window is over: the next flush records the rest
    use(client, key)
    assert refusals(key) == [
        {"reason": "bad_password", "path": RISKS, "count": 1},
        {"reason": "bad_password", "path": RISKS, "count": 14},
    ]


def test_refusals_are_aggregated_per_reason(client, key):
    use(client, key)  # proved first: every refusal below is the key's own (one actor)
    for _ in range(3):
        use(client, key, REMOTE_ADDR="192.0.2.1")
        use(client, key, "/api/v1/findings/")
    assert sorted(e["reason"] for e in refusals(key)) == ["api_not_granted", "ip_not_allowed"]


def test_refusals_of_unknown_identifiers_are_not_recorded(client, key):
    before = AuditEvent.objects.count()
    made_up = tokens.generate_identifier()
    call(client, RISKS, made_up, tokens.generate_password(made_up))
    client.get(RISKS, HTTP_AUTHORIZATION="Basic Z2FyYmFnZQ==")
    assert AuditEvent.objects.count() == before


def test_the_refusal_record_keeps_the_chain_intact(client, key, clock):
    from keys.audit.chain import verify_chain

    use(client, key, REMOTE_ADDR="192.0.2.1")
    later(clock, 61)
    use(client, key, REMOTE_ADDR="192.0.2.1")
    assert list(verify_chain()) == []


# --- shown on the key's page ------------------------------------------------------------------


@pytest.fixture
def refused_and_used(client, key, clock):
    use(client, key)
    use(client, key, REMOTE_ADDR="192.0.2.1")
    use(client, key, "/api/v1/findings/")
    return key


@pytest.mark.parametrize("persona", ["alice", "carol", "dave"])
def test_the_owner_admins_and_auditors_see_why_calls_were_refused(
    request, login, refused_and_used, persona
):
    page = login(request.getfixturevalue(persona)).get(f"/keys/{refused_and_used[0].identifier}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Called from an address that is not in the allowed IPs." in html  # words, not codes
    assert "The key is not granted the API it called." in html
    assert "ip_not_allowed" not in html
    assert "192.0.2.1" in html
    assert "/api/v1/findings/" in html


def test_the_key_page_keeps_the_refusals_of_each_path_apart(alice, client, login, key, clock):
    use(client, key, "/api/v1/risks/", REMOTE_ADDR="192.0.2.1")
    use(client, key, "/api/v1/findings/")  # not granted
    later(clock, 61)
    use(client, key, "/api/v1/findings/")
    use(client, key, "/api/v1/controls/", REMOTE_ADDR="192.0.2.7")
    html = login(alice).get(f"/keys/{key[0].identifier}/").content.decode()

    tables = html.split("<caption>")[1:]
    captions = [table.split("</caption>")[0] for table in tables]
    assert captions == [
        "<code>/api/v1/controls/</code>: 1 refused call",
        "<code>/api/v1/findings/</code>: 2 refused calls",
        "<code>/api/v1/risks/</code>: 1 refused call",
    ]
    controls, findings, risks = (table.split("</table>")[0] for table in tables)
    assert "192.0.2.7" in controls and "not in the allowed IPs" in controls
    assert findings.count("not granted the API") == 2 and "192.0.2" not in findings
    assert "192.0.2.1" in risks and "not granted" not in risks


def test_another_staff_member_cannot_see_the_refusals(bob, login, refused_and_used):
    page = login(bob).get(f"/keys/{refused_and_used[0].identifier}/")
    assert page.status_code == 404


def test_the_owner_sees_the_last_use_and_the_days_count(alice, login, refused_and_used):
    html = login(alice).get(f"/keys/{refused_and_used[0].identifier}/").content.decode()
    assert "2027-03-10 12:00 CET from <code>127.0.0.1</code>" in html  # every time says its zone
    assert "<td>2027-03-10</td><td>1</td>" in html
