"""Read only or read and write, per granted API (docs/design.md §9): chosen on Add and Edit,
shown on the key page and in the history."""

import datetime

import pytest

from keys.models import Api, AuditEvent, KeyGrant


def add_form(today, **overrides):
    data = {
        "name": "Nightly export",
        "expires_on": (today + datetime.timedelta(days=30)).isoformat(),
        "allowed_ips": ["203.0.113.7"],
        "apis": [str(Api.objects.get(slug="risks").pk), str(Api.objects.get(slug="kris").pk)],
        "access-risks": "read",
        "access-kris": "write",
    }
    data.update(overrides)
    return data


def grants(key) -> dict[str, str]:
    return dict(KeyGrant.objects.filter(apikey=key).values_list("api__slug", "access"))


def test_add_saves_each_apis_access(alice, login, today):
    response = login(alice).post("/keys/add/", add_form(today))
    assert response.status_code == 200
    key = alice.api_keys.get()
    assert grants(key) == {"risks": "read", "kris": "write"}
    event = AuditEvent.objects.get(key=key, action=AuditEvent.Action.KEY_CREATED)
    assert event.details["read_only_apis"] == ["risks"]


def test_the_form_offers_both_accesses_with_read_and_write_first(alice, login):
    html = login(alice).get("/keys/add/").content.decode()
    assert 'name="access-risks"' in html
    assert '<option value="write" selected>Read and write</option>' in html
    assert '<option value="read">Read only</option>' in html


def test_an_unknown_access_is_an_error_next_to_the_apis(alice, login, today):
    response = login(alice).post("/keys/add/", add_form(today, **{"access-risks": "admin"}))
    assert "Choose the access to Risks." in response.content.decode()
    assert not alice.api_keys.exists()


def test_read_only_for_an_api_not_chosen_changes_nothing(alice, login, today):
    login(alice).post("/keys/add/", add_form(today, **{"access-events": "read"}))
    assert grants(alice.api_keys.get()) == {"risks": "read", "kris": "write"}


def test_the_key_page_and_the_list_say_which_apis_are_read_only(alice, login, make_key):
    key, _ = make_key(alice, apis=("risks", "kris"), read_only=["risks"])
    client = login(alice)
    page = client.get(f"/keys/{key.identifier}/").content.decode()
    assert "Risks: read only" in page
    assert "Key risk indicators: read and write" in page
    assert "Risks (read only)" in client.get("/keys/").content.decode()


def test_edit_shows_and_changes_the_access_and_the_history_says_so(alice, login, make_key):
    key, _ = make_key(alice, apis=("risks",), read_only=["risks"])
    client = login(alice)
    edit = client.get(f"/keys/{key.identifier}/edit/").content.decode()
    assert '<option value="read" selected>Read only</option>' in edit
    data = {
        "name": key.name,
        "expires_on": key.expires_on.isoformat(),
        "allowed_ips": ["127.0.0.1"],
        "apis": [str(Api.objects.get(slug="risks").pk)],
        "access-risks": "write",
    }
    assert client.post(f"/keys/{key.identifier}/edit/", data).status_code == 302
    assert grants(key) == {"risks": "write"}
    event = AuditEvent.objects.filter(key=key, action=AuditEvent.Action.KEY_EDITED).get()
    assert event.details["read_only_apis"] == {"before": ["risks"], "after": []}
    history = client.get(f"/keys/{key.identifier}/").content.decode()
    assert "read-only APIs: Risks →" in history


@pytest.mark.parametrize("one_click", ["allow", "remove-ip"])
def test_one_click_edits_keep_each_apis_access(alice, login, make_key, one_click):
    key, _ = make_key(
        alice, apis=("risks",), networks=("127.0.0.1", "10.0.0.1"), read_only=["risks"]
    )
    client = login(alice)
    if one_click == "allow":
        client.post(f"/keys/{key.identifier}/allow/", {"network": "192.0.2.1"})
    else:
        client.post(f"/keys/{key.identifier}/remove-ip/", {"network": "10.0.0.1/32"})
    assert grants(key) == {"risks": "read"}


def test_renewal_keeps_each_apis_access(alice, make_key):
    from keys import actions

    key, _ = make_key(alice, apis=("risks", "kris"), read_only=["kris"])
    new, _ = actions.renew_key(
        key, actor=alice, expires_on=key.expires_on, overlap=datetime.timedelta(0)
    )
    assert grants(new) == {"risks": "write", "kris": "read"}
