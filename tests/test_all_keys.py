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


def test_all_keys_filters_keys_created_before_a_day(carol, bob, login, make_key, keys, today):
    with time_machine.travel(timezone.now() - datetime.timedelta(days=3)):
        make_key(bob, name="Three days old")
    client = login(carol)
    two_days_ago = (today - datetime.timedelta(days=2)).isoformat()
    assert _names(client.get(ALL_KEYS, {"created_before": two_days_ago})) == ["Three days old"]
    three_days_ago = (today - datetime.timedelta(days=3)).isoformat()
    assert _names(client.get(ALL_KEYS, {"created_before": three_days_ago})) == []


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
        ({"created_before": "last week"}, "created_before"),
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


@pytest.fixture
def networks_keys(alice, bob, make_key):
    """Keys that allow inside 10.0.0.0/8 only, inside and outside it, and outside it only."""
    return {
        "Office": make_key(alice, name="Office", networks=("10.1.2.0/24",))[0],
        "Mixed": make_key(bob, name="Mixed", networks=("10.0.0.5", "198.51.100.7"))[0],
        "Cloud": make_key(bob, name="Cloud", networks=("2001:db8::/48",))[0],
    }


def test_all_keys_shows_the_allowed_ips_of_each_key(dave, login, networks_keys):
    text = login(dave).get(ALL_KEYS).text
    assert '<th scope="col">Allowed IPs</th>' in text
    row = text[text.index(">Mixed</a>") :].split("</tr>")[0]
    assert '<code class="ip">10.0.0.5</code><code class="ip">198.51.100.7</code>' in row


@pytest.mark.parametrize(
    ("ips", "match", "names"),
    [
        ("10.0.0.0/8", "in", ["Mixed", "Office"]),
        ("10.0.0.0/8", "", ["Mixed", "Office"]),  # "allow an address in" is the default
        ("10.0.0.0/8", "outside", ["Cloud", "Mixed"]),  # IPv6 lies outside any IPv4 network
        ("10.1.2.3", "in", ["Office"]),  # an address inside an allowed range
        ("10.1.2.3", "outside", ["Cloud", "Mixed", "Office"]),  # the rest of 10.1.2.0/24
        ("10.1.0.0/16", "outside", ["Cloud", "Mixed"]),
        ("198.51.100.7", "in", ["Mixed"]),
        ("::ffff:198.51.100.7", "in", ["Mixed"]),  # IPv4-mapped: its IPv4 address
        ("2001:db8::/32", "in", ["Cloud"]),  # wider than the entry
        ("2001:db8:0:1::/64", "in", ["Cloud"]),  # narrower than the entry
        ("2001:db8::/32", "outside", ["Mixed", "Office"]),
        ("192.0.2.0/24", "in", []),
    ],
)
def test_all_keys_finds_the_keys_that_allow_addresses_in_or_outside_a_network(
    carol, login, networks_keys, ips, match, names
):
    response = login(carol).get(ALL_KEYS, {"ips": ips, "ips_match": match})
    assert response.status_code == 200
    assert sorted(_names(response)) == names


def test_the_allowed_ips_filter_sees_entries_added_by_an_edit_and_exports_what_it_shows(
    alice, carol, login, networks_keys
):
    from keys import actions

    office = networks_keys["Office"]
    actions.edit_key(
        office,
        actor=alice,
        name=office.name,
        expires_on=office.expires_on,
        networks=["10.1.2.0/24", "203.0.113.9"],
        apis=list(office.apis.all()),
    )
    client = login(carol)
    outside = {"ips": "10.0.0.0/8", "ips_match": "outside"}
    assert sorted(_names(client.get(ALL_KEYS, outside))) == ["Cloud", "Mixed", "Office"]
    csv = b"".join(client.get("/all-keys/inventory.csv", outside).streaming_content).decode()
    assert "Office" in csv and "Cloud" in csv and "Mixed" in csv


def test_keys_without_allowed_ips_allow_any_address_where_the_settings_permit_them(
    alice, carol, login, make_key, networks_keys, settings
):
    settings.KEYS_REQUIRE_ALLOWED_IPS = False
    make_key(alice, name="Anywhere", networks=())
    client = login(carol)
    inside = client.get(ALL_KEYS, {"ips": "10.0.0.0/8"})
    assert sorted(_names(inside)) == ["Anywhere", "Mixed", "Office"]
    outside = client.get(ALL_KEYS, {"ips": "10.0.0.0/8", "ips_match": "outside"})
    assert sorted(_names(outside)) == ["Anywhere", "Cloud", "Mixed"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"ips": "10.0.0.1/8"}, "has host bits set; did you mean 10.0.0.0/8?"),
        ({"ips": "ten"}, "is not an IPv4 or IPv6 address or CIDR range."),
        ({"ips": "10.0.0.0/8", "ips_match": "near"}, "Select a valid choice."),
    ],
)
def test_a_bad_allowed_ips_filter_is_an_error_next_to_its_field(carol, login, params, message):
    response = login(carol).get(ALL_KEYS, params)
    assert response.status_code == 400
    field = "ips" if "ips_match" not in params else "ips_match"
    assert message in " ".join(response.context["form"].errors[field])


def test_the_allowed_ips_filter_takes_a_fixed_number_of_queries(carol, login, make_key, alice):
    client = login(carol)
    outside = {"ips": "10.0.0.0/8", "ips_match": "outside"}

    def queries(rows) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert len(_names(client.get(ALL_KEYS, outside))) == rows
        return len(captured)

    make_key(alice, name="First", networks=("192.0.2.1", "10.9.0.0/16"))
    one = queries(rows=1)
    for n in range(49):
        make_key(alice, name=f"Key {n:02d}", networks=("192.0.2.1", "2001:db8::/48"))
    assert queries(rows=50) == one
