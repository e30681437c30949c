"""Keys outlive their year without downtime (docs/design.md §8): regenerate, renew, self-rotation.

Driven as their users drive them: the owner through the key's pages, automation through
POST /api/v1/self/rotate, callers through HTTP Basic. Time moves with time_machine.
"""

import datetime
import json
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from keys.models import ApiKey, AuditEvent, KeyUsageDay
from tests.api_calls import basic, call

WHOAMI = "/api/v1/whoami"


@pytest.fixture
def key(alice, make_key):
    return make_key(alice, name="Nightly export", apis=("risks", "controls"))


def status(identifier: str, password: str) -> int:
    return call(Client(), WHOAMI, identifier, password).status_code


def new_password_on(page) -> str:
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    return page.context["password"]


def later(time_machine, **delta) -> None:
    time_machine.move_to(datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(**delta))


# --- regenerate -------------------------------------------------------------------------------


def test_regenerating_keeps_the_identifier_and_shows_a_new_password_once(alice, login, key):
    old_key, old_password = key
    page = login(alice).post(f"/keys/{old_key.identifier}/regenerate/", {"overlap": "none"})
    password = new_password_on(page)

    assert password != old_password and old_key.identifier in page.text
    assert status(old_key.identifier, password) == 200
    assert status(old_key.identifier, old_password) == 401  # no overlap: at once
    again = login(alice).get(f"/keys/{old_key.identifier}/")
    assert password not in again.text
    event = AuditEvent.objects.get(action="password_regenerated")
    assert event.actor == alice and event.details["overlap_seconds"] == 0


def test_the_old_password_works_for_the_overlap_and_then_never(alice, login, key, time_machine):
    time_machine.move_to(datetime.datetime.now(tz=datetime.UTC), tick=False)
    old_key, old_password = key
    assert status(old_key.identifier, old_password) == 200  # remembered by the cache
    page = login(alice).post(f"/keys/{old_key.identifier}/regenerate/", {"overlap": "1 hour"})
    password = new_password_on(page)
    assert "previous password keeps working until" in page.text

    later(time_machine, minutes=59)
    assert status(old_key.identifier, old_password) == 200
    assert status(old_key.identifier, password) == 200
    detail = login(alice).get(f"/keys/{old_key.identifier}/").text
    assert "Previous password valid until" in detail

    later(time_machine, minutes=2)  # the cache still remembers it: it must not count
    assert status(old_key.identifier, old_password) == 401
    assert status(old_key.identifier, password) == 200
    denied = AuditEvent.objects.filter(key=old_key, action="use_denied").latest("seq")
    assert denied.details["reason"] == "bad_password"

    call_command("revoke_replaced_keys")  # also run once a minute by every app server
    old_key.refresh_from_db()
    assert old_key.previous_password_hash == "" and old_key.previous_password_valid_until is None
    assert AuditEvent.objects.filter(key=old_key, action="previous_password_ended").count() == 1


def test_a_revoked_key_cannot_be_regenerated(alice, login, key):
    login(alice).post(f"/keys/{key[0].identifier}/revoke/", {})
    response = login(alice).post(f"/keys/{key[0].identifier}/regenerate/", {"overlap": "none"})
    assert response.status_code == 403
    assert status(key[0].identifier, key[1]) == 401
    assert not AuditEvent.objects.filter(action="password_regenerated").exists()


def test_a_key_revoked_while_its_old_password_works_leaves_nothing_for_the_overlap_end(
    alice, login, key, make_key, time_machine
):
    time_machine.move_to(datetime.datetime.now(tz=datetime.UTC), tick=False)
    leaked, _ = key
    other, other_password = make_key(alice, name="Other")
    client = login(alice)
    client.post(f"/keys/{leaked.identifier}/regenerate/", {"overlap": "1 hour"})
    client.post(f"/keys/{leaked.identifier}/revoke/", {})
    later(time_machine, hours=1, minutes=1)
    # The next flush of use counts ends overlaps: a revoked key must not make it fail.
    assert status(other.identifier, other_password) == 200
    assert KeyUsageDay.objects.get(key=other).uses == 1
    leaked.refresh_from_db()
    assert leaked.previous_password_hash == "" and leaked.previous_password_valid_until is None


# --- renew ---------------------------------------------------------------------------------


def test_renewing_makes_a_new_key_with_the_same_settings(alice, login, key, today):
    old, old_password = key
    expires = (today + datetime.timedelta(days=200)).isoformat()
    page = login(alice).post(
        f"/keys/{old.identifier}/renew/", {"expires_on": expires, "overlap_days": "7"}
    )
    password = new_password_on(page)
    new = page.context["key"]

    assert new.identifier != old.identifier and new.name == old.name
    assert sorted(new.apis.values_list("slug", flat=True)) == ["controls", "risks"]
    assert list(new.allowed_ips.values_list("network", flat=True)) == ["127.0.0.1/32"]
    assert status(new.identifier, password) == 200
    assert status(old.identifier, old_password) == 200  # the overlap runs
    old_page = login(alice).get(f"/keys/{old.identifier}/").text
    new_page = login(alice).get(f"/keys/{new.identifier}/").text
    assert f'Replaced by <a href="/keys/{new.identifier}/">' in old_page
    assert f"/keys/{old.identifier}/" in new_page and "Renews" in new_page
    renewed = AuditEvent.objects.get(action="key_renewed")
    assert renewed.key == old and renewed.details["replaced_by"] == new.identifier
    created = AuditEvent.objects.filter(action="key_created").latest("seq")
    assert created.details["replaces"] == old.identifier


def test_the_replaced_key_is_revoked_when_the_overlap_ends(alice, login, key, time_machine):
    old, old_password = key
    page = login(alice).post(
        f"/keys/{old.identifier}/renew/",
        {"expires_on": old.expires_on.isoformat(), "overlap_days": "3"},
    )
    new = page.context["key"]
    later(time_machine, days=3, minutes=1)

    assert status(old.identifier, old_password) == 401  # no command had to run for this
    assert ApiKey.objects.get(pk=old.pk).status() == ApiKey.Status.REVOKED
    call_command("revoke_replaced_keys")
    old.refresh_from_db()
    assert old.revoked_at == old.revoke_at and old.revoked_by is None
    assert old.revoke_reason == f"replaced by {new.identifier}"


def test_the_key_page_says_in_one_line_each_what_regenerate_and_renew_do_and_when(
    alice, login, key
):
    identifier = key[0].identifier
    client = login(alice)
    page = client.get(f"/keys/{identifier}/").text
    assert "<strong>Regenerate password</strong> keeps this key and its identifier" in page
    assert "pick it when the password leaked or is due for rotation" in page
    assert "<strong>Renew</strong> makes a new key with these settings" in page
    assert "pick it when this key is about to expire" in page
    regenerate = client.get(f"/keys/{identifier}/regenerate/").text
    assert "Pick this when the password leaked" in regenerate
    assert f'href="/keys/{identifier}/renew/">renew the key</a> instead' in regenerate
    renew = client.get(f"/keys/{identifier}/renew/").text
    assert "Pick this when the key is about to expire" in renew
    assert f'href="/keys/{identifier}/regenerate/">regenerate the password</a>' in renew


def test_a_key_being_replaced_offers_neither_and_lists_read_replaced_until_when(
    alice, carol, login, key
):
    from keys.templatetags.key_rules import moment

    old = key[0]
    client = login(alice)
    client.post(
        f"/keys/{old.identifier}/renew/",
        {"expires_on": old.expires_on.isoformat(), "overlap_days": "7"},
    )
    old.refresh_from_db()
    stops = f"Replaced, stops {moment(old.revoke_at)}"

    old_page = client.get(f"/keys/{old.identifier}/").text
    assert f"/keys/{old.identifier}/regenerate/" not in old_page
    assert f"/keys/{old.identifier}/renew/" not in old_page
    assert "Pick it when" not in old_page and stops in old_page
    refused = client.get(f"/keys/{old.identifier}/regenerate/", follow=True)
    assert "This key is being replaced: regenerate the new key" in refused.text
    regenerate = client.post(f"/keys/{old.identifier}/regenerate/", {"overlap": "none"})
    assert regenerate.status_code == 302
    assert not AuditEvent.objects.filter(action="password_regenerated").exists()

    rows = client.get("/keys/").text.split("<tr>")[2:]  # after the header row
    old_row = next(row for row in rows if old.identifier in row)
    new_row = next(row for row in rows if old.identifier not in row)
    assert stops in old_row and ">Active<" not in old_row
    assert ">Active<" in new_row
    all_keys = login(carol).get("/all-keys/").text
    assert stops in all_keys


def test_the_overlap_never_outlasts_the_old_keys_expiry(alice, login, make_key, today):
    old, _ = make_key(alice, name="Short", expires_on=today + datetime.timedelta(days=2))
    login(alice).post(
        f"/keys/{old.identifier}/renew/",
        {"expires_on": (today + datetime.timedelta(days=300)).isoformat(), "overlap_days": "30"},
    )
    old.refresh_from_db()
    end_of_expiry = datetime.datetime.combine(today + datetime.timedelta(days=3), datetime.time())
    assert old.revoke_at.astimezone(end_of_expiry.tzinfo).replace(tzinfo=None) <= end_of_expiry


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"overlap_days": "31"}, "overlap_days", "less than or equal to 30"),
        ({"overlap_days": "1", "expires_on": "2999-01-01"}, "expires_on", "at most one year"),
    ],
)
def test_a_renewal_out_of_bounds_is_an_error_next_to_its_field(
    alice, login, key, today, fields, field, says
):
    data = {"expires_on": today.isoformat(), **fields}
    page = login(alice).post(f"/keys/{key[0].identifier}/renew/", data)
    assert page.status_code == 200
    assert says in " ".join(page.context["form"].errors[field])
    assert ApiKey.objects.count() == 1


# --- self-rotation -------------------------------------------------------------------------------


def rotate(identifier: str, password: str, body=None, ip="127.0.0.1"):
    return Client().post(
        "/api/v1/self/rotate",
        data=json.dumps(body) if body is not None else "",
        content_type="application/json",
        HTTP_AUTHORIZATION=basic(identifier, password),
        REMOTE_ADDR=ip,
    )


def test_a_key_without_the_option_may_not_rotate_itself(key):
    response = rotate(key[0].identifier, key[1])
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert status(key[0].identifier, key[1]) == 200  # its password is unchanged


def test_a_key_with_the_option_rotates_itself(alice, make_key, time_machine):
    time_machine.move_to(datetime.datetime.now(tz=datetime.UTC), tick=False)
    key, old_password = make_key(alice, name="Robot", may_rotate_itself=True)
    response = rotate(key.identifier, old_password, {"overlap_seconds": 600})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    answer = response.json()
    assert answer["identifier"] == key.identifier and answer["password"] != old_password

    assert status(key.identifier, answer["password"]) == 200
    assert status(key.identifier, old_password) == 200
    later(time_machine, seconds=601)
    assert status(key.identifier, old_password) == 401
    event = AuditEvent.objects.get(action="password_regenerated")
    assert event.actor is None and event.actor_label == f"api:{key.identifier}"
    assert event.actor_ip == "127.0.0.1" and event.details["by"] == "the key itself"


@pytest.mark.parametrize(
    "body", [{"overlap_seconds": 86401}, {"overlap_seconds": -1}, {"overlap_seconds": "1h"}, [1]]
)
def test_self_rotation_refuses_an_overlap_past_24_hours_or_malformed(alice, make_key, body):
    key, password = make_key(alice, name="Robot", may_rotate_itself=True)
    response = rotate(key.identifier, password, body)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert status(key.identifier, password) == 200


def test_self_rotation_needs_the_keys_own_valid_credentials(alice, make_key):
    key, password = make_key(alice, name="Robot", may_rotate_itself=True)
    _other, other_password = make_key(alice, name="Other")
    assert rotate(key.identifier, other_password).status_code == 401
    assert rotate(key.identifier, password, ip="192.0.2.1").status_code == 401
    assert status(key.identifier, password) == 200


# --- least privilege from what the door sees ------------------------------------------------


def test_a_refused_address_is_listed_and_allowed_with_one_click(alice, login, key):
    identifier, password = key[0].identifier, key[1]
    assert status(identifier, password) == 200  # proved from an allowed address first
    for _ in range(3):
        assert (
            call(Client(), WHOAMI, identifier, password, REMOTE_ADDR="192.0.2.44").status_code
            == 401
        )
    page = login(alice).get(f"/keys/{identifier}/")
    refused = page.context["refused_addresses"]
    assert [(caller.ip, caller.calls, wider) for caller, wider in refused] == [
        ("192.0.2.44", 3, "192.0.2.0/24")
    ]
    assert "Allow this address" in page.text

    login(alice).post(f"/keys/{identifier}/allow/", {"network": "192.0.2.0/24"})
    assert call(Client(), WHOAMI, identifier, password, REMOTE_ADDR="192.0.2.44").status_code == 200
    edited = AuditEvent.objects.filter(key=key[0], action="key_edited").latest("seq")
    assert edited.actor == alice
    assert edited.details["allowed_ips"]["after"] == ["127.0.0.1", "192.0.2.0/24"]


def test_allowing_a_catch_all_through_the_button_is_refused_by_the_key_rules(alice, login, key):
    page = login(alice).post(f"/keys/{key[0].identifier}/allow/", {"network": "0.0.0.0/0"})
    assert page.status_code == 302
    messages = [str(m) for m in login(alice).get(page.url).context["messages"]]
    assert any("too wide" in m for m in messages)
    assert list(key[0].allowed_ips.values_list("network", flat=True)) == ["127.0.0.1/32"]


def test_entries_and_apis_unused_for_90_days_are_marked_and_removed_with_one_click(
    alice, login, make_key, time_machine
):
    time_machine.move_to(datetime.datetime.now(tz=datetime.UTC), tick=False)
    key, password = make_key(
        alice, name="Old", networks=("127.0.0.1", "198.51.100.0/24"), apis=("risks", "kris")
    )
    later(time_machine, days=91)
    assert status(key.identifier, password) == 200  # from 127.0.0.1, whoami
    assert call(Client(), "/api/v1/risks/", key.identifier, password).status_code == 200

    page = login(alice).get(f"/keys/{key.identifier}/")
    assert page.context["unused_networks"] == ["198.51.100.0/24"]
    assert [api.slug for api in page.context["unused_apis"]] == ["kris"]

    login(alice).post(f"/keys/{key.identifier}/remove-ip/", {"network": "198.51.100.0/24"})
    login(alice).post(f"/keys/{key.identifier}/remove-api/", {"api": "kris"})
    assert list(key.allowed_ips.values_list("network", flat=True)) == ["127.0.0.1/32"]
    assert list(key.apis.values_list("slug", flat=True)) == ["risks"]
    assert AuditEvent.objects.filter(key=key, action="key_edited").count() == 2


def test_a_young_key_has_nothing_marked_unused(alice, login, key):
    page = login(alice).get(f"/keys/{key[0].identifier}/")
    assert page.context["unused_networks"] == [] and page.context["unused_apis"] == []


def test_an_unused_single_address_reads_as_on_the_rest_of_the_page(
    alice, login, make_key, time_machine
):
    time_machine.move_to(datetime.datetime.now(tz=datetime.UTC), tick=False)
    key, password = make_key(alice, name="Bare", networks=("127.0.0.1", "192.0.2.7"))
    later(time_machine, days=91)
    assert status(key.identifier, password) == 200  # from 127.0.0.1

    page = login(alice).get(f"/keys/{key.identifier}/")

    assert "Allowed IP <code>192.0.2.7</code>" in page.text  # not 192.0.2.7/32
    assert "Remove 192.0.2.7</button>" in page.text


def suggested(page) -> list[str]:
    """The names of the rows of the key list marked with Suggestions."""
    rows = page.text.split("<tr>")[2:]
    return sorted(
        re.search(r">([^<]+)</a>", row).group(1)
        for row in rows
        if "#least-privilege" in row and ">Suggestions<" in row
    )


def test_the_key_list_says_how_many_keys_have_suggestions_and_marks_them(
    alice, login, make_key, time_machine
):
    time_machine.move_to(datetime.datetime.now(tz=datetime.UTC), tick=False)
    used_in_full, used_password = make_key(alice, name="Used in full", apis=("risks",))
    unused_api, unused_password = make_key(alice, name="Unused API", apis=("risks", "kris"))
    later(time_machine, days=91)
    for key, password in ((used_in_full, used_password), (unused_api, unused_password)):
        assert call(Client(), "/api/v1/risks/", key.identifier, password).status_code == 200
    refused, refused_password = make_key(alice, name="Refused")
    call(Client(), WHOAMI, refused.identifier, refused_password, REMOTE_ADDR="192.0.2.44")
    gone, gone_password = make_key(alice, name="Revoked")
    call(Client(), WHOAMI, gone.identifier, gone_password, REMOTE_ADDR="192.0.2.45")
    login(alice).post(f"/keys/{gone.identifier}/revoke/", {})
    make_key(alice, name="Young")

    page = login(alice).get("/keys/")
    assert "2 keys have suggestions for allowing less" in page.text
    assert suggested(page) == ["Refused", "Unused API"]
    detail = login(alice).get(f"/keys/{unused_api.identifier}/").text
    assert '<h2 id="least-privilege">Least privilege</h2>' in detail
    login(alice).post(f"/keys/{unused_api.identifier}/remove-api/", {"api": "kris"})
    page = login(alice).get("/keys/")
    assert "1 key has suggestions" in page.text and suggested(page) == ["Refused"]


def test_the_key_lists_suggestions_take_a_fixed_number_of_queries(
    alice, login, make_key, time_machine
):
    time_machine.move_to(datetime.datetime.now(tz=datetime.UTC), tick=False)

    def queries() -> int:
        client = login(alice)  # a session of today
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/keys/").status_code == 200
        return len(captured)

    def old_keys(numbers) -> None:
        """Keys 91 days old whose one allowed IP is used and one of two APIs is not: each
        rule of the advice has to be read for each of them."""
        keys = [make_key(alice, name=f"Old {n}", apis=("risks", "kris")) for n in numbers]
        later(time_machine, days=91)
        for key, password in keys:
            assert call(Client(), "/api/v1/risks/", key.identifier, password).status_code == 200

    old_keys(range(2))
    two = queries()
    old_keys(range(2, 12))
    assert queries() == two


def test_the_key_form_says_what_cidr_is_and_that_the_integration_runs_elsewhere(alice, login):
    page = login(alice).get("/keys/add/", REMOTE_ADDR="198.51.100.4").text
    assert "192.0.2.0/24 is every address from 192.0.2.0 to 192.0.2.255" in page
    assert 'aria-describedby="id_allowed_ips_mine_help">Use my current IP (198.51.100.4)' in page
    assert "The integration that calls the API usually runs elsewhere, on a server" in page
