"""Admins (and auditors, read-only) find any key on All keys; admins revoke it with a reason."""

import datetime

import pytest

from keys.models import AuditEvent

ALL_KEYS = "/all-keys/"


def _names(response) -> list[str]:
    return [key.name for key in response.context["page"].object_list]


@pytest.fixture
def keys(alice, bob, make_key, today):
    soon = today + datetime.timedelta(days=5)
    return {
        "pipeline": make_key(alice, name="Pipeline", apis=("risks",))[0],
        "reports": make_key(bob, name="Reports", apis=("kris",), expires_on=soon)[0],
        "old": make_key(bob, name="Old export", apis=("risks", "kris"))[0],
    }


def test_admin_sees_every_users_keys_with_revoke_buttons(carol, login, keys):
    response = login(carol).get(ALL_KEYS)
    assert response.status_code == 200
    assert sorted(_names(response)) == ["Old export", "Pipeline", "Reports"]
    assert f'href="/keys/{keys["reports"].identifier}/revoke/"' in response.text


def test_auditor_sees_every_key_but_no_revoke_button(dave, login, keys):
    response = login(dave).get(ALL_KEYS)
    assert sorted(_names(response)) == ["Old export", "Pipeline", "Reports"]
    assert "/revoke/" not in response.text


def test_header_shows_all_keys_to_admins_and_auditors_only(alice, carol, dave, login):
    assert 'href="/all-keys/"' not in login(alice).get("/keys/").text
    assert 'href="/all-keys/"' in login(carol).get("/keys/").text
    assert 'href="/all-keys/"' in login(dave).get("/keys/").text


def test_all_keys_filters_by_owner(carol, login, keys):
    assert sorted(_names(login(carol).get(ALL_KEYS, {"owner": "bob"}))) == [
        "Old export",
        "Reports",
    ]


def test_all_keys_filters_by_status(carol, login, keys):
    client = login(carol)
    client.post(f"/keys/{keys['old'].identifier}/revoke/", {"reason": "Unused"})
    assert _names(client.get(ALL_KEYS, {"status": "revoked"})) == ["Old export"]
    assert sorted(_names(client.get(ALL_KEYS, {"status": "active"}))) == ["Pipeline", "Reports"]
    assert _names(client.get(ALL_KEYS, {"status": "expired"})) == []


def test_all_keys_filters_by_api(carol, login, keys):
    assert sorted(_names(login(carol).get(ALL_KEYS, {"api": "kris"}))) == [
        "Old export",
        "Reports",
    ]


def test_all_keys_filters_keys_expiring_within_n_days(carol, login, keys):
    client = login(carol)
    assert _names(client.get(ALL_KEYS, {"expiring_within": "5"})) == ["Reports"]
    assert _names(client.get(ALL_KEYS, {"expiring_within": "4"})) == []


def test_all_keys_searches_name_identifier_and_owner(carol, login, keys):
    client = login(carol)
    assert _names(client.get(ALL_KEYS, {"q": "pipe"})) == ["Pipeline"]
    assert _names(client.get(ALL_KEYS, {"q": keys["reports"].identifier[:14]})) == ["Reports"]
    assert sorted(_names(client.get(ALL_KEYS, {"q": "BOB"}))) == ["Old export", "Reports"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"owner": "nobody"}, "owner"),
        ({"status": "sleeping"}, "status"),
        ({"api": "no-such-api"}, "api"),
        ({"expiring_within": "-1"}, "expiring_within"),
        ({"expiring_within": "soon"}, "expiring_within"),
        ({"page": "0"}, "page"),
    ],
)
def test_bad_filter_input_is_an_error_next_to_its_field(carol, login, params, field):
    response = login(carol).get(ALL_KEYS, params)
    assert response.status_code == 400
    assert response.context["form"].errors[field]


def test_all_keys_is_paginated_with_the_filters_kept(carol, login, make_key, alice):
    for number in range(55):
        make_key(alice, name=f"Key {number:02d}")
    client = login(carol)
    first = client.get(ALL_KEYS, {"owner": "alice"})
    assert len(first.context["page"].object_list) == 50
    assert 'href="?owner=alice&amp;page=2"' in first.text
    second = client.get(ALL_KEYS, {"owner": "alice", "page": "2"})
    assert len(second.context["page"].object_list) == 5


def test_admin_revokes_any_key_with_a_reason_and_the_owner_sees_who_and_why(
    carol, bob, client, keys
):
    key = keys["reports"]
    client.force_login(carol)
    page = client.get(f"/keys/{key.identifier}/revoke/")
    assert 'name="reason"' in page.text
    refused = client.post(f"/keys/{key.identifier}/revoke/", {"reason": ""})
    assert refused.status_code == 200
    assert "This field is required." in refused.text
    response = client.post(f"/keys/{key.identifier}/revoke/", {"reason": "Leaked in a ticket"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.is_revoked and key.revoked_by == carol
    assert key.revoke_reason == "Leaked in a ticket"
    event = AuditEvent.objects.get(key=key, action="key_revoked")
    assert event.actor == carol and event.details == {"reason": "Leaked in a ticket"}

    client.force_login(bob)
    owner_view = client.get(f"/keys/{key.identifier}/")
    assert "by carol" in owner_view.text
    assert "Leaked in a ticket" in owner_view.text


def test_auditor_cannot_revoke_any_key(dave, login, keys):
    key = keys["pipeline"]
    client = login(dave)
    assert client.get(f"/keys/{key.identifier}/revoke/").status_code == 403
    assert client.post(f"/keys/{key.identifier}/revoke/", {"reason": "x"}).status_code == 403
    key.refresh_from_db()
    assert not key.is_revoked


def test_auditor_is_refused_even_on_an_already_revoked_key(carol, dave, login, keys):
    key = keys["pipeline"]
    login(carol).post(f"/keys/{key.identifier}/revoke/", {"reason": "Leaked"})
    assert login(dave).post(f"/keys/{key.identifier}/revoke/", {"reason": "x"}).status_code == 403
