"""The API Keys journey through the portal's pages: every view on the happy path, with bad
input and the wrong method. Who may open each page at all (anonymous, another user, each
role) is tests/test_role_matrix.py's."""

import datetime
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keys import actions
from keys.models import Api, ApiKey, AuditEvent, latest_expiry_for


def add_form_data(today, **overrides):
    data = {
        "name": "Nightly export",
        "expires_on": (today + datetime.timedelta(days=30)).isoformat(),
        "allowed_ips": ["203.0.113.7", "10.0.0.0/24"],
        "apis": [str(Api.objects.get(slug="risks").pk), str(Api.objects.get(slug="kris").pk)],
    }
    data.update(overrides)
    return data


def field_errors(response, field):
    """The words of a field's errors, checking that its input or group points at them."""
    html = response.content.decode()
    match = re.search(rf'<ul class="errorlist" id="id_{field}_error">(.*?)</ul>', html, re.S)
    if not match:
        return []
    described = re.findall(r'aria-describedby="([^"]*)"', html)
    assert any(f"id_{field}_error" in ids.split() for ids in described), "error not linked"
    return re.sub(r"<[^>]+>", " ", match.group(1)).split()


# --- home, log in, profile -------------------------------------------------------------------


def test_home_sends_an_anonymous_visitor_to_log_in(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response.url == "/login/"


def test_home_sends_a_logged_in_user_to_their_api_keys(alice, login):
    response = login(alice).get("/")
    assert response.url == "/keys/"


def test_log_in_with_name_and_password_opens_the_api_keys(alice, client):
    response = client.post(
        "/login/", {"username": "alice", "password": "alice-portal-pw"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/keys/"
    assert b"API Keys" in response.content


def test_home_takes_an_auditor_to_the_audit_history(dave, login):
    assert login(dave).get("/").url == "/audit/"


@pytest.mark.parametrize("persona", ["alice", "carol"])
def test_home_keeps_staff_and_admins_on_their_api_keys(persona, request, login):
    assert login(request.getfixturevalue(persona)).get("/").url == "/keys/"


def test_an_auditor_who_logs_in_lands_on_the_audit_history(dave, client):
    response = client.post("/login/", {"username": "dave", "password": "dave-portal-pw"})
    assert response.url == "/audit/"


def test_header_shows_the_users_name_with_view_profile_and_log_out(alice, login):
    html = login(alice).get("/keys/").content.decode()
    assert "<summary>alice</summary>" in html
    assert ">View profile</a>" in html
    assert ">Log out</button>" in html


def test_profile_has_a_left_hand_menu_with_api_keys(alice, login):
    html = login(alice).get("/profile/").content.decode()
    assert 'aria-label="Profile"' in html
    assert '<a href="/keys/">API Keys</a>' in html


# --- list ------------------------------------------------------------------------------------


def test_list_shows_only_my_keys_with_their_facts(alice, bob, login, make_key):
    mine, _ = make_key(alice, name="Mine", apis=("risks", "kris"), networks=("10.0.0.0/24",))
    make_key(bob, name="Bobs")
    html = login(alice).get("/keys/").content.decode()
    assert "Mine" in html and mine.identifier in html
    assert "Key risk indicators" in html and "10.0.0.0/24" in html
    assert "Active" in html and "never" in html
    assert "Bobs" not in html


def test_the_list_can_hide_revoked_and_expired_keys(alice, login, make_key):
    make_key(alice, name="Live")
    gone, _ = make_key(alice, name="Gone")
    actions.revoke_key(gone, actor=alice)
    client = login(alice)

    everything = client.get("/keys/").text
    assert "Live" in everything and "Gone" in everything
    assert "Hide revoked and expired keys" in everything

    live = client.get("/keys/?show=live").text
    assert "Live" in live and "Gone" not in live
    assert "Showing active keys only." in live and "Show all keys" in live


def test_an_empty_list_offers_the_first_key_and_nothing_to_hide(bob, login):
    page = login(bob).get("/keys/").text
    assert "You have no API keys yet." in page and "Add your first key" in page
    assert "Hide revoked and expired keys" not in page


def test_with_only_revoked_keys_the_live_list_says_so(alice, login, make_key):
    gone, _ = make_key(alice, name="Gone")
    actions.revoke_key(gone, actor=alice)
    page = login(alice).get("/keys/?show=live").text
    assert "You have no active API keys." in page and "Show all keys" in page


def test_list_takes_the_same_number_of_queries_for_2_or_12_keys(alice, login, make_key):
    client = login(alice)
    counts = []
    for batch in (range(2), range(2, 12)):
        for n in batch:
            make_key(alice, name=f"key {n}")
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/keys/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


# --- add -------------------------------------------------------------------------------------


def test_add_form_has_the_fields_of_the_manual(alice, login, today):
    html = login(alice).get("/keys/add/").content.decode()
    assert '<label for="id_name">Name</label>' in html
    assert '<label for="id_expires_on">Expiration date</label>' in html
    assert "<legend>Allowed IPs</legend>" in html
    assert "<legend>APIs</legend>" in html
    assert ">Save</button>" in html
    for api in Api.objects.filter(admins_only=False):  # Audit history: admins only
        assert api.name in html and api.description in html


def test_expiration_date_defaults_to_the_latest_allowed_date(alice, login, today):
    html = login(alice).get("/keys/add/").content.decode()
    latest = (
        today.replace(year=today.year + 1)
        if not (today.month == 2 and today.day == 29)
        else today.replace(year=today.year + 1, day=28)
    )
    assert f'value="{latest.isoformat()}"' in html


def test_save_shows_identifier_and_password_once_and_is_never_cached(alice, login, today):
    response = login(alice).post("/keys/add/", add_form_data(today))
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    html = response.content.decode()
    key = ApiKey.objects.get()
    assert '<label for="identifier">Identifier</label>' in html
    assert '<label for="password">Password</label>' in html
    assert "only time these credentials will be displayed" in html
    password = re.search(r'id="password" type="text" value="(ckpw_\w+)"', html).group(1)
    assert key.identifier in html
    assert key.name == "Nightly export"
    assert sorted(key.apis.values_list("slug", flat=True)) == ["kris", "risks"]
    assert sorted(key.allowed_ips.values_list("network", flat=True)) == [
        "10.0.0.0/24",
        "203.0.113.7/32",
    ]
    assert AuditEvent.objects.filter(key=key, action="key_created").count() == 1
    # Opening the key later never shows the password again.
    assert password not in login(alice).get(f"/keys/{key.identifier}/").content.decode()
    assert password not in login(alice).get("/keys/").content.decode()


def test_errors_stand_next_to_their_fields_and_nothing_is_created(alice, login, today):
    response = login(alice).post(
        "/keys/add/",
        add_form_data(
            today,
            name="",
            expires_on=(today - datetime.timedelta(days=1)).isoformat(),
            allowed_ips=["10.0.0.1/8", "not-an-ip"],
            apis=[],
        ),
    )
    assert response.status_code == 200
    assert field_errors(response, "name")
    assert "past." in field_errors(response, "expires_on")
    assert "10.0.0.0/8?" in field_errors(response, "allowed_ips")
    assert "“not-an-ip”" in field_errors(response, "allowed_ips")
    assert field_errors(response, "apis")
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("api_id", [str(2**63), str(2**64), "99999", "-1", "1.5", "risks"])
def test_an_api_id_that_names_no_api_is_an_error_next_to_its_field(alice, login, today, api_id):
    response = login(alice).post("/keys/add/", add_form_data(today, apis=[api_id]))
    assert response.status_code == 200
    assert "Select a valid choice." in " ".join(field_errors(response, "apis"))
    assert not ApiKey.objects.exists()


def test_an_api_id_past_the_integer_range_in_an_edit_is_an_error_too(alice, login, make_key, today):
    key, _ = make_key(alice)
    response = login(alice).post(
        f"/keys/{key.identifier}/edit/", add_form_data(today, apis=[str(2**63)])
    )
    assert response.status_code == 200
    assert field_errors(response, "apis")
    assert list(key.apis.values_list("slug", flat=True)) == ["risks"]


def test_a_failed_save_titles_the_page_error_and_sums_up_each_error_linked_to_its_field(
    alice, login, today
):
    response = login(alice).post(
        "/keys/add/", add_form_data(today, name="", allowed_ips=["not-an-ip"], apis=[])
    )
    html = response.content.decode()
    assert re.search(r"<title>Error: Add API key", html)
    summary = re.search(
        r'<div class="error-summary"[^>]*data-error-summary>(.*?)</div>', html, re.S
    )
    assert 'tabindex="-1"' in summary.group(0)  # static/forms.js gives it the focus
    links = re.findall(r'<a href="#([\w-]+)">([^<]*)</a>', summary.group(1))
    assert links == [
        ("id_name", "Name: This field is required."),
        (
            "id_allowed_ips_0",
            "Allowed IPs: “not-an-ip” is not an IPv4 or IPv6 address or CIDR range.",
        ),
        ("id_apis_0", "APIs: Select at least one API."),
    ]
    for target, _ in links:
        assert f'id="{target}"' in html


def test_a_valid_page_has_no_error_summary_and_a_plain_title(alice, login, make_key):
    key, _ = make_key(alice)
    client = login(alice)
    for path in ("/keys/add/", f"/keys/{key.identifier}/edit/"):
        html = client.get(path).content.decode()
        assert "data-error-summary" not in html and "<title>Error:" not in html


def test_a_failed_edit_titles_the_page_error(alice, login, make_key):
    key, _ = make_key(alice)
    response = login(alice).post(f"/keys/{key.identifier}/edit/", {"name": ""})
    assert "<title>Error: Edit CI pipeline" in response.content.decode()


def test_expiry_says_through_which_day_and_zone_with_presets_up_to_the_latest_date(
    alice, login, today
):
    html = login(alice).get("/keys/add/").content.decode()
    assert "Valid through the end of this day, Europe/Amsterdam." in html
    assert today.isoformat() not in re.search(r'id="id_expires_on_helptext">[^<]*', html).group(0)
    presets = re.findall(r'data-date="([\d-]+)"[^>]*>([^<]+)</button>', html)
    assert [label for _, label in presets] == [
        "30 days",
        "90 days",
        "180 days",
        "Latest allowed date",
    ]
    assert presets[0][0] == (today + datetime.timedelta(days=30)).isoformat()
    assert presets[-1][0] == latest_expiry_for(today).isoformat()


def test_edit_offers_only_presets_before_the_keys_expiry(alice, login, make_key, today):
    key, _ = make_key(alice, expires_on=today + datetime.timedelta(days=100))
    html = login(alice).get(f"/keys/{key.identifier}/edit/").content.decode()
    presets = re.findall(r'data-date="([\d-]+)"[^>]*>([^<]+)</button>', html)
    assert [label for _, label in presets] == ["30 days", "90 days", "Latest allowed date"]
    assert presets[-1][0] == key.expires_on.isoformat()
    assert "May only be shortened" in html


def test_description_is_saved_audited_and_shown_on_the_key_page(alice, login, today):
    client = login(alice)
    description = "Nightly export to the data warehouse; run by the BI team."
    client.post("/keys/add/", add_form_data(today, description=description))
    key = ApiKey.objects.get()
    assert key.description == description
    created = AuditEvent.objects.get(key=key, action="key_created")
    assert created.details["description"] == description
    assert description in client.get(f"/keys/{key.identifier}/").content.decode()

    data = add_form_data(today, description="Now run by the platform team.")
    assert client.post(f"/keys/{key.identifier}/edit/", data).status_code == 302
    edited = AuditEvent.objects.get(key=key, action="key_edited")
    assert edited.details["description"] == {
        "before": description,
        "after": "Now run by the platform team.",
    }


def test_description_is_optional_and_its_length_is_limited(alice, login, today):
    client = login(alice)
    response = client.post("/keys/add/", add_form_data(today, description="x" * 1001))
    assert "at most 1000 characters" in " ".join(field_errors(response, "description"))
    assert not ApiKey.objects.exists()
    client.post("/keys/add/", add_form_data(today))
    assert ApiKey.objects.get().description == ""


def test_expiry_past_a_year_is_refused_next_to_the_date(alice, login, today):
    too_late = today + datetime.timedelta(days=367)
    response = login(alice).post(
        "/keys/add/", add_form_data(today, expires_on=too_late.isoformat())
    )
    assert "year" in field_errors(response, "expires_on")
    assert not ApiKey.objects.exists()


def test_duplicate_name_is_refused_next_to_the_name(alice, login, make_key, today):
    make_key(alice, name="Nightly export")
    response = login(alice).post("/keys/add/", add_form_data(today))
    assert "name." in field_errors(response, "name")
    assert ApiKey.objects.count() == 1


def test_typed_values_are_kept_after_an_error(alice, login, today):
    response = login(alice).post("/keys/add/", add_form_data(today, name=""))
    html = response.content.decode()
    assert 'value="203.0.113.7"' in html and 'value="10.0.0.0/24"' in html


# --- the Allowed IPs Add button ---------------------------------------------------------------


def ip_rows(html):
    """The Allowed IP rows as (label, value) pairs, in order."""
    return re.findall(
        r'<label for="id_allowed_ips_\d+">(Allowed IP \d+)</label>\s*'
        r'<input type="text" name="allowed_ips" id="id_allowed_ips_\d+" value="([^"]*)"',
        html,
    )


def focused_row(html):
    match = re.search(r'id="id_allowed_ips_(\d+)" value="[^"]*"[^>]*autofocus', html)
    return int(match.group(1)) if match else None


def test_add_ip_row_with_htmx_returns_the_rows_with_one_more_numbered_and_focused(
    alice, login, today
):
    data = add_form_data(today, allowed_ips=["203.0.113.7"])
    response = login(alice).post("/keys/add/ip-row/", data, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert ip_rows(html) == [("Allowed IP 1", "203.0.113.7"), ("Allowed IP 2", "")]
    assert focused_row(html) == 1
    assert "<html" not in html
    assert not ApiKey.objects.exists()


def test_each_ip_row_has_a_remove_button_named_by_its_number(alice, login, today):
    html = login(alice).post("/keys/add/", add_form_data(today, name="")).content.decode()
    assert '>Remove<span class="visually-hidden"> allowed IP 1</span></button>' in html
    assert '>Remove<span class="visually-hidden"> allowed IP 2</span></button>' in html


def test_remove_with_htmx_drops_that_row_renumbers_the_rest_and_focuses_the_next(
    alice, login, today
):
    data = add_form_data(today, allowed_ips=["192.0.2.1", "192.0.2.2", "192.0.2.3"], remove="1")
    response = login(alice).post("/keys/add/ip-row/remove/", data, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert ip_rows(html) == [("Allowed IP 1", "192.0.2.1"), ("Allowed IP 2", "192.0.2.3")]
    assert focused_row(html) == 1
    assert "<html" not in html


def test_remove_without_javascript_shows_the_form_again_without_that_row(alice, login, today):
    data = add_form_data(today, allowed_ips=["192.0.2.1", "192.0.2.2"], remove="0")
    html = login(alice).post("/keys/add/ip-row/remove/", data).content.decode()
    assert ip_rows(html) == [("Allowed IP 1", "192.0.2.2")]
    assert 'value="Nightly export"' in html
    assert 'class="errorlist"' not in html  # a half-filled form is not judged yet
    assert not ApiKey.objects.exists()


def test_remove_on_the_edit_form_without_javascript_shows_the_edit_form_again(
    alice, login, make_key, today
):
    key, _ = make_key(alice, networks=("192.0.2.1", "192.0.2.2"))
    data = add_form_data(
        today, key=key.identifier, allowed_ips=["192.0.2.1", "192.0.2.2"], remove="1"
    )
    html = login(alice).post("/keys/add/ip-row/remove/", data).content.decode()
    assert "<h1>Edit API key</h1>" in html
    assert ip_rows(html) == [("Allowed IP 1", "192.0.2.1")]
    assert key.allowed_ips.count() == 2  # nothing is saved before Save


def test_removing_the_last_row_leaves_one_empty_row(alice, login, today):
    data = add_form_data(today, allowed_ips=["192.0.2.1"], remove="0")
    html = login(alice).post("/keys/add/ip-row/remove/", data).content.decode()
    assert ip_rows(html) == [("Allowed IP 1", "")]


@pytest.mark.parametrize("remove", ["", "7", "-1", "one", "²"])
def test_remove_of_no_such_row_changes_nothing(alice, login, today, remove):
    data = add_form_data(today, allowed_ips=["192.0.2.1"], remove=remove)
    response = login(alice).post("/keys/add/ip-row/remove/", data)
    assert response.status_code == 200
    assert ip_rows(response.content.decode()) == [("Allowed IP 1", "192.0.2.1")]


def test_the_form_offers_the_address_the_portal_sees(alice, login):
    html = login(alice).get("/keys/add/", REMOTE_ADDR="198.51.100.4").content.decode()
    assert ">Use my current IP (198.51.100.4)</button>" in html


def test_use_my_current_ip_fills_the_first_empty_row(alice, login, today):
    data = add_form_data(today, allowed_ips=["192.0.2.1", "", ""])
    response = login(alice).post(
        "/keys/add/ip-row/mine/",
        data,
        headers={"HX-Request": "true"},
        REMOTE_ADDR="198.51.100.4",
    )
    html = response.content.decode()
    assert [value for _, value in ip_rows(html)] == ["192.0.2.1", "198.51.100.4", ""]
    assert focused_row(html) == 1


def test_use_my_current_ip_adds_a_row_when_none_is_empty_and_never_twice(alice, login, today):
    client = login(alice)
    data = add_form_data(today, allowed_ips=["192.0.2.1"])
    html = client.post("/keys/add/ip-row/mine/", data, REMOTE_ADDR="198.51.100.4").content
    rows = [value for _, value in ip_rows(html.decode())]
    assert rows == ["192.0.2.1", "198.51.100.4"]
    data = add_form_data(today, allowed_ips=rows)
    html = client.post("/keys/add/ip-row/mine/", data, REMOTE_ADDR="198.51.100.4").content
    assert [value for _, value in ip_rows(html.decode())] == rows
    assert 'value="Nightly export"' in html.decode()


def test_enter_in_a_field_presses_save_the_forms_first_submit_button(alice, login, make_key):
    key, _ = make_key(alice)
    client = login(alice)
    for path in ("/keys/add/", f"/keys/{key.identifier}/edit/"):
        html = client.get(path).content.decode()
        form = html[html.index('class="card form"') :]
        first_submit = re.search(r"<button type=\"submit\"[^>]*>[^<]*", form).group(0)
        assert "formaction" not in first_submit and first_submit.endswith(">Save")


def test_add_ip_row_without_javascript_shows_the_form_again_with_one_more_row(alice, login, today):
    data = add_form_data(today, allowed_ips=["203.0.113.7"])
    response = login(alice).post("/keys/add/ip-row/", data)
    html = response.content.decode()
    assert html.count('name="allowed_ips"') == 2
    assert 'value="203.0.113.7"' in html
    assert 'value="Nightly export"' in html
    assert 'class="errorlist"' not in html  # a half-filled form is not judged yet
    assert not ApiKey.objects.exists()


def test_add_ip_row_needs_log_in(client, db):
    response = client.get("/keys/add/ip-row/", headers={"HX-Request": "true"})
    assert response.status_code == 204 and response["HX-Redirect"].startswith("/login/?next=")


def test_add_ip_row_for_someone_elses_key_is_not_found(alice, bob, login, make_key, today):
    key, _ = make_key(alice)
    response = login(bob).post("/keys/add/ip-row/", {"key": key.identifier})
    assert response.status_code == 404


# --- detail ----------------------------------------------------------------------------------


def test_detail_shows_the_key_without_its_password(alice, login, make_key):
    key, password = make_key(alice)
    response = login(alice).get(f"/keys/{key.identifier}/")
    html = response.content.decode()
    assert key.identifier in html and "Shown only once" in html
    assert password not in html
    assert ">Revoke</a>" in html and ">Edit</a>" in html


def test_unknown_key_is_not_found(alice, login):
    assert login(alice).get("/keys/ckid_doesnotexist/").status_code == 404


def test_auditor_sees_a_key_but_not_its_edit_or_revoke_buttons(alice, dave, login, make_key):
    key, _ = make_key(alice)
    html = login(dave).get(f"/keys/{key.identifier}/").content.decode()
    assert key.identifier in html
    assert ">Edit</a>" not in html and ">Revoke</a>" not in html


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


# --- edit ------------------------------------------------------------------------------------


def test_edit_changes_name_ips_apis_and_shortens_expiry(alice, login, make_key, today):
    key, _ = make_key(alice)
    shorter = today + datetime.timedelta(days=3)
    response = login(alice).post(
        f"/keys/{key.identifier}/edit/",
        {
            "name": "Renamed",
            "expires_on": shorter.isoformat(),
            "allowed_ips": ["2001:db8::/48"],
            "apis": [str(Api.objects.get(slug="events").pk)],
        },
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.name, key.expires_on) == ("Renamed", shorter)
    assert list(key.allowed_ips.values_list("network", flat=True)) == ["2001:db8::/48"]
    assert list(key.apis.values_list("slug", flat=True)) == ["events"]
    actions = set(AuditEvent.objects.filter(key=key).values_list("action", flat=True))
    assert {"key_edited", "expiry_shortened"} <= actions


def test_edit_cannot_extend_the_expiry(alice, login, make_key, today):
    key, _ = make_key(alice, expires_on=today + datetime.timedelta(days=3))
    response = login(alice).post(
        f"/keys/{key.identifier}/edit/",
        {
            "name": key.name,
            "expires_on": (today + datetime.timedelta(days=4)).isoformat(),
            "allowed_ips": ["127.0.0.1"],
            "apis": [str(Api.objects.get(slug="risks").pk)],
        },
    )
    assert "shortened:" in field_errors(response, "expires_on")
    key.refresh_from_db()
    assert key.expires_on == today + datetime.timedelta(days=3)


def test_edit_answers_only_get_and_post(alice, login, make_key):
    key, _ = make_key(alice)
    assert login(alice).delete(f"/keys/{key.identifier}/edit/").status_code == 405


# --- revoke ----------------------------------------------------------------------------------


def test_revoke_asks_for_confirmation_first(alice, login, make_key):
    key, _ = make_key(alice)
    response = login(alice).get(f"/keys/{key.identifier}/revoke/")
    assert response.status_code == 200
    assert b"This cannot be undone" in response.content
    key.refresh_from_db()
    assert key.revoked_at is None


def test_owner_revokes_their_key(alice, login, make_key):
    key, _ = make_key(alice)
    response = login(alice).post(f"/keys/{key.identifier}/revoke/", follow=True)
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == alice
    assert b"Revoked on" in response.content


def test_admin_revoking_someone_elses_key_must_give_a_reason(alice, carol, login, make_key):
    key, _ = make_key(alice)
    client = login(carol)
    response = client.post(f"/keys/{key.identifier}/revoke/", {"reason": ""})
    assert field_errors(response, "reason")
    key.refresh_from_db()
    assert key.revoked_at is None
    client.post(f"/keys/{key.identifier}/revoke/", {"reason": "Leaked in a ticket"})
    key.refresh_from_db()
    assert key.revoke_reason == "Leaked in a ticket" and key.revoked_by == carol
    owner_view = login(alice).get(f"/keys/{key.identifier}/").content.decode()
    assert "carol" in owner_view and "Leaked in a ticket" in owner_view


def test_revoke_answers_only_get_and_post(alice, login, make_key):
    key, _ = make_key(alice)
    assert login(alice).put(f"/keys/{key.identifier}/revoke/").status_code == 405


@pytest.mark.parametrize("path", ["edit/", "revoke/"])
def test_a_revoked_key_cannot_be_changed_again(alice, login, make_key, path):
    key, _ = make_key(alice)
    client = login(alice)
    client.post(f"/keys/{key.identifier}/revoke/")
    response = client.get(f"/keys/{key.identifier}/{path}")
    assert response.status_code == 302
    assert response.url == f"/keys/{key.identifier}/"


def test_every_active_user_is_staff_even_without_a_group(django_user_model, login, today):
    erin = django_user_model.objects.create_user("erin", password="erin-portal-pw")
    client = login(erin)
    assert b">Add</a>" in client.get("/keys/").content
    response = client.post("/keys/add/", add_form_data(today))
    assert response.status_code == 200 and ApiKey.objects.filter(owner=erin).exists()


def test_an_inactive_user_manages_nothing(alice):
    alice.is_active = False
    alice.save()
    assert not alice.has_perm("keys.manage_own_keys")
