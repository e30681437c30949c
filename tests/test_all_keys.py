"""Admins (and auditors, read-only) find any key on All keys; admins revoke it with a reason."""

import datetime
import html
import re

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keys.models import ApiKey, AuditEvent

ALL_KEYS = "/all-keys/"


def _names(response) -> list[str]:
    return [key.name for key in response.context["page"].keys]


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
        ({"before": "ckid_no_such_key"}, "__all__"),
        ({"after": "ckid_no_such_key"}, "__all__"),
    ],
)
def test_bad_filter_input_is_an_error_next_to_its_field(carol, login, params, field):
    response = login(carol).get(ALL_KEYS, params)
    assert response.status_code == 400
    assert response.context["form"].errors[field]


def _pager_links(response) -> dict[str, str]:
    """The pager's links by their text, unescaped, as a browser follows them."""
    links = re.findall(r'<a href="(\?[^"]*)" rel="(?:prev|next)">([^<]+)</a>', response.text)
    return {text.strip(" ←→"): html.unescape(href) for href, text in links}


def test_all_keys_pages_by_key_with_the_filters_kept_through_next_and_previous(
    carol, bob, login, make_key, alice
):
    make_key(bob, name="Not alice's")
    # Created in the same instant: the order falls back to creation order, and no key is
    # shown twice or skipped across the page cut.
    with time_machine.travel(timezone.now(), tick=False):
        for number in range(55):
            make_key(alice, name=f"Key {number:02d}")
    client = login(carol)
    first = client.get(ALL_KEYS, {"owner": "alice"})
    assert _names(first) == [f"Key {n:02d}" for n in range(54, 4, -1)]
    assert "55 keys." in first.text
    assert list(_pager_links(first)) == ["Next"]
    second = client.get(ALL_KEYS + _pager_links(first)["Next"])
    assert _names(second) == [f"Key {n:02d}" for n in range(4, -1, -1)]
    assert second.context["count"] is None  # counted on the first page only
    assert second.context["form"].cleaned_data["owner"] == alice
    assert list(_pager_links(second)) == ["Previous"]
    assert 'href="?owner=alice">Newest</a>' in second.text
    back = client.get(ALL_KEYS + _pager_links(second)["Previous"])
    assert _names(back) == _names(first)
    assert list(_pager_links(back)) == ["Next"]


def test_a_page_cursor_of_a_key_the_filters_exclude_still_marks_the_place(
    carol, login, make_key, alice, bob
):
    old = make_key(alice, name="Old")[0]
    cursor = make_key(bob, name="Bob's")[0]
    make_key(alice, name="New")
    response = login(carol).get(ALL_KEYS, {"owner": "alice", "before": cursor.identifier})
    assert _names(response) == ["Old"] and old.identifier in response.text


def test_a_broken_page_link_is_a_clear_error_not_a_500(carol, login, keys):
    response = login(carol).get(ALL_KEYS, {"status": "active", "before": "garbage'--"})
    assert response.status_code == 400
    assert "start again from the first page" in response.text
    both = {"before": keys["old"].identifier, "after": keys["pipeline"].identifier}
    assert login(carol).get(ALL_KEYS, both).status_code == 400


def test_all_keys_takes_a_fixed_number_of_queries_however_many_keys_a_page_shows(
    carol, login, make_key, keys, alice
):
    client = login(carol)

    def queries(params=None, rows=50) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert len(_names(client.get(ALL_KEYS, params or {}))) == rows
        return len(captured)

    three = queries(rows=3)
    for n in range(47):
        make_key(alice, name=f"Key {n:02d}", apis=("risks", "kris"))
    assert queries() == three  # 50 keys: one page
    newest = make_key(alice, name="One more")[0]
    # More than a page: the first page counts the keys; a deeper page reads its cursor's key
    # and whether newer keys exist instead.
    assert queries() == three + 1
    assert queries({"before": newest.identifier}) == three + 2


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


def test_auditor_is_refused_even_on_an_already_revoked_key(carol, dave, login, keys):
    key = keys["pipeline"]
    login(carol).post(f"/keys/{key.identifier}/revoke/", {"reason": "Leaked"})
    assert login(dave).post(f"/keys/{key.identifier}/revoke/", {"reason": "x"}).status_code == 403


@pytest.mark.postgres_only
def test_on_postgresql_the_search_reads_the_trigram_indexes_not_every_key(carol, keys):
    search = ApiKey.objects.matching(q="export").order_by()  # as the count reads them
    with connection.cursor() as cursor:
        # A table this small is cheaper to scan; forbid that to see what serves the search.
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = search.explain()
    assert "key_name_trgm" in plan and "key_identifier_trgm" in plan
